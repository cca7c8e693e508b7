# authgate developer commands. `make run` and `make test` work on a fresh clone.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
# Python's bytecode cache stays on: the suite starts hundreds of Python processes, and
# with PYTHONDONTWRITEBYTECODE (set in some images) each compiled our modules again and
# pytest rewrote every test module's asserts again (about 5 s per collection).
unexport PYTHONDONTWRITEBYTECODE
# pytest-xdist processes for `make test`. Three on 2 cores: the tests wait on processes
# and timers a quarter of the time, and a third worker fills it (95 s against 110 s).
TEST_WORKERS ?= 3

.PHONY: run cluster migrate test lint format protos routes lock clean rotate-keys prune-keys bench config-doc grant-role revoke-role

run: $(STAMP)  ## start gateway, auth and profile services with SQLite and dev keys (migrated first)
	$(BIN)/python -m devstack

cluster: $(STAMP)  ## nginx, 2 gateways, 2+2 service replicas on the local MariaDB and Redis (see docs/scaling.md)
	command -v nginx >/dev/null || test -x /usr/sbin/nginx || apt-get install -y nginx-light || (apt-get update && apt-get install -y nginx-light)
	$(BIN)/python -m devstack.cluster

migrate: $(STAMP)  ## bring AUTH_DATABASE_URL and PROFILE_DATABASE_URL to the code's schema revision
	$(BIN)/python -m auth_svc.migrate upgrade
	$(BIN)/python -m profile_svc.migrate upgrade

# Two steps: everything else on TEST_WORKERS processes (each file's tests on one of them,
# so that a module's real stack starts once, not once per process), then the tests that
# measure time (marked `serial`, see pyproject.toml) alone, so that the parallel load cannot
# fail them (--step is
# tests/conftest.py's, so that a -m in PYTEST_ARGS still applies). Both steps run; a step
# whose selection holds none of its tests (pytest's exit status 5) is no failure unless
# neither step found any.
test: $(STAMP)  ## the whole test suite (MySQL tests need AUTHGATE_TEST_MYSQL_URL or a local MariaDB)
	@$(BIN)/pytest -n $(TEST_WORKERS) --dist loadfile --step=parallel $(PYTEST_ARGS); parallel=$$?; \
	$(BIN)/pytest -n 0 --step=serial $(PYTEST_ARGS); serial=$$?; \
	if [ $$parallel -eq 5 ] && [ $$serial -eq 5 ]; then exit 5; fi; \
	for status in $$parallel $$serial; do \
		if [ $$status -ne 0 ] && [ $$status -ne 5 ]; then exit $$status; fi; \
	done

grant-role: $(STAMP)  ## give USER the role ROLE on AUTH_DATABASE_URL (the first admin: ROLE=admin)
	@# USER must be given on the command line: the login's $$USER from the environment is not meant.
	@test "$(origin USER)" = "command line" -a -n "$(ROLE)" || { echo "usage: make grant-role USER=alice ROLE=admin" >&2; exit 2; }
	$(BIN)/python -m auth_svc.roles grant '$(USER)' '$(ROLE)'

revoke-role: $(STAMP)  ## take the role ROLE from USER on AUTH_DATABASE_URL
	@# USER must be given on the command line: the login's $$USER from the environment is not meant.
	@test "$(origin USER)" = "command line" -a -n "$(ROLE)" || { echo "usage: make revoke-role USER=alice ROLE=admin" >&2; exit 2; }
	$(BIN)/python -m auth_svc.roles revoke '$(USER)' '$(ROLE)'

rotate-keys: $(STAMP)  ## add a new signing key to AUTH_KEYS_DIR (default var/keys); auth_svc picks it up
	$(BIN)/python -m auth_svc.keys rotate

prune-keys: $(STAMP)  ## delete signing keys whose tokens have all expired
	$(BIN)/python -m auth_svc.keys prune

bench: $(STAMP)  ## benchmark into docs/BENCHMARKS.md, then gateway vs the 2-worker monolith A B A B (needs wrk)
	command -v wrk >/dev/null || apt-get install -y wrk || sudo apt-get install -y wrk
	$(BIN)/python -m bench $(BENCH_ARGS)
	$(BIN)/python -m bench.ab --docs docs/BENCHMARKS.md --memory 10000,100000 --granian $(BENCH_AB_ARGS)

lint: $(STAMP)  ## ruff and mypy
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

protos: $(STAMP)  ## regenerate generated/ from protos/
	$(BIN)/python tools/gen_protos.py

config-doc: $(STAMP)  ## regenerate docs/configuration.md from the settings tables
	$(BIN)/python -m tools.gen_config_doc

routes: $(STAMP)  ## print the gateway's route table (method, path, RPC, who may call it, rate limit)
	$(BIN)/python -m gateway.routes

lock: $(STAMP)  ## re-pin every dependency into constraints.txt
	$(BIN)/pip freeze --exclude-editable --all | grep -v -E '^(pip|setuptools|wheel)==' > constraints.txt

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev]'
	touch $@

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
