# kb: two commands on a fresh machine — `make run` (the product on embedded defaults) and `make test`.
SHELL := /bin/bash
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
# faiss-gpu and a CUDA build of llama.cpp when a GPU is present; CPU builds otherwise.
GPU := $(shell command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1 && echo 1)
EXTRA := $(if $(GPU),gpu,cpu)
PIP_ENV := $(if $(GPU),CMAKE_ARGS="-DGGML_CUDA=on",)
FIND_LINKS := $(if $(wildcard /opt/wheels),--find-links /opt/wheels,)
STAMP := $(VENV)/.installed-$(EXTRA)

.PHONY: install run test lint bench clean-venv

install: $(STAMP)

$(STAMP): pyproject.toml
	@command -v $(PY) >/dev/null || { echo "Python 3.11 is required ($(PY) not found)"; exit 1; }
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip setuptools wheel
	# torch first from the CPU wheel on disk, so nothing pulls a multi-GB CUDA build by accident
	$(BIN)/pip install -q $(FIND_LINKS) "torch==2.13.0"
	$(PIP_ENV) $(BIN)/pip install $(FIND_LINKS) -e ".[$(EXTRA),test]"
	@touch $@

run: install
	$(BIN)/kb init
	$(BIN)/kb models pull
	$(BIN)/kb serve

test: install
	$(BIN)/ruff check .
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check .

clean-venv:
	rm -rf $(VENV)
