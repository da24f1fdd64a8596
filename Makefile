# The two set-up commands of README.md: `make demo` and `make test`.
# Both install what they need (Debian packages, then a virtualenv in .venv).
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
DEB_PACKAGES := busybox-static gcc libc6-dev make python3-venv iproute2 libseccomp2
STAMP := $(VENV)/.installed

.PHONY: setup deps demo test test-clients client-deps lint bench clean

setup: $(STAMP)

deps:
	@missing=""; for p in $(DEB_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

$(STAMP): pyproject.toml | deps
	@[ -x $(PY) ] || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]' --config-settings editable_mode=compat
	@# nothing here needs setuptools at run time (pip builds in an isolated environment), and
	@# its distutils-precedence.pth runs an import at every interpreter start (~0.5 ms of each
	@# torpor command); venvs of Python 3.12 and later come without it
	$(PY) -m pip uninstall -q -y setuptools
	@touch $(STAMP)

demo: setup
	@$(PY) -m compileall -q torpor >/dev/null  # .pyc files: every command starts ~90 ms faster
	$(VENV)/bin/torpor demo

test: setup
	$(PY) -m ruff check torpor tests bench
	$(PY) -m pytest -q -m "not clients" tests

# Optional, not part of `make test`: Debian's Docker, containerd and Podman driving torpor
# end to end (each daemon private to its test). Installs the clients first.
CLIENT_PACKAGES := docker.io containerd podman
client-deps:
	@missing=""; for p in $(CLIENT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

test-clients: setup client-deps
	$(PY) -m pytest -q tests/clients

bench: setup
	$(PY) -m pip install -q -e '.[test,bench]' --config-settings editable_mode=compat
	$(PY) -m bench

lint: setup
	$(PY) -m ruff check torpor tests bench

clean:
	rm -rf $(VENV) build *.egg-info
