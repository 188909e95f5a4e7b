# cutpoint — `make help` lists the targets. Every stage is `python -m <stage>`; the Makefile wires
# them through real files under $(RUN) so that `make` skips what is up to date.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
VENV_STAMP := $(VENV)/.stamp-requirements

CONFIG ?= configs/default.toml
EXPERIMENT ?= $(basename $(notdir $(CONFIG)))
RUN ?= runs/$(EXPERIMENT)

# Variables that override single config values (see README "Configuration"). CUTS= picks the
# cut points to extract only when `extract` (or `all`) is a goal; otherwise it restricts classify.
SETS := $(if $(DATASET),--set dataset.name=$(DATASET)) \
        $(if $(BACKBONE),--set backbone.name=$(BACKBONE)) \
        $(if $(WEIGHTS),--set backbone.weights=$(WEIGHTS)) \
        $(if $(CUTS),$(if $(filter extract all,$(MAKECMDGOALS)),--set 'extract.cuts=$(CUTS)') \
                     --set 'classical.cuts=$(CUTS)') \
        $(if $(POOLING),--set extract.pooling=$(POOLING)) \
        $(if $(PRECISION),--set extract.precision=$(PRECISION)) \
        $(if $(CLASSIFIERS),--set 'classical.classifiers=$(CLASSIFIERS)') \
        $(if $(DEPTHS),--set 'finetune.depths=$(DEPTHS)') \
        $(if $(LIMIT),--set dataset.limit=$(LIMIT)) \
        $(if $(SEED),--set experiment.seed=$(SEED)) \
        $(if $(BUDGETS),--set 'curve.budgets=$(BUDGETS)') \
        $(if $(SEEDS),--set 'curve.seeds=$(SEEDS)')
# WORKERS=N: a Dask LocalCluster of N processes; SCHEDULER=tcp://…: an existing Dask cluster.
DASK = $(if $(WORKERS),--workers $(WORKERS)) $(if $(SCHEDULER),--scheduler $(SCHEDULER))
# What each stage reads: the core, the backbones package, its own package, and the config
# sections in its stamp ($(RUN)/.stage/<stage>.toml, rewritten only when those sections change).
CORE = $(wildcard cutpoint/*.py embeddings/*.py)
BACKBONES = $(wildcard backbones/*.py)
RESOLVED := $(RUN)/config.toml
STAGE = $(RUN)/.stage

.DEFAULT_GOAL := help
.PHONY: help venv data extract classify finetune umap report all curve archive-results test test-fast bench clean FORCE

help: ## List the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'
	@echo "  Variables: CONFIG=configs/x.toml DATASET= BACKBONE= WEIGHTS= CUTS= POOLING= PRECISION= CLASSIFIERS= DEPTHS= LIMIT= SEED= WORKERS= SCHEDULER=tcp://host:8786 BUDGETS=1,5,20 SEEDS=0,1,2"

venv: $(VENV_STAMP) ## Build .venv from requirements.txt (redone only when it changes)
$(VENV_STAMP): requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

data: ## Install Fashion-MNIST from Debian (dataset-fashion-mnist) when possible
	@bash .ci/install-data || true

$(RESOLVED): FORCE $(VENV_STAMP)
	@$(PY) -m cutpoint resolve --config $(CONFIG) $(SETS) --out $@ --stamps $(STAGE)
# Written by the resolve above; make re-reads their times, so only changed ones count.
$(STAGE)/%.toml: $(RESOLVED) ;

# The target is extract.json, written last and only by a completed extraction: a killed or failed
# run leaves no target, so the next `make extract` resumes the store from its last committed chunk.
# A store deleted by hand forces the stage too.
extract: $(RUN)/extract.json ## Train the backbone if needed and embed the dataset at every cut point
$(RUN)/extract.json: $(STAGE)/extract.toml $(CORE) $(BACKBONES) $(wildcard extract/*.py) $(if $(wildcard $(RUN)/embeddings.h5),,FORCE) | data
	$(PY) -m extract --config $(RESOLVED) --run-dir $(RUN) $(DASK)

classify: $(RUN)/classical/done.json ## Tuned sklearn/XGBoost pipelines on every cut point
$(RUN)/classical/done.json: $(RUN)/extract.json $(STAGE)/classify.toml $(CORE) $(wildcard classical/*.py)
	$(PY) -m classical run --config $(RESOLVED) --run-dir $(RUN) $(DASK)

finetune: $(RUN)/finetune/done.json ## Fine-tuned baselines at every depth, and from scratch
# Fine-tuning reads the images and the trained backbone (it trains it when missing), never
# the embedding store.
$(RUN)/finetune/done.json: $(STAGE)/finetune.toml $(CORE) $(BACKBONES) $(wildcard finetune/*.py)
	$(PY) -m finetune --config $(RESOLVED) --run-dir $(RUN)

umap: $(RUN)/umap/done.json ## UMAP pictures of every cut point's embeddings
# UMAP colours each picture by the validation-chosen classifier's mistakes at that cut.
$(RUN)/umap/done.json: $(RUN)/extract.json $(RUN)/classical/done.json $(STAGE)/umap.toml $(CORE) report/umap_stage.py report/plots.py
	$(PY) -m report umap --config $(RESOLVED) --run-dir $(RUN)

report: $(RUN)/report/report.md ## The side-by-side report (Markdown + PNGs)
$(RUN)/report/report.md: $(RUN)/classical/done.json $(wildcard $(RUN)/finetune/done.json) $(wildcard $(RUN)/umap/done.json) $(wildcard $(RUN)/curve/done.json) $(STAGE)/report.toml $(CORE) $(wildcard report/*.py)
	$(PY) -m report build --config $(RESOLVED) --run-dir $(RUN)

curve: $(RUN)/curve/done.json ## Label-efficiency curve: every method at each labels-per-class budget x seed
$(RUN)/curve/done.json: $(RUN)/extract.json $(STAGE)/curve.toml $(CORE) $(BACKBONES) $(wildcard curve/*.py classical/*.py finetune/*.py) report/curve.py
	$(PY) -m curve --config $(RESOLVED) --run-dir $(RUN)

all: extract classify finetune umap report ## Every stage on the configured experiment

archive-results: $(RESOLVED) ## Move other experiments' rows from results.csv to results-archive.csv
	$(PY) -m cutpoint archive --config $(RESOLVED) --run-dir $(RUN)

test: $(VENV_STAMP) ## Run every test, slow end-to-end ones included
	$(PY) -m pytest -q

test-fast: $(VENV_STAMP) ## Run the tests without the slow end-to-end ones
	$(PY) -m pytest -q -m "not slow"

bench: $(VENV_STAMP) ## Speed and memory benchmarks → benchmarks/results.json and .md
	$(PY) -m benchmarks

clean: ## Remove this experiment's run folder
	rm -rf $(RUN)

FORCE:
