# The two commands of the README: `make demo` and `make test`. Both create .venv when it is missing.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
OUT ?= runs/demo
NP ?= 2
export OMP_NUM_THREADS ?= 1

.PHONY: venv demo test test-slow test-all lint bench clean

# setup.py requires effrep-analysis (analysis/pyproject.toml) from this checkout, which pip installs as a copy;
# the second install makes it editable too, so edits to analysis/ count without reinstalling.
$(STAMP): setup.py constraints.txt analysis/pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e '.[all]'
	$(PY) -m pip install -q --no-deps -e ./analysis
	@if $(PY) -m pip list 2>/dev/null | grep -qi nvidia; then echo "error: CUDA packages were installed; check constraints.txt" >&2; exit 1; fi
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	OUT=$(OUT) NP=$(NP) PY=$(PY) bash scripts/demo.sh

# The SLURM tests run against a real one-node SLURM that slurm/local-cluster.sh installs and starts.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

test: $(STAMP)
	$(SUDO) bash slurm/local-cluster.sh start
	$(PY) -m pytest -q

# The slow checks only: longer variants of properties the default run also checks (some on SLURM).
test-slow: $(STAMP)
	$(SUDO) bash slurm/local-cluster.sh start
	$(PY) -m pytest -q -m slow

# Settings in pyproject.toml ([tool.ruff], [tool.mypy]).
lint: $(STAMP)
	$(PY) -m ruff check effrep_hpc analysis tests
	$(PY) -m mypy effrep_hpc analysis

test-all: $(STAMP)
	$(SUDO) bash slurm/local-cluster.sh start
	$(PY) -m pytest -q -m "slow or not slow"

# Every benchmarks/*.py through benchmarks/run_all.py: one summary.json + summary.md under runs/bench/.
# BENCH_ARGS="--quick" for smoke runs, "--device cuda" on a GPU machine (see benchmarks/README.md).
BENCH_ARGS ?=
bench: $(STAMP)
	$(PY) benchmarks/run_all.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) runs .pytest_cache
