# inc-spark: two entry points for users (wordcount, test) and a few for developers.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
export NUMBA_CACHE_DIR ?= $(CURDIR)/.numba_cache
export PYSPARK_PYTHON := $(CURDIR)/$(PY)
export PYSPARK_DRIVER_PYTHON := $(CURDIR)/$(PY)

.PHONY: env test lint wordcount bench-switch pack-env clean

env: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "inc-spark needs Python >= 3.11 (pyspark 4)"'
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test,bench,deploy]'
	$(VENV)/bin/inc-spark-autohook install
	$(PY) -m inc_spark.compile_cache
	@touch $(STAMP)

lint: env
	$(VENV)/bin/ruff check .

test: env lint
	PYTHONHASHSEED=0 $(PY) -m pytest -q

SAMPLE := data/sample-corpus.txt

$(SAMPLE): | env
	@mkdir -p data
	$(PY) bench/corpus.py $(SAMPLE) --size-mb 20 --seed 1 --quiet > /dev/null

wordcount: env $(SAMPLE)
	$(PY) jobs/wordcount.py $(SAMPLE) --mode inc --top 20

bench-switch: env
	$(PY) bench/switch_bench.py

pack-env: env
	$(VENV)/bin/inc-spark-pack-env dist/inc-spark-env.tar.gz

clean:
	rm -rf $(VENV) .numba_cache .pytest_cache .hypothesis
