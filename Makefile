# commap: every target bootstraps what it needs (uv, the locked virtualenv, stubs, npm packages).
SHELL := /bin/bash
PYTHON ?= python3.11
UV := .uv/bin/uv
PY := .venv/bin/python
export UV_PYTHON_DOWNLOADS := never
export UV_PROJECT_ENVIRONMENT := .venv
# Install with bytecode: without it (and with PYTHONDONTWRITEBYTECODE set, as in CI) every
# command compiles its ~1,400 imported modules again, seconds before it does anything.
export UV_COMPILE_BYTECODE := 1
MAP_SPECS := $(wildcard maps/*/map.toml)
BUILT_MAPS := $(MAP_SPECS:%/map.toml=%/built/manifest.json)
# The library code a built map depends on: a change to it rebuilds the maps.
MAP_CODE := $(wildcard commap/*.py commap/geo/*.py commap/radio/*.py commap/radio/layers/*.py commap/map/*.py commap/plan/*.py)

.PHONY: setup run test lint bench proto map clean

$(UV):
	$(PYTHON) -m venv .uv
	.uv/bin/pip install --quiet --disable-pip-version-check uv==0.13.8

.venv/.synced: pyproject.toml uv.lock | $(UV)
	$(UV) sync --frozen --python $(PYTHON) --quiet
	touch $@

# gRPC stubs: generated from protos/ (never committed; commap/v1/ is git-ignored).
PROTOS := $(wildcard protos/commap/v1/*.proto)
STUBS := commap/v1/commap_service_pb2.py

$(STUBS): $(PROTOS) server/protogen.py | .venv/.synced
	$(PY) -m server.protogen

proto: .venv/.synced
	$(PY) -m server.protogen

# Bytecode of the installed packages: uv writes it as it installs them; this covers a
# virtualenv synced without it (compileall skips whatever is up to date).
.venv/.bytecode: .venv/.synced
	$(PY) -m compileall -q .venv/lib
	touch $@

# Bytecode of our own packages, refreshed when they change: compileall rewrites only what is
# out of date.
PY_SOURCES := $(shell find commap server -name '*.py' -not -path 'commap/v1/*')

.venv/.compiled: $(PY_SOURCES) $(STUBS) | .venv/.synced
	$(PY) -m compileall -q commap server
	touch $@

# npm packages (Node test rig, buf) from the committed lock.
node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

setup: .venv/.synced .venv/.bytecode $(STUBS) .venv/.compiled node_modules/.installed

# Maps (the default one is maps/andorra): built from the committed spec and source data,
# rebuilt when they or the library change.
.SECONDEXPANSION:
maps/%/built/manifest.json: maps/%/map.toml $$(wildcard maps/%/data/*) $(MAP_CODE) | .venv/.synced
	$(PY) -m commap.cli build-map $< --out $(@D)

map: setup $(BUILT_MAPS)

run: map
	@echo "commap gRPC server on 127.0.0.1:50051 (Ctrl-C stops it); it prints how to query it once ready"
	$(PY) -m server --host 127.0.0.1 --port 50051

test: map
	$(PY) -m pytest

lint: setup
	$(PY) -m ruff check commap server tests bench
	$(PY) -m ruff format --check commap server tests bench
	$(PY) -m mypy
	.venv/bin/lint-imports --no-cache
	npx --no-install buf lint protos

bench: map
	$(PY) -m bench --out bench/results

clean:
	rm -rf .venv .uv node_modules commap/v1 maps/*/built
