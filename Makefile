# The two commands a user needs: `make demo` (set up + run the whole job on bundled samples, CPU)
# and `make test` (set up + run the test suite). Both create .venv from nothing and are fast when
# it is already up to date.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEMO_OUT ?= demo_out
SYNCNET_PYTHON := syncnet-python==0.2.3

.PHONY: setup demo test test-fast clean

setup: $(STAMP)

$(STAMP): pyproject.toml constraints-cpu.txt Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# The exact CPU torch first: anything that depends on torch would otherwise pull a CUDA build.
	$(PY) -m pip install -q -c constraints-cpu.txt torch==2.13.0
	$(PY) -m pip install -q -c constraints-cpu.txt -e ".[test]"
	# syncnet_python's own code, the oracle of tests/test_syncnet_parity.py. Without its dependencies:
	# they would pin PySceneDetect < 0.7 and pull torchvision; the code it runs needs none of them.
	$(PY) -m pip install -q --no-deps $(SYNCNET_PYTHON)
	# audio-separator pulls torchvision (via onnx2torch); PyPI's torchvision is a CUDA build whose operators
	# fail beside the CPU torch and then break `import diffusers`. The MDX path runs without it.
	$(PY) -m pip uninstall -q -y torchvision
	touch $(STAMP)

demo: setup
	$(PY) -m examples.demo --out $(DEMO_OUT)

test: setup
	$(PY) -m pytest -q --durations=30

test-fast: setup
	$(PY) -m pytest -q -m "not slow"

clean:
	rm -rf $(DEMO_OUT) .pytest_cache
