# Two commands: `make test` and `make study`. Both create .venv when it is missing.
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: test study install clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch first, pinned: a CPU wheel; nothing installed after it upgrades it.
	$(PY) -m pip install --quiet "torch==2.13.0"
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

# tests/tune owns one Ray cluster for its whole session: it runs in its own pytest process, apart from
# the tests that start (and stop) their own Ray, so no Ray state leaks from one into the other.
test: $(STAMP)
	$(PY) -m pytest -q --ignore=tests/tune
	$(PY) -m pytest -q tests/tune

study: $(STAMP)
	$(VENV)/bin/nisca study synthetic-default

clean:
	rm -rf $(VENV) .pytest_cache
