#!/usr/bin/env bash
# Makes the serving certificate for deploy/overlays/self-signed (and warn) with `applyguard certs`:
# a private CA and a certificate for applyguard.applyguard.svc, written where the overlay's
# secretGenerator reads them. The overlay copies ca.crt into the webhook's caBundle itself.
#
#   scripts/deploy-certs.sh [--out DIR] [--force]
#
#   --out DIR   where to write ca.crt, ca.key, tls.crt, tls.key
#               (default: deploy/overlays/self-signed/generated, which git ignores)
#   --force     make a new CA too (by default an existing CA in DIR is reused, so the caBundle
#               already installed stays valid and only the serving certificate is renewed)
#
# How applyguard is run, first match wins:
#   APPLYGUARD=CMD          a command, e.g. target/release/applyguard
#   APPLYGUARD_IMAGE=IMAGE  the container image, with docker (no Rust toolchain needed)
#   otherwise               cargo run --quiet --release --locked --
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
out="$root/deploy/overlays/self-signed/generated"
force=()

usage() {
	awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "${BASH_SOURCE[0]}"
}

while (($#)); do
	case "$1" in
	--out)
		[[ $# -ge 2 ]] || {
			echo "deploy-certs: --out needs a directory" >&2
			exit 2
		}
		out=$2
		shift 2
		;;
	--force)
		force=(--force)
		shift
		;;
	-h | --help)
		usage
		exit 0
		;;
	*)
		echo "deploy-certs: unknown argument: $1" >&2
		usage >&2
		exit 2
		;;
	esac
done

mkdir -p "$out"
out=$(cd "$out" && pwd)
# The Service kube-apiserver calls (deploy/base/service.yaml).
names=(--dns applyguard.applyguard.svc --dns applyguard.applyguard.svc.cluster.local)

if [[ -n ${APPLYGUARD:-} ]]; then
	read -r -a cmd <<<"$APPLYGUARD"
	"${cmd[@]}" certs --out "$out" "${names[@]}" "${force[@]}"
elif [[ -n ${APPLYGUARD_IMAGE:-} ]]; then
	command -v docker >/dev/null 2>&1 || {
		echo "deploy-certs: APPLYGUARD_IMAGE is set but docker is not installed" >&2
		exit 1
	}
	docker run --rm --user "$(id -u):$(id -g)" -v "$out:/out" "$APPLYGUARD_IMAGE" \
		certs --out /out "${names[@]}" "${force[@]}"
else
	command -v cargo >/dev/null 2>&1 || {
		echo "deploy-certs: no cargo; set APPLYGUARD (an applyguard binary) or APPLYGUARD_IMAGE (its image)" >&2
		exit 1
	}
	(cd "$root" && cargo run --quiet --release --locked -- certs --out "$out" "${names[@]}" "${force[@]}")
fi

for file in ca.crt tls.crt tls.key; do
	[[ -s "$out/$file" ]] || {
		echo "deploy-certs: $out/$file was not written" >&2
		exit 1
	}
done
echo "deploy-certs: wrote $out/{ca.crt,tls.crt,tls.key} (and ca.key, kept for the next renewal; never commit it)"
