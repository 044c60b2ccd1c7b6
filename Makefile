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
# testinfra's Ansible backend and the harness call ansible-* by name.
export PATH := $(abspath $(BIN)):$(PATH)
# The MNIST test files; CI keeps them in ../shared/data/mnist. Without that folder this stays empty
# and the harness fetches them into .cache/mnist on first use.
export DCGAN_MNIST_DIR ?= $(abspath $(wildcard ../shared/data/mnist))

.PHONY: help venv chromium lint unit compat aws journey aws-up aws-run aws-down localcloud e2e infra e2e-full run run-fast bench bench-scale report docs grade grade-tests bench-grade own molecule cloud-down test clean

help:
	@echo "make test    every test layer (creates $(VENV) first)"
	@echo "make lint    yamllint, syntax-check, ansible-lint and the playbook rules"
	@echo "make unit    the static test layer (tests/unit)"
	@echo "make compat  syntax-check under ansible-core 2.15"
	@echo "make aws     AWS provisioning tests against a local moto server"
	@echo "make aws-up / aws-run / aws-down   create the EC2 VM, deploy to it, delete it"
	@echo "             (aws-run AWS_DOWN=1: aws-down afterwards, also when the run fails)"
	@echo "             (AWS_ARGS=\"-e ...\" for provision.yaml, AWS_RUN_ARGS=\"-e ...\" for configure.yaml)"
	@echo "make journey the AWS targets end to end offline: moto's instances backed by local VMs (needs Docker)"
	@echo "make e2e     local cloud, infra and fast end-to-end layers (needs Docker; root starts it)"
	@echo "make e2e-full  the course's exact configuration on a local VM (79 iterations)"
	@echo "make run     configure.yaml on a fresh local VM -> resultados/compute01/output.txt"
	@echo "make run-fast  the same with 256 images and a narrow DCGAN (the CI configuration)"
	@echo "make bench   time each phase of a fast run and a rerun, beside the bare apt-get/docker equivalents"
	@echo "make bench-scale  the fast run on 1 and 2 VMs: epoch time and all-reduce cost per iteration"
	@echo "make report  report.md, report.json and losses.png for resultados/ (RESULTS=folder)"
	@echo "make docs    write docs/student/knobs.md and docs/rules/ from configure.yaml and the rule classes"
	@echo "make grade SUBMISSIONS=\"...\"  grade students' configure.yaml, sandboxed (GRADE_ARGS=\"--jobs 2\")"
	@echo "make grade-tests  the grader's own tests: the test class, hostile submissions included"
	@echo "make own PLAYBOOK=...  your playbook deployed and checked as the grader does, on a fresh VM"
	@echo "make molecule  molecule test: create, converge, idempotence, verify (testinfra), destroy on a local VM"
	@echo "make bench-grade  submissions per hour at --jobs 1 and 2, fast mode"
	@echo "make cloud-down  remove every local VM, also those a killed run left"
	@echo "make clean   remove the virtualenvs"

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

# The class report's test opens grades/index.html in a headless browser. As
# root (CI runners, fresh dev VMs) Debian's chromium is installed, as the
# local cloud installs docker.io; anyone else is told the command, and the
# test fails saying the same.
chromium:
	@if ! command -v chromium >/dev/null 2>&1 && ! command -v chromium-browser >/dev/null 2>&1; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
			echo "installing chromium with apt-get (one time)..."; \
			DEBIAN_FRONTEND=noninteractive apt-get update -q && \
			DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium; \
		else \
			echo "note: the report test needs a headless browser: sudo apt-get install chromium" >&2; \
		fi; \
	fi

unit: $(STAMP) chromium
	$(PYTEST) tests/unit --playbook $(PLAYBOOK)

$(COMPAT_VENV)/.installed:
	$(PYTHON) -m venv $(COMPAT_VENV)
	$(COMPAT_VENV)/bin/pip install --quiet "ansible==8.7.0" "ansible-core==2.15.13"
	touch $@

