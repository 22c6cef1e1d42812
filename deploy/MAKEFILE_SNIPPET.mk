# --- Install: deploy/, the container image and the kind suite ----------------------------------
# To be merged into the Makefile (and its .PHONY line). Paths are from the repository root.
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

# Once `applyguard scan` exists (issue 5), `make test` can prove applyguard obeys its own rules:
#	APPLYGUARD=target/debug/applyguard scripts/render-deploy.sh --out $(RENDER_DIR)
#	for f in $(RENDER_DIR)/*.yaml; do target/debug/applyguard scan "$$f" || exit 1; done
# (one overlay per scan: each file is a whole install, and overlays must not lend each other
# the Secret applyguard-tls). render-deploy needs kubectl or kustomize; kubectl is on the
# project's machines.
