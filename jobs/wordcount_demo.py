"""`make wordcount`: the sample word count through an embedded switch."""

import sys

if __name__ == "__main__":
    print("make wordcount: not yet available (the word-count job lands with issue 5)")
    sys.exit(0)
