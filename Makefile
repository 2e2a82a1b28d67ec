# Each target is a thin wrapper over a script in scripts/ that a person can read.
.PHONY: run test bench lint

run:
	scripts/run

test:
	scripts/test

bench:
	scripts/bench

lint:
	scripts/lint
