# redisrepl: make build | deps | demo | test | bench | deb | fmt | clean
#
# deps installs what the tests run (redis-server, webdis, nginx-light,
# prometheus, chromium, lintian, redis-sentinel, haproxy, and valkey-server
# from bookworm-backports)
# with apt-get (Debian, run as root) when any is missing; Go itself must
# already be there.
# test runs every test against real redis-server, webdis and nginx (and the
# link's again with the gateway as the hub); with
# CI=true in the environment a missing program fails the tests instead of
# skipping them.

SHELL := /bin/bash
GO    ?= go
BIN   := bin/redisrepl
VERSION := $(shell git describe --always --dirty 2>/dev/null || echo dev)
GOMIN := $(shell sed -n 's/^go //p' go.mod 2>/dev/null)
DEMO_ARGS ?=
BENCH_ARGS ?=

# CI=true is passed on to the tests only if the caller set it.
ifeq ($(CI),true)
export CI
endif

# deb: the Debian package bin/redisrepl_$(DEB_VERSION)_$(DEB_ARCH).deb, built by
# nfpm (examples/deb/nfpm.yaml), run as a pinned tool with "go run", so that
# none of its dependencies enter go.mod. The version is git describe's, made
# Debian-valid: tag v1.2.3 -> 1.2.3, 5 commits later -> 1.2.3+5.gHASH; with
# no tag 0.0~gitN.gHASH (N commits); uncommitted changes add +dirty.
NFPM        := github.com/goreleaser/nfpm/v2/cmd/nfpm@v2.48.0
# staticcheck, pinned and run with "go run" like nfpm (make test's lint step).
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2
# make bench appends each run's figures, with its commit and load, here.
BENCH_LOG   := docs/BENCHMARKS.md
DEB_VERSION ?= $(shell d=$$(git describe --tags --long --match 'v[0-9]*' --dirty=+dirty 2>/dev/null) && \
  echo "$$d" | sed -E 's/^v//; s/-0-g[0-9a-f]+//; s/-([0-9]+)-g([0-9a-f]+)/+\1.g\2/' || \
  echo "0.0~git$$(git rev-list --count HEAD 2>/dev/null || echo 0).g$$(git rev-parse --short HEAD 2>/dev/null || echo 0)$$(git diff --quiet HEAD 2>/dev/null || echo +dirty)")
DEB_ARCH    ?= $(shell $(GO) env GOARCH 2>/dev/null | sed 's/^386$$/i386/; s/^arm$$/armhf/')
DEB_DIR     ?= bin

.PHONY: all build deps check-go demo test bench deb fmt clean

all: build

check-go:
	@command -v $(GO) >/dev/null 2>&1 || { \
	  echo "Go is not installed (or not in PATH): install Go $(GOMIN) or newer (https://go.dev/doc/install);" >&2; \
	  echo "'make deps' installs redis-server, webdis and nginx but not Go." >&2; \
	  exit 1; }

build: check-go
	$(GO) build -ldflags "-X main.version=$(VERSION)" -o $(BIN) ./cmd/redisrepl

# deps: which programs the tests run are missing, and installs their Debian
# packages (DEPS: program:package; DEPS_BACKPORTS from bookworm-backports on
# bookworm, whose sources file is added when no apt source names that suite;
# from the release itself on later ones). nginx lives in /usr/sbin, which a
# non-login PATH may lack. Installing them may start their services: only
# those whose processes appeared during the install are stopped, best-effort
# ("service X stop"; for webdis, whose package may have no init script, also
# a kill of the new webdis pids whose parent is init). Processes are found
# through /proc, as a fresh machine may lack procps.
DEPS           := redis-server:redis-server redis-cli:redis-tools webdis:webdis nginx:nginx-light \
                  prometheus:prometheus promtool:prometheus chromium:chromium lintian:lintian \
                  redis-sentinel:redis-sentinel haproxy:haproxy
