# Two commands set everything up on a fresh clone: `make serve` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
REPO ?= model_repository
PORT ?= 50051
METRICS_PORT ?= 9090

.PHONY: install export serve test lint protos check clean soak

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[train,dev]'
	touch $(STAMP)

install: $(STAMP)

$(REPO)/stylegate.json: $(STAMP) $(wildcard checkpoints/*.pt)
	$(BIN)/stylegate export --out $(REPO)

export: $(REPO)/stylegate.json

serve: export
	$(BIN)/stylegate serve --port $(PORT) --metrics-port $(METRICS_PORT) --model-repository $(REPO)

# What CI runs (.ci/run): lint, fresh protos, then the whole suite.
test: check
	bash scripts/install-system-deps.sh
	$(BIN)/python -m pytest -q -ra

check: lint
	$(BIN)/python scripts/gen_protos.py --check

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

protos: install
	$(BIN)/python scripts/gen_protos.py

# A bounded soak of a gateway process: RSS, open FDs and errors at start and end.
SECONDS ?= 60
soak: install
	$(BIN)/python -m bench.soak --seconds $(SECONDS)

clean:
	rm -rf $(VENV) $(REPO)/*/ $(REPO)/stylegate.json
