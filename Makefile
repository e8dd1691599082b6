# genrun: `make help` lists the targets.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.DEFAULT_GOAL := help
.PHONY: help install train test test-all bench tensorboard lint clean

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "} {printf "  make %-12s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install torch==2.14.1 torchvision==0.29.1
	$(BIN)/pip install -e ".[dev]"
	touch $(STAMP)

install: $(STAMP) ## a .venv with torch 2.14.1 / torchvision 0.29.1 and genrun (editable)

train: install ## train the embedded default (VAE on MNIST; offline: the 5,000 bundled digits)
	$(BIN)/genrun train

test: install ## the test suite (CPU, offline, under 10 minutes on 2 cores)
	$(BIN)/python -m pytest -q

test-all: install ## the test suite including tests marked slow
	$(BIN)/python -m pytest -q -m ""

BENCHES := startup vae_throughput vae_quality gan_throughput gan_ring8 eval_classifier text_gpt_shakespeare text_sampling_speed \
           ddpm_throughput ddpm_sampling ddpm_full_chain ddpm_guidance latent_vs_pixel \
           pixelcnn_sampling pixelcnn_throughput pixelcnn_likelihood vqvae_quality fgsm_mnist style_speed deepdream_octaves \
           gpt_time_to_quality compile_speed lightning_step_overhead lightning_real_step cache_pollution \
           cuda_probe_cost lightning_cold_caches startup_gc

bench: install ## the benchmarks in bench/ (~6 h on 2 cores; write bench/results/*.md; need ../shared/data)
	for script in $(BENCHES); do $(BIN)/python bench/$$script.py || exit 1; done
	$(BIN)/python bench/text_gpt_shakespeare.py --experiment char_lstm_shakespeare_cpu

tensorboard: install ## TensorBoard over every run under outputs/
	$(BIN)/tensorboard --logdir outputs

lint: install ## ruff over src, tests and bench
	$(BIN)/ruff check src tests bench

clean: ## remove runs, caches and build files (keeps .venv)
	rm -rf outputs/train outputs/sample outputs/evaluate outputs/multirun outputs/.cache bench/.runs build dist
	find . -name __pycache__ -prune -exec rm -rf {} +
