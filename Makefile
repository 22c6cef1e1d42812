# applyguard: the two commands a fresh machine needs are `make run` and `make test`.

CARGO ?= cargo
LISTEN ?= 127.0.0.1:8443

.PHONY: build run test e2e envtest-assets certs fmt lint clean fuzz bench

build:
	$(CARGO) build --release --locked

# Dev certificates (rcgen, in certs-dev/) and HTTPS on 127.0.0.1:8443 with the example policy.
# The allocator settings of deploy/Dockerfile (see docs/benchmarks.md).
run:
	MIMALLOC_ARENA_EAGER_COMMIT=0 MIMALLOC_PURGE_DELAY=0 $(CARGO) run --release --locked -- serve --dev --listen $(LISTEN) --config examples/policy.yaml --inventory examples/inventory

# Formatting, lints and every test: unit and integration (real HTTPS, real TLS clients), and the
# end-to-end suite against a real etcd + kube-apiserver (tests/e2e; binaries from
# KUBEBUILDER_ASSETS or scripts/envtest-assets.sh, which builds kube-apiserver once, ~5 min).
test:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --locked --all-targets -- -D warnings
	$(CARGO) test --locked --all-targets

# Only the end-to-end suite (also part of `make test`); E2E=NAME runs the scenarios matching NAME.
E2E ?=
e2e:
	$(CARGO) test --locked --test e2e -- $(E2E)

# etcd and kube-apiserver for the e2e suite, into ~/.cache/applyguard/envtest/ (prints the folder).
envtest-assets:
	scripts/envtest-assets.sh

certs:
	$(CARGO) run --release --locked -- certs --out certs-dev

fmt:
	$(CARGO) fmt --all

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --locked --all-targets -- -D warnings

clean:
	$(CARGO) clean

# --- Install: deploy/, the container image and the kind suite ----------------------------------
# Paths are from the repository root.
#
#   make image            the container image (deploy/Dockerfile); needs Docker
#   make deploy-certs     serving certificate for deploy/overlays/self-signed (and warn), written
#                         to deploy/overlays/self-signed/generated/ (git-ignored)
#   make render-deploy    every deploy/overlays/* rendered to $(RENDER_DIR)/<overlay>.yaml, with
#                         throwaway certificates (for `applyguard scan`, one file at a time)
#   make validate-deploy  render + Kubernetes schema validation (kubernetes-validate, installed
#                         into target/tools/ from PyPI) + applyguard reviews its own manifests and
#                         the kind matrix offline; needs kubectl (or kustomize) and python3
#   make kind-test        the kind suite (tests/kind/run.sh); needs docker, kind, kubectl
#   make shellcheck       every shell script

IMAGE ?= ghcr.io/applyguard/applyguard:$(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
RENDER_DIR ?= target/deploy-rendered

.PHONY: image deploy-certs render-deploy validate-deploy kind-test shellcheck

image:
	docker build -f deploy/Dockerfile -t $(IMAGE) .

deploy-certs:
	scripts/deploy-certs.sh

render-deploy:
	scripts/render-deploy.sh --out $(RENDER_DIR)

# APPLYGUARD: the binary the reviews run; the debug build `make test` already made is enough.
validate-deploy:
	$(CARGO) build --locked
	APPLYGUARD=target/debug/applyguard scripts/validate-deploy.sh

kind-test:
	tests/kind/run.sh

shellcheck:
	shellcheck scripts/*.sh tests/kind/*.sh

# --- Fuzzing ------------------------------------------------------------------------------------
# Every cargo-fuzz target in fuzz/ for FUZZ_SECONDS each (seed corpora from tests/fixtures),
# report in target/fuzz-report.md. Installs cargo-fuzz into target/tools when missing; runs on
# the stable toolchain (scripts/fuzz.sh sets RUSTC_BOOTSTRAP=1 for libFuzzer's flags).
# One target: `make fuzz FUZZ_TARGETS=kafka_parsers`.
FUZZ_SECONDS ?= 60
FUZZ_TARGETS ?=

fuzz:
	FUZZ_SECONDS=$(FUZZ_SECONDS) scripts/fuzz.sh $(FUZZ_TARGETS)

# --- Benchmarks ---------------------------------------------------------------------------------
# Benchmarks, not part of `make test`: engine micro-benchmarks (criterion), HTTPS load of
# `applyguard serve` against a do-nothing baseline webhook (oha), serve's memory with 10k Secrets
# + 10k ConfigMaps, and `applyguard scan` over 10k manifests. Report: target/bench/report.md.
# Installs oha into target/tools (cargo install --locked) and hyperfine (apt) when missing.
bench:
	CARGO="$(CARGO)" scripts/bench.sh
