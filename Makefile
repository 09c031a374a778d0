# Two commands on a fresh clone: `make run` and `make test`. Nothing needs installing first:
# without CHANNEL_DOMAIN_DATABASE_URL an embedded PostgreSQL starts under ./var/.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The suite runs in this many processes (pytest-xdist): most of a test's time is spent waiting
# on servers, subprocesses and PostgreSQL, which a second process fills. Each process starts
# on its half of the tests in order, and one that runs out takes over half of what the other
# has left. Not `--dist loadfile`: it keys tests by node id, and schemathesis gives R5's 125
# operations one id, so all but one of them would silently not run.
# `make test TEST_PROCESSES=0` runs the suite in one process.
TEST_PROCESSES ?= 2

.PHONY: run test bench bench-quick clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

# A first run also makes the key checkpoints are signed with (var/keys/checkpoint.pem, 0600;
# docs/audit.md): without it the log's head would go unsigned.
run: $(STAMP)
	$(BIN)/channel-domain migrate
	$(BIN)/channel-domain keys show >/dev/null 2>&1 || $(BIN)/channel-domain keys create
	$(BIN)/channel-domain serve

test: $(STAMP)
	$(BIN)/lint-imports
	$(BIN)/pytest -n $(TEST_PROCESSES) --dist worksteal
	$(MAKE) bench-quick

# Benchmarks are not tests: `make test` runs only the quick size, to prove the suite works.
bench: $(STAMP)
	$(BIN)/python bench/run.py --markdown var/bench.md

bench-quick: $(STAMP)
	$(BIN)/python bench/run.py --quick --markdown var/bench-quick.md

clean:
	rm -rf $(VENV) var
