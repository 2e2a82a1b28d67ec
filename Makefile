# Each target is a thin wrapper over a script in scripts/ that a person can read.
.PHONY: test bench lint

test:
	scripts/test

bench:
	scripts/bench

lint:
	scripts/lint
