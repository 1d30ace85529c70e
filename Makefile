# Set-up is part of every target: a fresh clone needs only python3 (3.11+) and make.
PYTHON ?= python3
VENV := venv
PY := $(VENV)/bin/python
STACK ?= homelab
OUT ?= out
PYTHON_OK := import sys; sys.exit(sys.version_info < (3, 11))

.PHONY: render test lint bench clean

# A venv whose Python is missing or too old (made before the version check, or by another
# python3) is rebuilt, even though its marker file is up to date.
ifneq ($(shell $(PY) -c '$(PYTHON_OK)' 2>/dev/null && echo ok),ok)
.PHONY: $(VENV)/.installed
# Checked before anything is installed: one line instead of a traceback after a minute of pip.
ifneq ($(shell $(PYTHON) -c '$(PYTHON_OK)' 2>/dev/null && echo ok),ok)
ifneq ($(MAKECMDGOALS),clean)
$(error homelab-images needs Python 3.11 or newer, and '$(PYTHON)' is $(or $(shell $(PYTHON) -V 2>/dev/null),not found): install one and run make PYTHON=python3.11)
endif
endif
endif

$(VENV)/.installed: requirements.txt requirements-dev.txt pyproject.toml
	@# A venv made by another Python (too old, or since removed) is rebuilt, not reused.
	@if [ -d $(VENV) ] && ! $(PY) -c '$(PYTHON_OK)' 2>/dev/null; then \
	  echo "removing $(VENV): it was made by an unusable Python"; rm -rf $(VENV); fi
	@echo "setting up $(VENV) with $$($(PYTHON) -V): installing dependencies (about a minute the first time)"
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --disable-pip-version-check --progress-bar off -r requirements-dev.txt
	$(VENV)/bin/pip install --disable-pip-version-check --quiet --no-deps -e .
	touch $@

# The offline main job: validate every image and render its kickstart, Packer template and scripts.
render: $(VENV)/.installed
	$(VENV)/bin/homelab-images render --stack $(STACK) --out $(OUT)
	$(VENV)/bin/homelab-images validate --stack $(STACK)

test: $(VENV)/.installed
	@command -v shellcheck >/dev/null || echo "note: shellcheck is not installed: the tests that check kickstart/scripts/*.sh are skipped (apt-get install shellcheck)"
	$(PY) -m pytest

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/mypy examples/k3s-cluster/__main__.py
	$(VENV)/bin/lint-imports --no-cache

bench: $(VENV)/.installed
	$(PY) bench/bench_preview.py
	$(PY) bench/bench_runner.py

clean:
	rm -rf $(OUT) .mypy_cache .ruff_cache
