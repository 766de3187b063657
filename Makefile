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
	@test -f $(DEMO_WS)/specs/baseline_spec.yaml || $(PY) scripts/make_demo_workspace.py --out $(DEMO_WS) --preset demo
	@$(PY) scripts/run_pipeline.py --workspace $(DEMO_WS) --phases all --max-iterations 3 \
		--kpi-target "FAR < 1% at Recall=100%" --trials 8 --yes

test: venv-test
	$(PY) -m pytest $(PYTEST_ARGS)

test-fast: venv-test
	$(PY) -m pytest -m "not slow and not integration" $(PYTEST_ARGS)

bench:  # bench/mining.py times faiss (the ann extra), bench/embedded.py --trees the tree libraries (bench)
	@$(PYTHON) scripts/setup_env.py --extra ann --extra bench --quiet
	@for b in bench/*.py; do echo "== $$b"; $(PY) $$b || exit $$?; done

clean:
	rm -rf $(VENV) demo .pytest_cache .hypothesis
