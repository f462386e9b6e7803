# Every target bootstraps its own virtual environment in .venv; nothing depends on what
# happens to be installed on the machine beyond python3 (>= 3.11) with venv.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test bench bench-audit sim chaos proto clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/nanum demo

test: $(STAMP)
	$(BIN)/python -m pytest -q

# Benchmarks print their figures, machine and parameters, and never fail on a missed target.
bench: $(STAMP)
	$(BIN)/python benchmarks/ledger_core.py
	$(BIN)/python benchmarks/cluster_bench.py
	$(BIN)/python benchmarks/abuse_bench.py

bench-audit: $(STAMP)
	$(BIN)/python benchmarks/audit_verify.py

SEEDS ?= 20000
START ?= 0
JOBS ?= 2
sim: $(STAMP)
	$(BIN)/python -m tests.sim --both --seeds $(SEEDS) --start $(START) --jobs $(JOBS)

# The real-process nemesis (docs/SIMULATION.md, "Real-process nemesis"): bounded, stops by itself,
# prints the seed and the replay command on a violation. FAULTS: comma-separated kinds (default all).
SEED ?= 1
SECONDS ?= 180
FAULTS ?=
chaos: $(STAMP)
	$(BIN)/python -m tests.chaos --seed $(SEED) --seconds $(SECONDS) $(if $(FAULTS),--faults $(FAULTS))

# The generated code lives in node/wire/ and is committed; tests/test_wire.py fails if it drifts.
proto: $(STAMP)
	$(BIN)/python -m grpc_tools.protoc -Inode/wire=proto --python_out=. --grpc_python_out=. --pyi_out=. \
		proto/ledger.proto proto/consensus.proto

clean:
	rm -rf $(VENV) build *.egg-info
