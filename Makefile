# ehc-twin: every target creates .venv on demand and installs the project into it.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
# make test's parallel part: pytest-xdist workers, each taking whole test files
TEST_WORKERS ?= 2

.PHONY: run test bench lint clean loadtest report fuzz docs

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	@# setuptools warns that a flat layout's folders could shadow the package: they are the
	@# package (an editable install of this checkout), so the warning is silenced
	PYTHONWARNINGS=ignore $(BIN)/python -m pip install -q -e '.[dev]'
	@touch $(STAMP)

## run: the main job: the card network end to end, then the hospital twin
run: $(STAMP)
	$(BIN)/ehc demo

## test: lint, type check and the whole test suite (statistical validation included)
test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy
	@# most tests on TEST_WORKERS workers; then, alone, those that measure load or kill
	@# servers under it and the fuzzer (schemathesis generates no cases under xdist)
	$(BIN)/python -m pytest -q --durations=15 -n $(TEST_WORKERS) --dist loadfile -m "not serial"
	$(BIN)/python -m pytest -q --durations=5 -m serial

## bench: benchmarks, each against a baseline measured in the same run
bench: $(STAMP)
	$(BIN)/python -m bench.bench_crypto
	$(BIN)/python -m bench.bench_verify
	$(BIN)/python -m bench.bench_calls
	$(BIN)/python -m bench.bench_scaleout
	$(BIN)/python -m bench.bench_sweep
	$(BIN)/python -m bench.bench_twin
	$(BIN)/python -m bench.bench_province
	$(BIN)/python -m bench.bench_rollout
	$(BIN)/python -m bench.bench_fusion
	$(BIN)/python -m bench.bench_settlement
	$(BIN)/python -m bench.bench_cosim
	$(BIN)/python -m bench.bench_data

## docs: the reference pages from the code, then the site (strict, offline) in results/site
docs: $(STAMP)
	$(BIN)/python docs/make_reference.py
	$(BIN)/mkdocs build --strict

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy

clean:
	rm -rf $(VENV) var results/*/ .pytest_cache

## loadtest: Locust against the verification hot path (step shape, a few minutes)
loadtest: $(STAMP)
	$(BIN)/ehc loadtest --shape step --users 40 --duration 90 --processes 1

## report: execute the analyst notebooks into HTML reports (results/reports/index.html)
report: $(STAMP)
	$(BIN)/ehc report

## fuzz: schema-driven fuzzing of every route with more examples than make test
fuzz: $(STAMP)
	EHC_FUZZ_EXAMPLES=300 $(BIN)/python -m pytest -q tests/http/test_fuzz.py
