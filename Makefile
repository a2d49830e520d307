# One command per job. Each target builds .venv with Python 3.10 when it is missing or stale.
VENV := .venv
PY := $(VENV)/bin/python
PIP_FLAGS := --disable-pip-version-check --progress-bar off

.PHONY: demo test bench clean-venv

demo: $(VENV)/.installed
	$(PY) -m sast_deploy.cli demo

test: $(VENV)/.installed-test
	$(PY) -m pytest -q

bench: $(VENV)/.installed-bench
	$(PY) -m bench

$(VENV)/bin/python:
	@PY310=$$(tools/find-python310) && echo "creating $(VENV) with $$PY310" && $$PY310 -m venv $(VENV)
	$(PY) -m pip install $(PIP_FLAGS) -q --upgrade "pip>=24"

$(VENV)/.installed: pyproject.toml | $(VENV)/bin/python
	$(PY) -m pip install $(PIP_FLAGS) -e .
	@touch $@

$(VENV)/.installed-bench: pyproject.toml | $(VENV)/bin/python
	$(PY) -m pip install $(PIP_FLAGS) -e ".[bench]"
	@touch $@ $(VENV)/.installed

$(VENV)/.installed-test: pyproject.toml | $(VENV)/bin/python
	$(PY) -m pip install $(PIP_FLAGS) -e ".[test]"
	@touch $@ $(VENV)/.installed

clean-venv:
	rm -rf $(VENV)
