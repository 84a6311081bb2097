# Two commands do all set-up: `make train` runs the default job, `make test` the test suite.
# Both install what is missing first (quick when everything is in place).
PYTHON ?= python
ARGS ?=
PYTEST_ARGS ?=

BENCH ?= full

.PHONY: install train test test-slow bench

install:
	@$(PYTHON) scripts/install.py

train: install
	$(PYTHON) -m lit_train $(ARGS)

# One worker per core: most tests wait on a CLI subprocess of their own. `make test` leaves out the
# tests marked slow (kill and resume, signals, DDP, sweeps: several CLI runs each); `make test-slow`
# runs those, and CI runs both.
test: install
	$(PYTHON) -m pytest -n auto -m "not slow" $(PYTEST_ARGS)

test-slow: install
	$(PYTHON) -m pytest -n auto -m slow $(PYTEST_ARGS)

# Benchmarks against a raw PyTorch loop and plain Lightning; BENCH=quick for a run of about ten minutes.
bench: install
	BENCH=$(BENCH) $(PYTHON) benchmarks/run.py
