# Two commands do everything on a fresh machine (Python 3.11, no GPU):
#   make demo   set up .venv, train the missing demo adapters, run the comparison report
#   make test   set up .venv, run the test suite
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.stamp-$(shell (cat pyproject.toml; echo '$(LLAMA_CMAKE_ARGS)') | sha256sum | cut -c1-12)
# Portable llama.cpp CPU build (x86-64-v3). The native build enables the AMX kernels, which
# segfault in ggml_backend_amx_mul_mat on this workplace's CPUs (see README, "Known issues").
# No llamafile tinyBLAS: with it, F32/F16/Q8_0/Q5_0 matmuls of several tokens take other
# kernels than those of one token, and batched greedy texts part from one-at-a-time ones
# (README, "Compare": speed and identity of both builds, benchmarks/llama_builds.py).
LLAMA_CMAKE_ARGS ?= -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON -DGGML_LLAMAFILE=OFF
# pip's wheel cache is keyed by the sdist, not by CMAKE_ARGS: the wheel is built once per
# (version, flags) into its own folder and installed from there.
LLAMA_PIN    := $(shell grep -o 'llama-cpp-python==[0-9.]*' pyproject.toml)
LLAMA_WHEELS := $(HOME)/.cache/product-review-harness/llama-wheels/$(shell echo '$(LLAMA_PIN) $(LLAMA_CMAKE_ARGS)' | sha256sum | cut -c1-12)
# One variable per export line: `export A=1 B=1` would set A to "1 B=1".
export HF_HUB_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1
export HF_EVALUATE_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: setup test test-all demo bench clean-venv system-deps
# After the venv: register tasks/ with the installed lm-eval (stock `lm_eval --tasks
# product_review` then finds it; harness/evaluate/lm_eval_tasks.py); cheap and idempotent, so every time.
setup: system-deps $(STAMP)
	$(PY) -m harness.evaluate.lm_eval_tasks

# Debian packages the tests need: Chromium and its driver (tests/test_report_browser.py opens
# report.html in it). Installed only when missing, `apt-get update` first; root or sudo.
APT_PACKAGES := chromium chromium-driver
system-deps:
	@missing=$$(for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  command -v apt-get >/dev/null || { echo "need Debian packages: $$missing (no apt-get here)" >&2; exit 1; }; \
	  sudo=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  echo "apt-get install $$missing"; \
	  $$sudo apt-get update -q && \
	  $$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing; \
	fi

# Idempotent: re-runs only when pyproject.toml or LLAMA_CMAKE_ARGS changed (the stamp hashes both). torch goes in first, from the CPU
# build on this machine's disk; llama-cpp-python builds from source once per (version, flags): LLAMA_WHEELS.
$(STAMP): pyproject.toml
	test -x $(PY) || python3.11 -m venv $(VENV) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	ls $(LLAMA_WHEELS)/*.whl >/dev/null 2>&1 || \
	  CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" CMAKE_BUILD_PARALLEL_LEVEL=$$(nproc) \
	  $(PY) -m pip wheel -q --no-deps --no-cache-dir --no-binary llama-cpp-python \
	    '$(LLAMA_PIN)' -w $(LLAMA_WHEELS)
	$(PY) -m pip install -q --no-deps --force-reinstall $(LLAMA_WHEELS)/*.whl
	$(PY) -m pip install -q -e '.[dev]'
	rm -f $(VENV)/.stamp-*
	touch $@

test: setup
	$(PY) -m pytest -m "not slow" -q

test-all: setup
	$(PY) -m pytest -q

demo: setup
	$(VENV)/bin/harness demo

bench: setup
	$(PY) benchmarks/backends.py

# CUDA machines: Unsloth, vLLM and a CUDA torch in their own venv, from requirements/gpu.txt
# (its pins differ from pyproject.toml's, so the project goes in with --no-deps).
.PHONY: setup-gpu check-gpu-pins
setup-gpu:
	test -x .venv-gpu/bin/python || python3.11 -m venv .venv-gpu || python3 -m venv .venv-gpu
	.venv-gpu/bin/python -m pip install -q --upgrade pip
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" CMAKE_BUILD_PARALLEL_LEVEL=$$(nproc) \
	  .venv-gpu/bin/python -m pip install -q -r requirements/gpu.txt
	.venv-gpu/bin/python -m pip install -q --no-deps -e .

# No GPU needed: pip's resolver proves requirements/gpu.txt installs together (.ci/gpu_resolve.sh)
check-gpu-pins:
	bash .ci/gpu_resolve.sh
