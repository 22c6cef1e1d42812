#!/usr/bin/env bash
# Checks everything deploy/ and the kind suite apply, without a cluster:
#   1. renders every deploy/overlays/* and tests/kind/overlay* (scripts/render-deploy.sh);
#   2. validates the rendered objects and tests/kind/manifests/ against the Kubernetes JSON
#      schemas with kubernetes-validate (strict: unknown fields fail), for each version in
#      KUBE_VERSIONS; the only kinds allowed to have no schema are the CRD kinds below;
#   3. reviews every rendered object with `applyguard review` (applyguard admits itself), and the
#      kind suite's matrix offline (scripts/admission_selfcheck.py).
#
#   scripts/validate-deploy.sh [--no-review]
#
# Environment:
#   KUBE_VERSIONS   Kubernetes versions to validate against (default "1.30.0 1.33.0 1.37.0")
#   APPLYGUARD      command that runs applyguard (default "cargo run --quiet --locked --");
#                   also makes the throwaway certificates instead of openssl
#   VALIDATE_VENV   virtualenv for kubernetes-validate (default target/tools/validate-venv),
#                   created and installed from PyPI on first use
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
kube_versions=${KUBE_VERSIONS:-1.30.0 1.33.0 1.37.0}
venv=${VALIDATE_VENV:-$root/target/tools/validate-venv}
kv_version=1.37.0
review=1
# CRD kinds with no schema in kubernetes-validate: cert-manager's (deploy/overlays/cert-manager)
# and the ExternalSecret, SecretStore and Argo Rollout the kind suite creates.
no_schema_ok='cert-manager.io/v1 Certificate|cert-manager.io/v1 Issuer|external-secrets.io/v1 ExternalSecret|external-secrets.io/v1 SecretStore|argoproj.io/v1alpha1 Rollout'

case "${1:-}" in
"") ;;
--no-review) review=0 ;;
-h | --help)
	awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "${BASH_SOURCE[0]}"
	exit 0
	;;
*)
	echo "validate-deploy: unknown argument: $1" >&2
	exit 2
	;;
esac

if [[ ! -x "$venv/bin/kubernetes-validate" ]]; then
	echo "validate-deploy: installing kubernetes-validate==$kv_version into $venv"
	python3 -m venv "$venv"
	"$venv/bin/python" -m pip install --quiet --disable-pip-version-check "kubernetes-validate==$kv_version"
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

"$root/scripts/render-deploy.sh" --out "$tmp/deploy"
"$root/scripts/render-deploy.sh" --out "$tmp/kind" tests/kind/overlay tests/kind/overlay-warn

files=("$tmp"/deploy/*.yaml "$tmp"/kind/*.yaml)
while IFS= read -r -d '' f; do files+=("$f"); done < <(find "$root/tests/kind/manifests" -name '*.yaml' -print0 | sort -z)

status=0
for version in $kube_versions; do
	echo "validate-deploy: kubernetes-validate --strict -k $version (${#files[@]} files)"
	if ! "$venv/bin/kubernetes-validate" --strict --quiet -k "$version" "${files[@]}" >"$tmp/kv.log" 2>&1; then
		status=1
	fi
	# Print all but the expected "no schema" warnings for the CRD kinds listed above.
	sed "s|$tmp/||; s|$root/||" "$tmp/kv.log" |
		grep -vE "Couldn't find schema for kind (Certificate|Issuer) with api version cert-manager.io/v1 |Couldn't find schema for kind (ExternalSecret|SecretStore) with api version external-secrets.io/v1 |Couldn't find schema for kind Rollout with api version argoproj.io/v1alpha1 " || true
	# A missing schema is a warning to kubernetes-validate; here only the listed CRD kinds may lack one.
	if grep "Couldn't find schema" "$tmp/kv.log" |
		sed -E 's/.*kind ([^ ]+) with api version ([^ ]+) .*/\2 \1/' | sort -u |
		grep -vxE "$no_schema_ok" >"$tmp/unexpected"; then
		echo "validate-deploy: no schema for (not a known CRD kind):" >&2
		cat "$tmp/unexpected" >&2
		status=1
	fi
	if grep -q '^ERROR' "$tmp/kv.log"; then
		status=1
	fi
done
if ((status == 0)); then
	echo "validate-deploy: every object valid (CRD kinds without a schema: ${no_schema_ok//|/, })"
fi

if ((review)); then
	echo "validate-deploy: applyguard review of every rendered object (applyguard admits itself)"
	APPLYGUARD=${APPLYGUARD:-cargo run --quiet --locked --}
	export APPLYGUARD
	(cd "$root" && "$venv/bin/python" scripts/admission_selfcheck.py deploy "$tmp"/deploy/*.yaml "$tmp"/kind/*.yaml) ||
		status=1
	echo "validate-deploy: the kind suite's matrix, reviewed offline (tests/kind/cases.tsv)"
	(cd "$root" && "$venv/bin/python" scripts/admission_selfcheck.py cases \
		--cases tests/kind/cases.tsv --manifests tests/kind/manifests/cases \
		--enforce-config deploy/base/policy.yaml --warn-config deploy/components/warn/policy.yaml \
		--inventory tests/kind/manifests/setup/namespaces.yaml \
		--inventory tests/kind/manifests/cases/secretstore-vault.yaml \
		--inventory tests/kind/manifests/cases/externalsecret-app-db.yaml) || status=1
fi

if ((status)); then
	echo "validate-deploy: FAILED" >&2
else
	echo "validate-deploy: all checks passed"
fi
exit "$status"
