#!/usr/bin/env bash
# Writes the generated manifests `make bench` uses into DIR (see generate.awk for the shapes):
#   DIR/inventory/  10,000 Secrets + 10,000 ConfigMaps (+ tests/fixtures/inventory/shop.yaml, so
#                   the AdmissionReview fixtures resolve as in the tests)
#   DIR/scan/       10,000 manifests, one object per file
# Usage: scripts/bench/generate.sh DIR
set -euo pipefail

if [[ $# -ne 1 ]]; then
    echo "usage: $0 DIR" >&2
    exit 2
fi
out=$1
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)

rm -rf "$out/inventory" "$out/scan"
mkdir -p "$out/inventory"
for n in $(seq -w 0 49); do
    mkdir -p "$out/scan/team-$n"
done
awk -v out="$out" -f "$here/generate.awk"
cp "$root/tests/fixtures/inventory/shop.yaml" "$out/inventory/shop.yaml"

scan_files=$(find "$out/scan" -name '*.yaml' | wc -l)
secrets=$(cat "$out"/inventory/team-*.yaml | grep -c '^kind: Secret$')
config_maps=$(cat "$out"/inventory/team-*.yaml | grep -c '^kind: ConfigMap$')
echo "generated: inventory $secrets Secrets + $config_maps ConfigMaps (+ shop.yaml), scan $scan_files manifests"
