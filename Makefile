# Two commands set up a fresh machine (each makes .venv and installs what it needs):
#   make demo   train on the bundled Tabula Muris data, annotate the test cells, print accuracy
#   make test   ruff, mypy and the test suite (doctests and the tutorial notebook included)
#   make test-fast  the same without the slow end-to-end tests (notebook, torchrun, kills)
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DATA := deepchem_actinn/bundled
RUNS := runs
# torch==2.13.0 first: a loose pin would pull a multi-GB CUDA build on Linux.
TORCH ?= torch==2.13.0

.PHONY: demo test test-fast venv clean

$(VENV)/.installed: setup.py constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check "$(TORCH)" -c constraints.txt
	$(BIN)/python -m pip install -q --disable-pip-version-check -c constraints.txt -e ".[dev,anndata]"
	touch $@

venv: $(VENV)/.installed

demo: venv
	mkdir -p $(RUNS)
	$(BIN)/deepchem-actinn train --train-set $(DATA)/train_sample.h5 \
		--train-labels $(DATA)/train_label_sample.txt --model-dir $(RUNS)/tm_model
	$(BIN)/deepchem-actinn predict --model-dir $(RUNS)/tm_model \
		--test-set $(DATA)/test_sample.h5 --output $(RUNS)/test_predictions.tsv
	$(BIN)/deepchem-actinn evaluate --predictions $(RUNS)/test_predictions.tsv \
		--labels $(DATA)/test_label_sample.txt

test: venv
	$(BIN)/ruff check deepchem_actinn tests benchmarks
	$(BIN)/mypy deepchem_actinn
	$(BIN)/python -m pytest

test-fast: venv
	$(BIN)/ruff check deepchem_actinn tests benchmarks
	$(BIN)/mypy deepchem_actinn
	$(BIN)/python -m pytest -m "not slow"

clean:
	rm -rf $(VENV) $(RUNS) build *.egg-info
