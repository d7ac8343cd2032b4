# target-aha: developer tasks. Needs only Python >= 3.10, make and access to PyPI.
#
#   make install   .venv (target-aha editable + pytest, ruff), .venv-meltano (Meltano), and
#                  the project's Meltano plugins (tap-jsonl, target-aha) under .meltano/
#   make demo      load demo/data/ into a local Aha! sandbox with `meltano run`, print the result
#   make check     ruff and the fast tests (not slow, meltano or packaging), 2 workers: ~80 s
#   make test      ruff, mypy, then the whole test suite, 2 workers (own sandboxes; ~5 minutes)
#   make test-sdk-latest  the fast tests against the newest singer-sdk (.venv-sdk-latest)
#   make lint      ruff and mypy
#   make bench     the benchmarks (figures, and whether each meets its target; ~8 minutes)
#   make clean     remove the virtualenvs, .meltano/ and output/
#
# Meltano lives in its own virtualenv: pip can install it beside singer-sdk 0.54, but only by
# downgrading SQLAlchemy (Meltano pins sqlalchemy<2.1, click<8.6, pip<27), which would make the
# venv the tests run in differ from what `pip install target-aha` gives a user. Meltano installs
# target-aha (pip_url: -e .) and tap-jsonl into virtualenvs of their own anyway.
# Re-runs are fast: each step leaves a stamp file and runs again only when its inputs change.

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
MELTANO_VENV := .venv-meltano
SDK_LATEST_VENV := .venv-sdk-latest
MELTANO_SPEC ?= meltano>=4.4,<5
MELTANO := $(MELTANO_VENV)/bin/meltano

DEV_STAMP := $(VENV)/.target-aha-dev.stamp
MELTANO_STAMP := $(MELTANO_VENV)/.meltano.stamp
PLUGINS_STAMP := .meltano/.plugins.stamp

# The fast lane: everything but the tests marked slow, meltano or packaging (pyproject.toml).
FAST := -m "not slow and not meltano and not packaging"

# Meltano: no usage statistics from developer machines or CI.
export MELTANO_SEND_ANONYMOUS_USAGE_STATS := false

.PHONY: help install demo check test test-sdk-latest lint bench clean

help:
	@sed -n '3,12s/^# \{0,1\}//p' Makefile

install: $(DEV_STAMP) $(PLUGINS_STAMP)

define make_venv
	@if [[ ! -x $(1)/bin/python ]]; then \
		$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 10))' \
			|| { echo "make: $(PYTHON) is older than 3.10; run make PYTHON=python3.12 ..." >&2; exit 1; }; \
		echo "Creating $(1) with $$(command -v $(PYTHON))"; \
		$(PYTHON) -m venv $(1); \
	fi
endef

$(DEV_STAMP): pyproject.toml
	$(call make_venv,$(VENV))
	@# The dev tools are a PEP 735 dependency group, which pip reads from 25.1 on.
	$(VENV)/bin/python -m pip install --quiet --upgrade 'pip>=25.1'
	$(VENV)/bin/python -m pip install --quiet -e '.[postgres]' --group dev
	touch $@

$(MELTANO_STAMP):
	$(call make_venv,$(MELTANO_VENV))
	$(MELTANO_VENV)/bin/python -m pip install --quiet '$(MELTANO_SPEC)'
	touch $@

# Meltano installs the plugins of meltano.yml (with uv, into .meltano/<type>/<name>/venv).
$(PLUGINS_STAMP): meltano.yml pyproject.toml $(MELTANO_STAMP)
	$(MELTANO) install
	touch $@

demo: install
	PYTHON=$(VENV)/bin/python MELTANO=$(MELTANO) demo/run.sh

lint: $(DEV_STAMP)
	$(VENV)/bin/ruff check target_aha tests demo benchmarks
	$(VENV)/bin/mypy target_aha

check: $(DEV_STAMP)
	$(VENV)/bin/ruff check target_aha tests demo benchmarks
	$(VENV)/bin/pytest -q -n 2 $(FAST) tests

# Two workers (each with its own zygote, tests/zygote.py), a test file each at a time for the
# whole suite: most slow tests wait on a clock, so they overlap well, and a file's
# module-scoped fixtures (built wheels, a Meltano project) are built once.
test: install lint
	MELTANO_EXECUTABLE=$(abspath $(MELTANO)) $(VENV)/bin/pytest -q -n 2 --dist loadfile tests

# The same checkout against the newest singer-sdk on PyPI, beyond the <0.55 pin (pip warns
# about the conflict and installs it): a preview of what the next SDK breaks. Rebuilt each time.
test-sdk-latest:
	rm -rf $(SDK_LATEST_VENV)
	$(call make_venv,$(SDK_LATEST_VENV))
	$(SDK_LATEST_VENV)/bin/python -m pip install --quiet --upgrade 'pip>=25.1'
	$(SDK_LATEST_VENV)/bin/python -m pip install --quiet -e '.[postgres]' --group dev
	$(SDK_LATEST_VENV)/bin/python -m pip install --quiet --upgrade singer-sdk
	@echo "singer-sdk $$($(SDK_LATEST_VENV)/bin/python -c 'import importlib.metadata as m; print(m.version("singer-sdk"))')"
	$(SDK_LATEST_VENV)/bin/pytest -q $(FAST) tests

bench: $(DEV_STAMP)
	$(VENV)/bin/python benchmarks/run_all.py --check

clean:
	rm -rf $(VENV) $(MELTANO_VENV) $(SDK_LATEST_VENV) .meltano output .pytest_cache .ruff_cache .mypy_cache
