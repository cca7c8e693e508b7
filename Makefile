# authgate developer commands. `make run` and `make test` work on a fresh clone.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: run test lint format protos lock clean bench

run: $(STAMP)  ## start gateway, auth and profile services with SQLite and dev keys
	$(BIN)/python -m devstack

test: $(STAMP)  ## the whole test suite (MySQL tests need AUTHGATE_TEST_MYSQL_URL or a local MariaDB)
	$(BIN)/pytest $(PYTEST_ARGS)

bench: $(STAMP)  ## benchmark into docs/BENCHMARKS.md (needs wrk: installed from Debian if missing)
	command -v wrk >/dev/null || apt-get install -y wrk || sudo apt-get install -y wrk
	$(BIN)/python -m bench $(BENCH_ARGS)

lint: $(STAMP)  ## ruff and mypy
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

protos: $(STAMP)  ## regenerate generated/ from protos/
	$(BIN)/python tools/gen_protos.py

lock: $(STAMP)  ## re-pin every dependency into constraints.txt
	$(BIN)/pip freeze --exclude-editable --all | grep -v -E '^(pip|setuptools|wheel)==' > constraints.txt

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev]'
	touch $@

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
