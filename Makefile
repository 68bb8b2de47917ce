# The README's two commands: `make demo` (main job) and `make test` (checks + tests).
VENV ?= .venv
PY := $(VENV)/bin/python
WORKDIR ?= runs/demo
PYTEST_ARGS ?=

.PHONY: demo test lint format bench clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev,quant]'
	touch $@

demo: $(VENV)/.installed
	$(PY) scripts/demo.py --workdir $(WORKDIR)

lint: $(VENV)/.installed
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .

test: lint
	$(VENV)/bin/pytest -q -n 2 --dist loadfile $(PYTEST_ARGS)

format: $(VENV)/.installed
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache .jax_cache
