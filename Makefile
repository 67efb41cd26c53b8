# Quick start: `make demo` grades the bundled examples, `make test` runs the suite.
.PHONY: setup demo test bench clean

setup:
	@bash scripts/setup.sh

demo: setup
	@bash scripts/demo.sh

test: setup
	.venv/bin/python -m pytest -q

bench: setup
	.venv/bin/python benchmarks/run.py

clean:
	rm -rf .venv build *.egg-info
