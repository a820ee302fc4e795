# resnet-exp: every target sets up .venv itself on a fresh clone.
SHELL := /bin/bash
.DEFAULT_GOAL := help
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

# A folder holding cifar-10-batches-py/. Default: the shared copy beside this checkout if there is one,
# else ./data (where `data.download=true` puts the official archive).
RESNET_EXP_DATA ?= $(abspath $(firstword $(wildcard ../shared/data) data))
export RESNET_EXP_DATA

MODELS ?= plain20,plain56,resnet20,resnet56
ARGS ?=
# The preset `make demo` runs: degradation_quick (the paper's schedule shape and init, 2000 iterations), or
# degradation_fast (half the images, two named deviations; README).
PRESET ?= degradation_quick
# The demo sweep has a fixed dir per preset, so running `make demo` again resumes it instead of starting over.
DEMO_DIR ?= $(if $(filter degradation_quick,$(PRESET)),outputs/demo,outputs/demo_$(PRESET))
RUNS ?= $(DEMO_DIR)
OUT ?= $(RUNS)/degradation.png

.PHONY: help install try demo predict test test-all lint train sweep plot bench profile gpu-check tensorboard clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/' | expand -t 14

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip
	$(BIN)/pip install -e '.[dev]'
	rm -f $(VENV)/.installed-* && touch $@

install: $(STAMP)  ## create .venv and install the package with its dev extras

try: install  ## seconds on a CPU: a tiny synthetic sweep (experiment=tiny) and its figure, in outputs/try
	$(BIN)/resnet-exp experiment=tiny hydra.sweep.dir=outputs/try $(ARGS)
	$(BIN)/resnet-exp-report outputs/try --out outputs/try/degradation.png

demo: install  ## the degradation study, shortened for a CPU (about 23 min on 2 cores with native bf16, 2 h without), its figure and table
	$(BIN)/resnet-exp experiment=$(PRESET) data.download=true hydra.sweep.dir=$(DEMO_DIR) $(ARGS)
	$(BIN)/python scripts/plot_degradation.py $(DEMO_DIR) --out $(DEMO_DIR)/degradation.png

predict: install  ## how long `make demo` will take on this machine (times a few steps of each net, about 20 s)
	$(BIN)/resnet-exp experiment=$(PRESET) predict=true $(ARGS)

test: install  ## the default suite (slow tests excluded)
	$(BIN)/python -m pytest -q $(ARGS)

.PHONY: test-slurm
test-slurm: install  ## the tests on a SLURM cluster, where sinfo answers (`sudo scripts/slurm_local.sh start` sets one up here)
	$(BIN)/python -m pytest -q -m slurm $(ARGS)

test-all: install  ## every test, the slow ones too
	$(BIN)/python -m pytest -q -m "slow or not slow" $(ARGS)

lint: install  ## ruff over the tree
	$(BIN)/ruff check .

train: install  ## one run with the paper's recipe: make train ARGS="model=plain56"
	$(BIN)/resnet-exp $(ARGS)

sweep: install  ## a multirun over MODELS: make sweep MODELS=plain20,plain56 ARGS="trainer.max_iters=2000"
	$(BIN)/resnet-exp -m model=$(MODELS) $(ARGS)

plot: install  ## figure + table from runs: make plot RUNS=outputs/multirun/<date>/<time> OUT=fig.pdf
	$(BIN)/python scripts/plot_degradation.py $(RUNS) --out $(OUT)

bench: install  ## throughput of our training path against a plain torchvision reference (JSON in outputs/)
	$(BIN)/python -m resnet_exp.tools.benchmark $(ARGS)

profile: install  ## where a training step's time goes, by operator family (JSON in outputs/)
	$(BIN)/python -m resnet_exp.tools.step_profile $(ARGS)

gpu-check: install  ## on a GPU (about 5 min): CUDA tests, CUDA benchmark, quick preset on CUDA; report in outputs/gpu_check/
	$(BIN)/python scripts/gpu_check.py $(ARGS)

tensorboard: install  ## TensorBoard over outputs/
	$(BIN)/tensorboard --logdir outputs

clean:  ## remove build and test caches (not outputs/ nor .venv)
	rm -rf build dist src/*.egg-info .pytest_cache .ruff_cache
	find . -name __pycache__ -not -path './$(VENV)/*' -prune -exec rm -rf {} +
