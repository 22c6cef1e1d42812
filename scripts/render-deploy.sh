#!/usr/bin/env bash
# Renders kustomizations to one YAML file each, for schema validation and `applyguard scan`.
#
#   scripts/render-deploy.sh [--out DIR] [KUSTOMIZATION_DIR...]
#
#   --out DIR            where the files go (default: target/deploy-rendered); DIR/NAME.yaml,
#                        NAME being the overlay's directory name for deploy/overlays/*, else
#                        its path with / turned into -
#   KUSTOMIZATION_DIR    relative to the repository root (default: every deploy/overlays/*)
#
# Renders from a temporary copy of deploy/ and tests/kind/ in which the self-signed overlay's
# generated/ certificate files are throwaway ones made for this run, so it works in CI, with no
# secrets, and never reads or prints the real ones from `make deploy-certs`. The throwaway
# certificates come from `applyguard certs` when APPLYGUARD names an applyguard command,
# otherwise from openssl. Needs `kubectl` (its built-in kustomize) or `kustomize`.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
out="$root/target/deploy-rendered"
dirs=()

usage() {
	awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "${BASH_SOURCE[0]}"
}

while (($#)); do
	case "$1" in
	--out)
		[[ $# -ge 2 ]] || {
			echo "render-deploy: --out needs a directory" >&2
			exit 2
		}
		out=$2
		shift 2
		;;
	-h | --help)
		usage
		exit 0
		;;
	-*)
		echo "render-deploy: unknown option: $1" >&2
		exit 2
		;;
	*)
		dirs+=("${1%/}")
		shift
		;;
	esac
done

if ((${#dirs[@]} == 0)); then
	for dir in "$root"/deploy/overlays/*/; do
		dir=${dir%/}
		dirs+=("deploy/overlays/${dir##*/}")
	done
fi

if command -v kubectl >/dev/null 2>&1; then
	kustomize_build=(kubectl kustomize)
elif command -v kustomize >/dev/null 2>&1; then
	kustomize_build=(kustomize build)
else
	echo "render-deploy: neither kubectl nor kustomize is installed; install one of them" \
		"(kubectl has kustomize built in)" >&2
	exit 1
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

mkdir -p "$tmp/tests"
cp -R "$root/deploy" "$tmp/deploy"
if [[ -d "$root/tests/kind" ]]; then
	cp -R "$root/tests/kind" "$tmp/tests/kind"
fi

# Throwaway serving certificate for the self-signed overlay (replaces any real one in the copy).
gen="$tmp/deploy/overlays/self-signed/generated"
rm -rf "$gen"
mkdir -p "$gen"
if [[ -n ${APPLYGUARD:-} ]]; then
	read -r -a applyguard <<<"$APPLYGUARD"
	"${applyguard[@]}" certs --out "$gen" --dns applyguard.applyguard.svc \
		--dns applyguard.applyguard.svc.cluster.local >/dev/null
elif command -v openssl >/dev/null 2>&1; then
	{
		openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
			-subj "/CN=applyguard render-only CA" -keyout "$gen/ca.key" -out "$gen/ca.crt"
		openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
			-subj "/CN=applyguard.applyguard.svc" -keyout "$gen/tls.key" -out "$gen/tls.csr"
		printf 'subjectAltName=DNS:applyguard.applyguard.svc,DNS:applyguard.applyguard.svc.cluster.local\n' >"$gen/ext.cnf"
		openssl x509 -req -in "$gen/tls.csr" -CA "$gen/ca.crt" -CAkey "$gen/ca.key" -set_serial 1 \
			-days 2 -extfile "$gen/ext.cnf" -out "$gen/tls.crt"
	} 2>"$tmp/openssl.log" || {
		cat "$tmp/openssl.log" >&2
		echo "render-deploy: openssl could not make the throwaway certificate" >&2
		exit 1
	}
else
	echo "render-deploy: need openssl, or APPLYGUARD set to an applyguard command, to make a" \
		"throwaway certificate for the self-signed overlay" >&2
	exit 1
fi

mkdir -p "$out"
status=0
for dir in "${dirs[@]}"; do
	if [[ ! -f "$tmp/$dir/kustomization.yaml" ]]; then
		echo "render-deploy: $dir has no kustomization.yaml (is it under deploy/ or tests/kind/?)" >&2
		status=1
		continue
	fi
	case "$dir" in
	deploy/overlays/*) name=${dir#deploy/overlays/} ;;
	*) name=${dir//\//-} ;;
	esac
	if "${kustomize_build[@]}" "$tmp/$dir" >"$out/$name.yaml"; then
		echo "render-deploy: $dir -> $out/$name.yaml ($(grep -c '^kind:' "$out/$name.yaml") objects)"
	else
		echo "render-deploy: ${kustomize_build[*]} $dir failed" >&2
		rm -f "$out/$name.yaml"
		status=1
	fi
done
exit "$status"
