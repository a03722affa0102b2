# sendas — `make run` starts it, `make test` checks everything. See README.md.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=

# Debian packages the test suite starts private instances of (PostgreSQL, Dovecot, Postfix
# with SASL), plus headless Chromium for the web tests and swaks/openssl for mail checks.
SYSTEM_PACKAGES := python3-venv postgresql dovecot-core dovecot-imapd postfix sasl2-bin \
	libsasl2-modules chromium swaks libnet-ssleay-perl libio-socket-ssl-perl openssl \
	ca-certificates

# Stamps: reinstall only when pyproject.toml changes.
RUN_STAMP := $(VENV)/.installed-run
DEV_STAMP := $(VENV)/.installed-dev
PIP := $(BIN)/python -m pip --disable-pip-version-check --quiet

LINT_PATHS := $(wildcard src tests bench)

.PHONY: help run test lint bench chaos clean system-packages venv

help:
	@echo "make run    install into $(VENV) and start sendas serve (http://127.0.0.1:8025)"
	@echo "make test   system packages, dev install, ruff, mypy, pytest (PYTEST_ARGS=...)"
	@echo "make lint   ruff check, ruff format --check, mypy"
	@echo "make bench  run bench/run.py"
	@echo "make chaos  run bench/chaos.py (CHAOS_ARGS=...; needs root for Dovecot)"
	@echo "make clean  remove $(VENV) and caches (keeps var/, your data)"

run: $(RUN_STAMP)
	$(BIN)/sendas serve

test: system-packages lint
	@echo "+ pytest"
	@# Exit code 5 means "no tests collected": not a failure for us.
	$(BIN)/pytest -q -p no:cacheprovider $(PYTEST_ARGS) || { rc=$$?; [ $$rc -eq 5 ]; }

lint: $(DEV_STAMP)
	$(BIN)/ruff check $(LINT_PATHS)
	$(BIN)/ruff format --check $(LINT_PATHS)
	$(BIN)/mypy

# The anchors: nodemailer from npm (bench/package-lock.json); smtp-sink/smtp-source come with
# Postfix (system-packages).
bench: $(DEV_STAMP) system-packages
	@if [ ! -d bench/node_modules/nodemailer ] && command -v npm >/dev/null; then \
		echo "+ npm ci --prefix bench"; npm ci --prefix bench --no-audit --no-fund; \
	fi
	$(BIN)/python bench/run.py $(BENCH_ARGS)

# Kills workers, the SMTP server and PostgreSQL under a 10,000-recipient form letter and counts
# what arrived (bench/chaos.py); exits non-zero when a message was lost or duplicated.
chaos: $(DEV_STAMP) system-packages
	$(BIN)/python bench/chaos.py $(CHAOS_ARGS)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis test-artifacts \
		build dist src/*.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +

venv: $(BIN)/python

$(BIN)/python:
	@$(PYTHON) -c 'import ensurepip, venv' 2>/dev/null || { \
		echo "$(PYTHON) cannot create virtual environments: apt-get install python3-venv" >&2; \
		exit 1; }
	$(PYTHON) -m venv $(VENV)

$(RUN_STAMP): pyproject.toml | $(BIN)/python
	@echo "+ pip install -e . (quiet)"
	$(PIP) install -e .
	touch $@

$(DEV_STAMP): pyproject.toml | $(BIN)/python
	@echo "+ pip install -e '.[dev]' (quiet)"
	$(PIP) install -e '.[dev]'
	touch $@ $(RUN_STAMP)

# Install what is missing (as root, with apt-get); the packages' own services are neither
# started nor needed: the tests start private instances on free ports. A policy-rc.d that
# answers 101 ("action forbidden") keeps maintainer scripts from starting them.
system-packages:
	@missing=""; \
	for pkg in $(SYSTEM_PACKAGES); do \
		status=$$(dpkg-query -W -f='$${db:Status-Status}' "$$pkg" 2>/dev/null || true); \
		[ "$$status" = installed ] || missing="$$missing $$pkg"; \
	done; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then \
		echo "warning: missing system packages:$$missing" >&2; \
		echo "warning: as root: apt-get install$$missing (tests needing them skip, or fail under CI=true)" >&2; \
		exit 0; \
	fi; \
	echo "+ apt-get install$$missing"; \
	own_policy=""; \
	if [ ! -e /usr/sbin/policy-rc.d ]; then \
		printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; \
		chmod 755 /usr/sbin/policy-rc.d; \
		own_policy=1; \
	fi; \
	trap '[ -z "$$own_policy" ] || rm -f /usr/sbin/policy-rc.d' EXIT; \
	echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections; \
	apt-get update -qq; \
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(SYSTEM_PACKAGES)