DEPS_BACKPORTS := valkey-server:valkey-server
# The daemons those packages may start: process name (as in /proc/PID/comm,
# 15 characters at most) and service name.
DEPS_DAEMONS   := redis-server:redis-server nginx:nginx webdis:webdis valkey-server:valkey-server \
                  prometheus:prometheus prometheus-node:prometheus-node-exporter \
                  redis-sentinel:redis-sentinel haproxy:haproxy
have = command -v $(1) >/dev/null 2>&1 || test -x /usr/sbin/$(1) || test -x /usr/bin/$(1)

deps:
	@missing=""; missing_bpo=""; \
	for d in $(DEPS); do $(call have,$${d%%:*}) || case " $$missing " in *" $${d#*:} "*) ;; *) missing="$$missing $${d#*:}";; esac; done; \
	for d in $(DEPS_BACKPORTS); do $(call have,$${d%%:*}) || missing_bpo="$$missing_bpo $${d#*:}"; done; \
	if [ -n "$$missing$$missing_bpo" ]; then \
	  echo "deps: missing packages:$$missing$$missing_bpo; installing them with apt-get"; \
	  if ! command -v apt-get >/dev/null 2>&1; then \
	    echo "deps: no apt-get here: install$$missing$$missing_bpo yourself" >&2; exit 1; fi; \
	  sudo=""; if [ "$$(id -u)" != 0 ]; then \
	    if command -v sudo >/dev/null 2>&1; then sudo="sudo"; else echo "deps: apt-get needs root: run as root" >&2; exit 1; fi; fi; \
	  codename=$$(. /etc/os-release 2>/dev/null && echo "$$VERSION_CODENAME"); \
	  if [ -n "$$missing_bpo" ] && [ "$$codename" = bookworm ] && \
	     ! grep -rqs 'bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/; then \
	    echo "deps: adding bookworm-backports (for$$missing_bpo) in /etc/apt/sources.list.d/bookworm-backports.sources"; \
	    printf 'Types: deb\nURIs: http://deb.debian.org/debian\nSuites: bookworm-backports\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' | \
	      $$sudo tee /etc/apt/sources.list.d/bookworm-backports.sources >/dev/null || exit 1; fi; \
	  pids() { for d in /proc/[0-9]*; do [ "$$(cat $$d/comm 2>/dev/null)" = "$$1" ] && echo "$${d#/proc/}"; done; true; }; \
	  newpids() { for p in $$(pids "$$1"); do case " $$2 " in *" $$p "*) ;; *) echo "$$p";; esac; done; }; \
	  before=""; for d in $(DEPS_DAEMONS); do before="$$before $${d%%:*}=$$(pids $${d%%:*} | tr '\n' ,)"; done; \
	  $$sudo apt-get update || exit 1; \
	  if [ -n "$$missing" ]; then DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y $$missing || exit 1; fi; \
	  if [ -n "$$missing_bpo" ]; then \
	    t=""; [ "$$codename" = bookworm ] && t="-t bookworm-backports"; \
	    DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y $$t $$missing_bpo || exit 1; fi; \
	  for d in $(DEPS_DAEMONS); do \
	    comm=$${d%%:*}; svc=$${d#*:}; old=$$(for b in $$before; do [ "$${b%%=*}" = "$$comm" ] && echo "$${b#*=}" | tr , ' '; done); \
	    new=$$(newpids "$$comm" "$$old"); [ -n "$$new" ] || continue; \
	    echo "deps: stopping the $$svc service the install started"; \
	    $$sudo service "$$svc" stop >/dev/null 2>&1 || true; \
	    if [ "$$comm" = webdis ]; then sleep 0.5; \
	      for p in $$(newpids webdis "$$old"); do \
	        if [ "$$(sed -n 's/^PPid:[[:space:]]*//p' /proc/$$p/status 2>/dev/null)" = 1 ]; then $$sudo kill "$$p" 2>/dev/null || true; fi; \
	      done; fi; \
	  done; \
	  for d in $(DEPS) $(DEPS_BACKPORTS); do \
	    $(call have,$${d%%:*}) || { echo "deps: $${d%%:*} is still missing after apt-get install" >&2; exit 1; }; \
	  done; \
	fi; \
	echo "deps: installed: $(foreach d,$(DEPS) $(DEPS_BACKPORTS),$(firstword $(subst :, ,$(d))))"; \
	command -v $(GO) >/dev/null 2>&1 || { \
	  echo "deps: Go is not installed (or not in PATH). 'make deps' does not install it:" >&2; \
	  echo "deps: install Go $(GOMIN) or newer (https://go.dev/doc/install) and put it in PATH." >&2; \
	  exit 1; }

# The demo is built, then run, rather than "go run": go run exits 1 on
# Ctrl-C even when the program it ran cleaned up and exited 0.
demo: deps build
	$(GO) build -o bin/demo ./examples/demo
	./bin/demo -bin $(BIN) $(DEMO_ARGS)

# The link's and the store's tests run twice: against nginx+Webdis, then
# against the gateway as the hub (WEBDISTEST_FRONT=gateway), since a link
# must work with both hubs. Then on Valkey (WEBDISTEST_REDIS, as the local
# and the hub Redis): the store's conformance suite, the gateway's and the
# harness's tests, and VALKEY_LINK_TESTS (every type, deletes, TTLs, both
# ways, resync, restarts, lapses, plain commands, local TLS) behind both hubs.
# DEB_TEST installs the package: it runs alone, as other packages' tests may
# use /var/lib/redisrepl, which its purge removes. CLUSTER_TESTS start Redis
# Clusters (a cluster hub behind the gateway): they do not depend on the
# front, and run once, on their own line.
DEB_TEST := TestDebInstallUpgradeRemovePurge
CLUSTER_TESTS := TestCluster
VALKEY_LINK_TESTS := TestPushEveryType|TestPushDeletes|TestPushTTL$$|TestPushStreamKeepsRemoteGroups|TestBothRemoteChangesReachLocal|TestBothNoLoop|TestResyncCopiesOnlyDifferences|TestConvergeAfterLocalRestart|TestNotificationsResetNoticed|TestPlainLinkReplicates|TestLocalTLSReplicates|TestLocalResetPush
test: deps
	$(GO) vet ./...
	$(GO) run $(STATICCHECK) ./...
	$(GO) test -count=1 -timeout 15m -skip '^($(DEB_TEST)$$|$(CLUSTER_TESTS))' ./...
	$(GO) test -count=1 -timeout 5m -run '^$(DEB_TEST)$$' ./examples/
	$(GO) test -count=1 -timeout 10m -run '^$(CLUSTER_TESTS)' ./link/store/ ./webdis/gateway/
	WEBDISTEST_FRONT=gateway $(GO) test -count=1 -timeout 15m -skip '^$(CLUSTER_TESTS)' ./link/...
	WEBDISTEST_REDIS=valkey-server $(GO) test -count=1 -timeout 10m -skip '^$(CLUSTER_TESTS)' ./link/store/ ./webdis/gateway/ ./webdis/webdistest/
	WEBDISTEST_REDIS=valkey-server WEBDISTEST_FRONT=gateway $(GO) test -count=1 -timeout 10m -skip '^$(CLUSTER_TESTS)' ./link/store/
	WEBDISTEST_REDIS=valkey-server $(GO) test -count=1 -timeout 10m -run '^($(VALKEY_LINK_TESTS))' ./link/
	WEBDISTEST_REDIS=valkey-server WEBDISTEST_FRONT=gateway $(GO) test -count=1 -timeout 10m -run '^($(VALKEY_LINK_TESTS))' ./link/

bench: deps build
	@if [ -d cmd/redisrepl-bench ]; then \
	  echo "$(GO) run ./cmd/redisrepl-bench $(BENCH_ARGS)"; \
	  mkdir -p bin && $(GO) run ./cmd/redisrepl-bench $(BENCH_ARGS) | tee bin/bench.out; \
	  rc=$${PIPESTATUS[0]}; [ $$rc -eq 0 ] || exit $$rc; \
	  { echo; echo "## Commit $(VERSION), $$(date -u '+%Y-%m-%d %H:%M UTC')$(if $(BENCH_ARGS), ($(BENCH_ARGS)))"; echo; \
	    echo "Load average at the end of the run: $$(cut -d' ' -f1-3 /proc/loadavg)."; echo; \
	    echo '```'; cat bin/bench.out; echo '```'; } >> $(BENCH_LOG); \
	  echo "bench: figures appended to $(BENCH_LOG)"; \
	else \
	  echo "bench: the benchmark harness (cmd/redisrepl-bench) is not there yet" >&2; \
	  exit 1; \
	fi

# The packaged units are examples/*.service (one place for their sandbox)
# with the binary in /usr/bin and their manual-install header left out.
deb: check-go
	@case "$(DEB_VERSION)" in [0-9]*) ;; *) echo "deb: version '$(DEB_VERSION)' must start with a digit" >&2; exit 1;; esac
	rm -rf bin/deb-build && mkdir -p bin/deb-build "$(DEB_DIR)"
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "-s -w -X main.version=$(DEB_VERSION)" -o bin/deb-build/redisrepl ./cmd/redisrepl
	for u in redisrepl redisrepl-gateway; do \
	  { echo "# $$u.service, installed by the redisrepl package; change it with: systemctl edit $$u"; echo; \
	    sed -e '1,/^$$/d' -e 's#/usr/local/bin/redisrepl#/usr/bin/redisrepl#g' examples/$$u.service; } > bin/deb-build/$$u.service || exit 1; \
	done
	{ echo "redisrepl ($(DEB_VERSION)) unstable; urgency=medium"; echo; \
	  echo "  * Built by make deb from git commit $$(git rev-parse --short HEAD 2>/dev/null || echo unknown)."; echo; \
	  echo " -- redisrepl developers <redisrepl@users.noreply.github.com>  $$(date -R -d @$$(git log -1 --format=%ct 2>/dev/null || date +%s))"; } \
	  | gzip -9n > bin/deb-build/changelog.gz
	{ echo '.TH REDISREPL 1 "" "redisrepl $(DEB_VERSION)" "User Commands"'; echo '.SH NAME'; \
	  echo 'redisrepl \- replicate Redis namespaces over HTTPS with mutual TLS; serve the hub'; \
	  echo '.SH DESCRIPTION'; echo '.nf'; \
	  bin/deb-build/redisrepl -h 2>&1 | sed -e 's/\\/\\e/g' -e "s/^[.']/\\\\\&&/"; \
	  echo '.fi'; echo '.SH FILES'; echo '/etc/redisrepl.toml, /etc/redisrepl-gateway.toml, /var/lib/redisrepl'; \
	  echo '.SH SEE ALSO'; echo '/usr/share/doc/redisrepl, https://github.com/redisrepl/redisrepl'; } \
	  | gzip -9n > bin/deb-build/redisrepl.1.gz
	DEB_VERSION='$(DEB_VERSION)' DEB_ARCH='$(DEB_ARCH)' \
	  $(GO) run $(NFPM) package --config examples/deb/nfpm.yaml --packager deb \
	  --target '$(DEB_DIR)/redisrepl_$(DEB_VERSION)_$(DEB_ARCH).deb'
	rm -rf bin/deb-build

fmt: check-go
	@files=$$(find . -name '*.go' -not -path './.git/*' -not -path '*/testdata/*' -print0 | xargs -0 -r "$$($(GO) env GOROOT)/bin/gofmt" -l) || exit 1; \
	if [ -n "$$files" ]; then echo "gofmt: these files need formatting (gofmt -w):"; echo "$$files"; exit 1; fi; \
	echo "fmt: ok"

clean:
	rm -rf bin