compat: $(COMPAT_VENV)/.installed
	$(COMPAT_VENV)/bin/python -c "import ansible.release as r; print('ansible-core', r.__version__)"
	ANSIBLE_CONFIG=ansible.cfg $(COMPAT_VENV)/bin/ansible-playbook --syntax-check -i inventory.yaml $(PLAYBOOK)

# The slow AWS cases (more make runs against moto): $(PYTEST) -m slow tests/aws
aws: $(STAMP)
	$(PYTEST) -m "not slow" tests/aws

# The AWS workflow reads its settings from vars.sh (see vars.sh.example).
AWS_ENV = set -e; if [ -f vars.sh ]; then . ./vars.sh; fi;
AWS_ARGS ?=
# Extra options for configure.yaml in aws-run, e.g. AWS_RUN_ARGS="-e dcgan_epochs=2".
AWS_RUN_ARGS ?=

# aws-run runs these two itself, rather than through $(MAKE), so that
# `make -n aws-run` only prints.
AWS_UP_COMMAND = $(BIN)/ansible-playbook -i localhost, provision.yaml $(AWS_ARGS)
AWS_DOWN_COMMAND = $(BIN)/ansible-playbook -i localhost, teardown.yaml

aws-up: $(STAMP)
	$(AWS_ENV) $(AWS_UP_COMMAND)

# configure.yaml fetches output.txt into resultados/<host>/ itself. aws-up runs
# first with the same AWS_ARGS, so pass the ones given to aws-up again.
# AWS_DOWN=1 runs aws-down afterwards, also when aws-up, the preflight or
# configure.yaml failed or was interrupted (Ctrl-C); make then still fails,
# with the exit status of the step that failed.
AWS_DOWN ?= 0

aws-run: $(STAMP)
	@case "$(AWS_DOWN)" in ""|0|1) ;; *) echo "error: AWS_DOWN must be 1 (run aws-down afterwards) or 0, not $(AWS_DOWN)" >&2; exit 2;; esac; \
	$(AWS_ENV) step() { echo "$$*"; "$$@"; }; status=0; \
	if [ "$(AWS_DOWN)" = 1 ]; then trap 'echo "interrupted: aws-down follows (AWS_DOWN=1)" >&2' INT TERM; fi; \
	{ step $(AWS_UP_COMMAND) && step $(BIN)/dcgan-harness aws preflight && \
		step $(BIN)/ansible-playbook -i inventory.aws_ec2.yaml $(PLAYBOOK) $(AWS_RUN_ARGS); } || status=$$?; \
	if [ "$(AWS_DOWN)" = 1 ]; then \
		echo "AWS_DOWN=1: aws-down$$([ $$status = 0 ] || echo ", although the run failed (exit status $$status)")"; \
		if step $(AWS_DOWN_COMMAND); then \
			[ $$status = 0 ] || echo "error: the run failed with exit status $$status (see above aws-down's output); aws-down ended its VMs" >&2; \
		else down=$$?; [ $$status != 0 ] || status=$$down; \
			echo "error: aws-down failed, so VMs may still run (they end themselves after max_hours): make aws-down" >&2; fi; \
	fi; \
	exit $$status

aws-down: $(STAMP)
	$(AWS_ENV) $(AWS_DOWN_COMMAND)

# make aws-up, aws-run and aws-down in a copy of the repository, against moto,
# each instance backed by a local VM.
journey: $(STAMP)
	$(PYTEST) tests/journey

# The local cloud tests, the infra checks and the fast e2e share one VM session.
e2e: $(STAMP)
	$(PYTEST) -m "not slow" tests/infra tests/e2e

e2e-full: $(STAMP)
	$(PYTEST) -m slow tests/e2e

run: $(STAMP)
	$(BIN)/dcgan-harness run $(RUN_ARGS)

run-fast: $(STAMP)
	$(BIN)/dcgan-harness run --fast $(RUN_ARGS)

bench: $(STAMP)
	$(BIN)/python -m dcgan_harness.bench --output bench-results.json

