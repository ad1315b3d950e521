# recsite: `make demo` runs the whole product, `make test` runs the whole suite.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast bench lint browser services install clean

$(STAMP): requirements.txt requirements-test.txt requirements-nodeps.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -r requirements-test.txt
	$(PIP) install --no-deps -r requirements-nodeps.txt
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	RECSITE_DEV=1 $(PY) -m recsite.demo

# The browser tests drive Debian's Chromium; install it when the machine lacks it.
browser:
	@test -x /usr/bin/chromium || (apt-get update -qq && apt-get install -y -qq chromium chromium-driver)

# pytest's exit 5 ("no tests ran") is a failure too. The suite runs in development mode (RECSITE_DEV=1, as
# recsite/settings_test.py also defaults); its production-posture tests start their own children with RECSITE_DEV=0.
test: $(STAMP) browser
	RECSITE_DEV=1 $(PY) -m pytest; status=$$?; [ $$status -eq 5 ] && echo "no tests ran" >&2; exit $$status

test-fast: $(STAMP)
	RECSITE_DEV=1 $(PY) -m pytest -m "not slow and not e2e"

bench: $(STAMP)
	$(PIP) install -q -r requirements-bench.txt
	$(PY) bench/run_all.py

lint: $(STAMP)
	$(VENV)/bin/ruff check .

# Starts the system Postgres and Redis when they are down (they are on a normal machine of ours).
services:
	@pg_isready -h 127.0.0.1 -p 5432 -q || pg_ctlcluster --skip-systemctl-redirect $$(ls /etc/postgresql) main start
	@redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 || redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log

clean:
	rm -rf var test-artifacts .pytest_cache
