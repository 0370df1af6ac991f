# egress-router: `make demo` and `make test` do all the set-up on a fresh machine.
.PHONY: deps build test test-unit demo bench clean install

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

# Bare-metal install: the program under $(PREFIX)/lib/egress-router (runtime
# dependencies only), the command on $(PREFIX)/bin, the systemd unit and the
# sysctl.d file. DESTDIR stages it elsewhere (packaging, tests).
PREFIX ?= /usr/local
DESTDIR ?=
LIBDIR = $(PREFIX)/lib/egress-router
UNITDIR ?= $(PREFIX)/lib/systemd/system
SYSCTLDIR ?= $(PREFIX)/lib/sysctl.d
install:
	npx tsc -p tsconfig.json
	install -d $(DESTDIR)$(LIBDIR) $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(UNITDIR) $(DESTDIR)$(SYSCTLDIR) $(DESTDIR)/etc/egress-router
	cp -r bin dist native package.json package-lock.json .npmrc $(DESTDIR)$(LIBDIR)/
	cp -r node_modules $(DESTDIR)$(LIBDIR)/
	cd $(DESTDIR)$(LIBDIR) && npm prune --omit=dev --no-audit --no-fund >/dev/null
	ln -sfn ../lib/egress-router/bin/egress-router $(DESTDIR)$(PREFIX)/bin/egress-router
	for u in systemd/*.service; do sed 's|/usr/local/bin/egress-router|$(PREFIX)/bin/egress-router|g' $$u > $(DESTDIR)$(UNITDIR)/$$(basename $$u); done
	install -m 0644 systemd/60-egress-router.conf $(DESTDIR)$(SYSCTLDIR)/60-egress-router.conf
	@echo "installed; then: put /etc/egress-router/NAME.env in place and systemctl daemon-reload && systemctl enable --now egress-router@NAME"
