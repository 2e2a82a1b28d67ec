# Each target is a thin wrapper over a script in scripts/ that a person can read.
.PHONY: run test bench lint fuzz e2e cluster

run:
	scripts/run

test:
	scripts/test

bench:
	scripts/bench

lint:
	scripts/lint

fuzz:
	scripts/fuzz

e2e:
	scripts/e2e

cluster:
	scripts/cluster up
	@scripts/cluster env
