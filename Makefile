# Set-up is part of every target: a fresh clone needs only python3 (3.11+) and make.
PYTHON ?= python3
VENV := venv
PY := $(VENV)/bin/python
STACK ?= homelab
OUT ?= out

.PHONY: render test lint bench clean

$(VENV)/.installed: requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

# The offline main job: validate every image and render its kickstart, Packer template and scripts.
render: $(VENV)/.installed
	$(PY) -m homelab_images render --stack $(STACK) --out $(OUT)
	$(PY) -m homelab_images validate --stack $(STACK)

test: $(VENV)/.installed
	$(PY) -m pytest

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/mypy examples/k3s-cluster/__main__.py

bench: $(VENV)/.installed
	$(PY) bench/bench_preview.py
	$(PY) bench/bench_runner.py

clean:
	rm -rf $(OUT) .mypy_cache .ruff_cache
