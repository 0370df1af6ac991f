# egress-router: `make demo` and `make test` do all the set-up on a fresh machine.
.PHONY: deps build test test-unit demo bench clean

deps:
	@scripts/install-deps.sh test

build: deps
	npx tsc -p tsconfig.json
	npx tsc -p tsconfig.lab.json

# Unit tests need no root; end-to-end tests build namespaced labs (root).
test: build
	npx vitest run

test-unit: build
	npx vitest run test/unit

demo: build
	node build/test/lab/demo.js

bench: build
	@scripts/install-deps.sh bench
	bash bench/run.sh

clean:
	rm -rf dist build
