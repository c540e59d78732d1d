# kubestorage.enablement: the two commands of the README are `make demo` and `make test`.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c

VENV        ?= $(CURDIR)/.venv
BIN         := $(VENV)/bin
COLLECTIONS := $(CURDIR)/.cache/collections
LABCTL      := $(CURDIR)/lab/labctl
DEMO_CLUSTER ?= demo
DEMO_NODES  ?= cp1:control-plane:1.33 w1:worker:1.25 w2:worker:1.10
DEMO_INVENTORY := $(CURDIR)/lab/.state/$(DEMO_CLUSTER)/inventory.json

export PATH := $(BIN):$(PATH)
export ANSIBLE_COLLECTIONS_PATH := $(COLLECTIONS)
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: demo test setup host-deps venv collection unit sanity lint molecule lab-image \
        lab-down build changelog clean reliability bench

## make demo: set up, start a lab (1 control plane, 2 workers), run playbooks/site.yml and playbooks/audit.yml
demo: setup lab-image
	$(LABCTL) --cluster $(DEMO_CLUSTER) up $(DEMO_NODES) >/dev/null
	ansible-playbook -i $(DEMO_INVENTORY) -e @lab/demo-vars.yml playbooks/site.yml
	ansible-playbook -i $(DEMO_INVENTORY) -e @lab/demo-vars.yml playbooks/audit.yml
	@echo
	@echo "CSI driver rendered to: lab/.state/$(DEMO_CLUSTER)/csi/ (kustomization.yaml per driver)"
	@echo "Storage audit report:   lab/.state/$(DEMO_CLUSTER)/audit/storage-audit.md (and .json)"
	@echo
	@echo "Lab nodes (remove them with: make lab-down):"
	@$(LABCTL) --cluster $(DEMO_CLUSTER) status

## make test: unit tests, ansible-test sanity, ansible-lint (production), the reliability suite, every molecule scenario
TEST_STAGES := unit sanity lint build reliability molecule

test: setup
	@for stage in $(TEST_STAGES); do \
	  start=$$(date +%s); \
	  $(MAKE) --no-print-directory $$stage || { echo "make test: stage $$stage FAILED"; exit 1; }; \
	  echo "make test: stage $$stage passed in $$(( $$(date +%s) - start )) s"; \
	done
	@echo "make test: all stages passed ($(TEST_STAGES))"

setup: host-deps venv collection

host-deps:
	@scripts/setup-host.sh

venv: $(VENV)/.installed

$(VENV)/.installed: test-requirements.txt requirements.txt
	@test -x $(BIN)/python || "$$(scripts/find-python.sh)" -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r test-requirements.txt
	@touch $@

# The checkout itself is the collection: expose it as ansible_collections/kubestorage/enablement.
collection:
	@mkdir -p $(COLLECTIONS)/ansible_collections/kubestorage
	@ln -sfn $(CURDIR) $(COLLECTIONS)/ansible_collections/kubestorage/enablement

lab-image:
	$(LABCTL) image

lab-down:
	$(LABCTL) --cluster $(DEMO_CLUSTER) down

unit: setup
	PYTHONPATH=$(COLLECTIONS) $(BIN)/python -m pytest -q tests/unit tests/lab tests/api

# Bad inputs, SIGKILL crash safety, concurrent runs and restart safety on lab nodes (tests/reliability).
reliability: setup lab-image
	PYTHONPATH=$(COLLECTIONS) $(BIN)/python -m pytest -q -p no:cacheprovider tests/reliability

## make bench: the benchmarks of benchmarks/README.md (not part of make test)
bench: setup lab-image
	$(BIN)/python benchmarks/noop_rerun.py
	$(BIN)/python benchmarks/large_driver_noop.py
	PYTHONPATH=$(COLLECTIONS) $(BIN)/python benchmarks/csi_apply.py
	$(BIN)/python benchmarks/rolling_upgrade.py

sanity: setup
	scripts/ansible-test.sh sanity --color no

lint: setup
	ansible-lint --profile production

molecule: setup lab-image
	molecule test --all

build: setup
	scripts/check-build.sh

changelog: setup
	antsibull-changelog lint

clean:
	rm -rf .cache tests/output
