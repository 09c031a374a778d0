# Two commands on a fresh clone: `make run` and `make test`. Nothing needs installing first:
# without CHANNEL_DOMAIN_DATABASE_URL an embedded PostgreSQL starts under ./var/.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/channel-domain migrate
	$(BIN)/channel-domain serve

test: $(STAMP)
	$(BIN)/lint-imports
	$(BIN)/pytest

clean:
	rm -rf $(VENV) var
