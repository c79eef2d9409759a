# turnkit: `make demo` runs the local TURN + signaling stack and probes it; `make check` is the fast daemon-free
# subset (lint, types, pure tests); `make test` runs every test, daemons included; `make bench` measures.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
APT_PACKAGES := coturn nginx libnginx-mod-stream redis-server redis-sentinel certbot pebble chromium prometheus \
                debootstrap systemd openssl wrk iproute2 $(LAB_APT_PACKAGES)
# The fleet lab (docs/lab.md): nspawn hosts, NAT boxes, the flat apt repository, Chromium's NSS trust.
LAB_APT_PACKAGES := systemd-container nftables dpkg-dev libnss3-tools
DEMO_DIR ?= demo
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: setup system venv demo down check test lint typecheck unit bench bench-peers clean

setup: system venv

# Debian packages for the real daemons the tests and the demo run (skipped when all are present).
system:
	@missing=$$(for p in $(APT_PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages: $$missing"; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  own_policy=; if [ ! -e /usr/sbin/policy-rc.d ]; then own_policy=1; \
	    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d; fi; \
	  apt-get update -qq && apt-get install -y -qq --no-install-recommends $$missing >/dev/null; status=$$?; \
	  if [ -n "$$own_policy" ]; then rm -f /usr/sbin/policy-rc.d; fi; \
	  [ $$status -eq 0 ] || exit $$status; \
	fi

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

venv: $(VENV)/.installed

demo: setup
	mkdir -p $(DEMO_DIR)
	test -f $(DEMO_DIR)/turnkit.toml || $(VENV)/bin/turnkit init $(DEMO_DIR)/turnkit.toml
	cd $(DEMO_DIR) && ../$(VENV)/bin/turnkit deploy --region local --show-token

down:
	cd $(DEMO_DIR) && ../$(VENV)/bin/turnkit down --region local

lint: venv
	$(VENV)/bin/ruff check turnkit signaling tests bench
	$(VENV)/bin/ruff format --check turnkit signaling tests bench

typecheck: venv
	$(VENV)/bin/mypy

unit: venv
	$(VENV)/bin/pytest -q

# No daemon starts here: tests/conftest.py marks daemon tests and fails any unmarked test that starts one.
check: lint typecheck
	$(VENV)/bin/pytest -q -m "not daemon" -n auto

test: setup lint typecheck unit

# The Node benchmark peers (socket.io, socket.io-client, ws) exactly as bench/package-lock.json pins them.
bench/node_modules/.package-lock.json: bench/package.json bench/package-lock.json
	cd bench && npm ci --no-audit --no-fund

bench-peers: bench/node_modules/.package-lock.json

# Every section of docs/benchmarks.md, then docs/capacity.md's model from its figures (even if a section failed).
bench: setup bench-peers
	$(PY) -m bench; status=$$?; $(PY) -m bench.model && exit $$status

clean:
	rm -rf $(VENV) dist build .pytest_cache .mypy_cache .ruff_cache artifacts bench/node_modules

# ---- the fleet lab (docs/lab.md): Debian hosts as systemd-nspawn containers in 198.18.0.0/15 ----
LAB_DIR ?= lab-demo

.PHONY: lab lab-down bench-lab

$(LAB_DIR)/turnkit.toml: | $(VENV)/.installed
	mkdir -p $(LAB_DIR)
	$(PY) -m bench.lab --print-toml lab > $@.tmp && mv $@.tmp $@

lab: setup $(LAB_DIR)/turnkit.toml
	cd $(LAB_DIR) && { test -f turnkit.secrets.json || ../$(VENV)/bin/turnkit secret init; }
	cd $(LAB_DIR) && { test -f jwt.secret || (umask 077; head -c 32 /dev/urandom | base64 > jwt.secret); }
	cd $(LAB_DIR) && TURNKIT_JWT_SECRET="$$(cat jwt.secret)" ../$(VENV)/bin/turnkit deploy --region lab
	TURNKIT_JWT_SECRET="$$(cat $(LAB_DIR)/jwt.secret)" $(PY) -m bench.labcall --config $(LAB_DIR)/turnkit.toml

lab-down:
	cd $(LAB_DIR) && ../$(VENV)/bin/turnkit destroy --region lab --yes

# Section 6 of docs/benchmarks.md: cold lab deploy, unchanged re-deploy, NATed browser call setup (own lab).
bench-lab: setup
	flock /tmp/turnkit-lab.lock $(PY) -m bench.lab
