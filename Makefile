# Quick start: `make demo` and `make test`. Both create .venv by themselves.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
DEMO_WS ?= demo/workspace

.PHONY: help venv venv-test demo test test-fast bench clean

help:
	@echo "make demo   - set up .venv and run the whole three-phase pipeline on the embedded default"
	@echo "make test   - set up .venv (with test tools) and run the test suite"
	@echo "make bench  - run the benchmark scripts in bench/"

venv:
	@$(PYTHON) scripts/setup_env.py --quiet

venv-test:
	@$(PYTHON) scripts/setup_env.py --test --quiet

demo: venv
	@echo "The embedded workspace, model and pipeline runner are not built yet (issues 3-6)."
	@echo "What exists: the durable run-state scripts. Walking one through its first stage:"
	@rm -rf demo/state-walkthrough && mkdir -p demo/state-walkthrough/ws/images demo/state-walkthrough/ws/specs demo/state-walkthrough/ws/train/base demo/state-walkthrough/ws/kpi
	@touch demo/state-walkthrough/ws/specs/baseline_spec.yaml demo/state-walkthrough/ws/train/base/training_set.csv demo/state-walkthrough/ws/train/base/validation_set.csv demo/state-walkthrough/ws/kpi/testing_set.csv
	@$(PY) scripts/init_deft_state.py --results-dir demo/state-walkthrough/run --workspace demo/state-walkthrough/ws --max-iterations 3 --kpi-target "FAR < 2% at Recall=100%"
	@$(PY) scripts/next_stage.py --results-dir demo/state-walkthrough/run

test: venv-test
	$(PY) -m pytest $(PYTEST_ARGS)

test-fast: venv-test
	$(PY) -m pytest -m "not slow and not integration" $(PYTEST_ARGS)

bench: venv
	@for b in bench/*.py; do echo "== $$b"; $(PY) $$b || exit $$?; done

clean:
	rm -rf $(VENV) demo .pytest_cache .hypothesis