# BENCH_ARGS="--extra-args ''" times the course's full-width DCGAN instead.
bench-scale: $(STAMP)
	$(BIN)/python -m dcgan_harness.bench --scale --output bench-scale.json $(BENCH_ARGS)

RESULTS ?= resultados
report: $(STAMP)
	$(BIN)/dcgan-harness report $(RESULTS)

# The pages whose truth is the code; tests/unit/test_docs.py fails until they match it.
docs: $(STAMP)
	$(BIN)/python -m dcgan_harness.docs_pages

cloud-down: $(STAMP)
	$(BIN)/dcgan-harness cloud down

# Teaching assistants: make grade SUBMISSIONS="path/to/class" GRADE_ARGS="--jobs 2 --out grades"
SUBMISSIONS ?=
GRADE_ARGS ?=

grade: $(STAMP)
	@if [ -z "$(SUBMISSIONS)" ]; then echo 'error: name the submissions: make grade SUBMISSIONS="folder or files"' >&2; exit 2; fi
	$(BIN)/dcgan-harness grade $(GRADE_ARGS) $(SUBMISSIONS)

grade-tests: $(STAMP)
	$(PYTEST) tests/grade

# Molecule's scenario (molecule/default) on the local cloud: create, converge,
# idempotence, verify (testinfra), destroy. Also run by the infra layer.
molecule: $(STAMP)
	$(BIN)/molecule test

# A student's own playbook deployed and checked as the grader does it:
# make own PLAYBOOK=path/to/configure.yaml
own: $(STAMP)
	$(PYTEST) tests/own --playbook $(abspath $(PLAYBOOK))

bench-grade: $(STAMP)
	$(BIN)/python -m dcgan_harness.grade.bench --output bench-grade-results.json

# Every layer in turn, stopping at the first that fails, then the time each took.
# With PLAYBOOK=<a student's file>, the layers that judge a playbook (static,
# compat, own) run on that file first; the ones after test the harness itself,
# on the repository's configure.yaml.
HARNESS_LAYERS := aws journey e2e grade-tests
ifeq ($(abspath $(PLAYBOOK)),$(abspath configure.yaml))
LAYERS ?= unit compat $(HARNESS_LAYERS)
else
LAYERS ?= unit compat own $(HARNESS_LAYERS)
endif
LAYER_TIMES := .cache/make-test-times

BUILD_TIMES := .cache/make-test-builds

test:
	@mkdir -p $(dir $(LAYER_TIMES)); : > $(LAYER_TIMES); : > $(BUILD_TIMES)
	@for layer in $(LAYERS); do \
		started=$$(date +%s); \
		case " $(HARNESS_LAYERS) " in *" $$layer "*) \
			[ "$(abspath $(PLAYBOOK))" = "$(abspath configure.yaml)" ] || \
				echo "make test: $$layer tests the harness itself, on the repository's configure.yaml";; esac; \
		DCGAN_BUILD_TIMES=$(abspath $(BUILD_TIMES)) $(MAKE) --no-print-directory $$layer $$(case " $(HARNESS_LAYERS) " in *" $$layer "*) echo PLAYBOOK=configure.yaml;; esac) || exit $$?; \
		echo "$$layer $$(( $$(date +%s) - started ))" >> $(LAYER_TIMES); \
	done
	@echo "make test: every layer passed; time per layer:"
	@awk '{ total += $$2; printf "  %-12s %3d min %02d s\n", $$1, $$2 / 60, $$2 % 60 } END { printf "  %-12s %3d min %02d s\n", "total", total / 60, total % 60 }' $(LAYER_TIMES)
	@if [ -s $(BUILD_TIMES) ]; then echo "built on this machine during the run (a warm machine builds none):"; \
		awk '{ s = $$1; $$1 = ""; printf "  %3d min %02d s %s\n", s / 60, s % 60, $$0 }' $(BUILD_TIMES); fi

clean:
	rm -rf $(VENV) $(COMPAT_VENV) .tox .pytest_cache
