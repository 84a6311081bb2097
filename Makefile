# Two commands do all set-up: `make train` runs the default job, `make test` the test suite.
# Both install what is missing first (quick when everything is in place).
PYTHON ?= python
ARGS ?=
PYTEST_ARGS ?=

BENCH ?= full

.PHONY: install train test bench

install:
	@$(PYTHON) scripts/install.py

train: install
	$(PYTHON) -m lit_train $(ARGS)

# One worker per core: most tests wait on a CLI subprocess of their own.
test: install
	$(PYTHON) -m pytest -n auto $(PYTEST_ARGS)

# Benchmarks against a raw PyTorch loop and plain Lightning; BENCH=quick for a three-minute run.
bench: install
	BENCH=$(BENCH) $(PYTHON) benchmarks/run.py
