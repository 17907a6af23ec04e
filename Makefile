# Two commands set up a fresh machine (each makes .venv and installs what it needs):
#   make demo   train on the bundled Tabula Muris data, annotate the test cells, print accuracy
#   make test   ruff, mypy, the test suite (doctests and the tutorial notebook included) and
#               the packaging check
#   make test-fast  the same without the slow end-to-end tests (notebook, torchrun, kills) and
#               without the packaging check
#   make package-check  build the sdist and wheel, twine check them, install the wheel into a
#               fresh venv and run the demo from it (.ci/package_check.sh)
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DATA := deepchem_actinn/bundled
RUNS := runs
# torch==2.13.0 first: a loose pin would pull a multi-GB CUDA build on Linux.
TORCH ?= torch==2.13.0
# Sdist and wheel built with the dev venv's build and twine; the fresh venv made from $(PYTHON).
PACKAGE_CHECK = BUILD_PYTHON=$(BIN)/python PYTHON=$(PYTHON) TORCH="$(TORCH)" bash .ci/package_check.sh

.PHONY: demo test test-fast package-check venv clean

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
	$(PACKAGE_CHECK)

test-fast: venv
	$(BIN)/ruff check deepchem_actinn tests benchmarks
	$(BIN)/mypy deepchem_actinn
	$(BIN)/python -m pytest -m "not slow"

package-check: venv
	$(PACKAGE_CHECK)

clean:
	rm -rf $(VENV) $(RUNS) build dist *.egg-info
