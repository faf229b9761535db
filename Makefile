# edgecnn developer and user targets. Everything runs inside .venv (created on first use).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install test lint format docs docs-serve demo models imagenet-model samples bench stress clean deploy-check deploy-check-arm64

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[train,dev]"
	@touch $(STAMP)

# The documentation site first (a few seconds): a broken link or a missing page fails the run.
test: install
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet
	$(BIN)/python -m pytest -q

# The documentation site into site/ (open site/index.html through `make docs-serve`).
docs: install
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

docs-serve: install
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs serve --strict --dev-addr 127.0.0.1:8000

lint: install
	$(BIN)/ruff check edgecnn tests benchmarks
	$(BIN)/ruff format --check edgecnn tests benchmarks
	$(BIN)/mypy
	$(BIN)/lint-imports

format: install
	$(BIN)/ruff format edgecnn tests benchmarks
	$(BIN)/ruff check --fix edgecnn tests benchmarks

clean:
	rm -rf runs demo site .pytest_cache .ruff_cache .mypy_cache

demo: install
	$(BIN)/edgecnn demo

models: install
	$(BIN)/python -c "from edgecnn.tools.demo import build_models; build_models()"

# The shipped ImageNet model from the installed EfficientNet-Lite0 weights, int8 calibrated on real photos.
DATASETS ?= ../shared/datasets
imagenet-model: install
	$(BIN)/python -c "from edgecnn.tools.imagenet import build_imagenet_model as b; b(['$(DATASETS)/cats_dogs/train', '$(DATASETS)/horse_or_human/train'], '$(DATASETS)/cats_dogs/val')"

samples: install
	$(BIN)/python -c "from edgecnn.tools.demo import make_samples; make_samples()"

bench: install
	$(BIN)/python benchmarks/run_all.py

stress: install
	$(BIN)/python -m pytest -q -m stress -p no:cacheprovider

# The bundles' proofs (docs/deploy.md): downloads from the package index, an x86_64 bundle in a fresh venv and
# an aarch64 one under qemu-user with Debian's arm64 Python (cached under ~/.cache/edgecnn).
deploy-check: install
	$(BIN)/python -m pytest -q -m deploy -p no:cacheprovider -s

deploy-check-arm64: install
	$(BIN)/python -m pytest -q -m deploy -p no:cacheprovider -s -k aarch64 tests/test_deploy_linux_proof.py
