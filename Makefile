# Set-up and entry points. torch is pinned to the CPU build that lies on disk on the
# development and CI machines; the package itself accepts torch>=2.4.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
TORCH_PIN := torch==2.13.0
STAMP := $(VENV)/.installed

.PHONY: demo test test-slow lint clean

$(STAMP): pyproject.toml Makefile
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH_PIN)
	$(PY) -m pip install -q -e ".[dev,teachers]" $(TORCH_PIN)
	command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium >/dev/null)
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m hayabusa study examples/llzo/demo.yaml --output runs/demo --overwrite

test: $(STAMP)
	$(PY) -m pytest -q -n 2

test-slow: $(STAMP)
	$(PY) -m pytest -q -n 2 -m slow

lint: $(STAMP)
	$(VENV)/bin/ruff check hayabusa tests

clean:
	rm -rf $(VENV) runs
