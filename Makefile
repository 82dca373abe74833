# Every user-facing target does its own set-up on a fresh machine: it creates .venv, installs torch==2.13.0
# first (pinned: an open range would pull a multi-GB CUDA build), then this project with its dev extras.
PYTHON ?= python3
TORCH_INDEX ?=       # e.g. https://download.pytorch.org/whl/cpu where PyPI would serve the CUDA build
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
PROTOS := $(shell find psi vfl -name '*.proto' 2>/dev/null)

EXAMPLES := bank-credit hospitals psi-only

.PHONY: demo test fuzz bench proto clean help $(addprefix example-,$(EXAMPLES))

help:
	@echo "make demo   - three hospital nodes on loopback: PSI, encrypted training, evaluation"
	@echo "make test   - the whole test suite (with a short run of the fuzz targets)"
	@echo "make fuzz   - the fuzz targets at length: hypothesis (100x make test's examples), then atheris"
	@echo "make bench  - benchmarks against their named peers (last line of each is JSON)"
	@echo "make example-bank-credit | example-hospitals | example-psi-only - an example's run.sh (examples/)"

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0 $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

demo: $(STAMP)
	$(VENV)/bin/vfl demo

test: $(STAMP)
	$(PY) -m pyflakes $$(git ls-files '*.py' | grep -v '_pb2')
	$(VENV)/bin/lint-imports --no-cache
	$(PY) -m pytest -q

# Each example's one command, with this checkout's .venv (examples/<name>/run.sh finds it by itself too).
$(addprefix example-,$(EXAMPLES)): example-%: $(STAMP)
	PYTHON=$(abspath $(PY)) examples/$*/run.sh

# The fuzz targets of tests/fuzz at length: hypothesis with the "long" profile, then each atheris (libFuzzer) target
# for FUZZ_SECONDS. A crash input lands in .cache/fuzz/. Without an atheris wheel for this platform, hypothesis only.
# FUZZ_PROFILE, FUZZ_TESTS and FUZZ_TARGETS (atheris targets, default all) narrow a run.
FUZZ_SECONDS ?= 60
FUZZ_PROFILE ?= long
FUZZ_TESTS ?= tests/fuzz
FUZZ_TARGETS ?=
fuzz: $(STAMP)
	VFL_FUZZ_PROFILE=$(FUZZ_PROFILE) $(PY) -m pytest -q -p no:cacheprovider $(FUZZ_TESTS)
	@mkdir -p .cache/fuzz
	@if $(PY) -c "import atheris" 2>/dev/null; then \
	  for t in $(if $(FUZZ_TARGETS),$(FUZZ_TARGETS),$$($(PY) tests/fuzz/atheris_fuzz.py --list)); do \
	    echo "== atheris: $$t ($(FUZZ_SECONDS) s)"; \
	    $(PY) tests/fuzz/atheris_fuzz.py $$t -max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=2048 \
	      -artifact_prefix=.cache/fuzz/$$t- || exit 1; \
	  done; \
	else echo "atheris is not installed (no wheel for this platform): the hypothesis targets only"; fi

bench: $(STAMP)
	@mkdir -p bench-out
	@set -e; for b in he_bench psi_bench train_bench privacy_bench privacy_floor quality_bench defaults_bench governance_bench scale_bench pipeline_bench stream_memory_bench serve_bench job_memory_bench; do \
	  if [ -f benchmarks/$$b.py ]; then \
	    echo "== benchmarks/$$b.py"; \
	    $(PY) benchmarks/$$b.py | tee bench-out/$$b.log; \
	  fi; \
	done
	@echo "== benchmarks/psi_bench.py --parties 3 --size 100000"
	@$(PY) benchmarks/psi_bench.py --parties 3 --size 100000 | tee bench-out/psi_bench_3party.log

# Generated gRPC code is committed; run this after editing a .proto file.
proto: $(STAMP)
	@for p in $(PROTOS); do \
	  $(PY) -m grpc_tools.protoc -I . --python_out=. --grpc_python_out=. --pyi_out=. $$p; \
	done

clean:
	rm -rf $(VENV) .cache build dist *.egg-info
