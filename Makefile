# Quick start: `make demo` grades the bundled examples, `make test` runs the suite.
.PHONY: setup test-tools demo test bench clean

setup:
	@bash scripts/setup.sh

demo: setup
	@bash scripts/demo.sh

test-tools:
	@bash scripts/test-tools.sh

test: setup test-tools
	.venv/bin/python -m pytest -q

bench: setup
	.venv/bin/python benchmarks/run.py

clean:
	rm -rf .venv build *.egg-info
