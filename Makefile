# make quickstart: set up .venv from nothing (idempotent) and run the main job.
# make test:       set up if needed, then run the whole test suite.
PY := .venv/bin/python
export HF_HUB_OFFLINE := 1

.PHONY: setup quickstart test test-fast test-long lint

setup:
	@bash launch/scripts/setup.sh

quickstart: setup
	.venv/bin/rlhf-ray train configs/quickstart.yaml --resume

test: setup
	$(PY) -m pytest -q

test-fast: setup
	$(PY) -m pytest -q -m "not slow and not long"

test-long: setup
	$(PY) -m pytest -q -m long

lint: setup
	.venv/bin/ruff check rlhf_ray actors launch tests
