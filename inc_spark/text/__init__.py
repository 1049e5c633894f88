"""The fastest word count: input splits read by the workers, a compiled tokenizer over the raw
bytes, and encoded residuals merged on the driver.
"""
