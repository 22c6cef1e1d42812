#!/usr/bin/env bash
# Obtains the real etcd and kube-apiserver the e2e suite runs (envtest style) and prints their folder.
#
# Order: $KUBEBUILDER_ASSETS when set (the envtest convention: a folder holding etcd and
# kube-apiserver, e.g. from `setup-envtest use 1.30 -p path`); else the cache
# ${XDG_CACHE_HOME:-$HOME/.cache}/applyguard/envtest/1.20.2/ when complete; else it fills that cache
# from Debian bookworm: etcd from the etcd-server package, kube-apiserver built from the
# `kubernetes` source package (upstream 1.20.2) with Debian's Go. The first build takes about five
# minutes on two cores; later runs reuse the cache and build nothing.
#
# Prints the folder on stdout (progress goes to stderr). Exits 3 when the binaries cannot be had
# (no apt-get, not root, no network) so the caller can tell "unavailable" from "broken" (exit 1).
set -euo pipefail

version=1.20.2
cache=${XDG_CACHE_HOME:-$HOME/.cache}/applyguard/envtest/$version

say() { printf 'envtest-assets: %s\n' "$*" >&2; }
unavailable() {
	say "$*"
	exit 3
}

if [[ -n ${KUBEBUILDER_ASSETS:-} ]]; then
	for bin in etcd kube-apiserver; do
		[[ -x $KUBEBUILDER_ASSETS/$bin ]] || {
			say "KUBEBUILDER_ASSETS=$KUBEBUILDER_ASSETS has no executable $bin"
			exit 1
		}
	done
	printf '%s\n' "$KUBEBUILDER_ASSETS"
	exit 0
fi

if [[ -x $cache/etcd && -x $cache/kube-apiserver && -f $cache/.complete ]]; then
	printf '%s\n' "$cache"
	exit 0
fi

command -v apt-get >/dev/null 2>&1 || unavailable "no apt-get here: set KUBEBUILDER_ASSETS to a folder with etcd and kube-apiserver (setup-envtest use -p path)"
[[ $(id -u) == 0 ]] || unavailable "installing Debian packages needs root: run as root once, or set KUBEBUILDER_ASSETS"

started=$(date +%s)
export DEBIAN_FRONTEND=noninteractive

# Build tools and etcd. debian/rules of the kubernetes source package names the same tools.
need=()
for pkg in etcd-server golang-go rsync jq make dpkg-dev golang-github-modern-go-reflect2-dev; do
	dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || need+=("$pkg")
done
if ((${#need[@]})); then
	say "installing ${need[*]} (apt-get)"
	apt-get update -qq >&2 || unavailable "apt-get update failed (no package registry reachable?)"
	apt-get install -y -qq --no-install-recommends "${need[@]}" >&2 || unavailable "apt-get install ${need[*]} failed"
fi

# The kubernetes source package needs a deb-src entry; add one for bookworm main if none exists.
src_list=/etc/apt/sources.list.d/applyguard-bookworm-src.sources
if ! grep -rqs '^Types:.*deb-src' /etc/apt/sources.list.d/ && ! grep -qs '^deb-src' /etc/apt/sources.list; then
	say "adding a deb-src entry for bookworm main ($src_list)"
	cat >"$src_list" <<-'EOF'
		Types: deb-src
		URIs: http://deb.debian.org/debian
		Suites: bookworm
		Components: main
		Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
	EOF
	apt-get update -qq >&2 || unavailable "apt-get update with the deb-src entry failed"
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/applyguard-envtest.XXXXXX")
trap 'rm -rf "$work"' EXIT

say "fetching the kubernetes source package (apt-get source, about 34 MB)"
# --skip-patches: Debian's three patches (debian/patches) change kubectl's printing only.
(cd "$work" && apt-get source -qq --download-only kubernetes >&2 && dpkg-source -x --skip-patches ./kubernetes_*.dsc src >&2) ||
	unavailable "apt-get source kubernetes failed"
tree="$work/src"
grep -q "^kubernetes (1.20.5+really$version" "$tree/debian/changelog" ||
	say "note: the source package is not 1.20.5+really$version; building what it holds ($(head -n 1 "$tree/debian/changelog"))"

# The vendored reflect2 1.0.1 crashes under Go >= 1.18 (SIGSEGV in map iteration as soon as a
# custom resource is stored); Debian's 1.0.2 is API-compatible and fixed.
say "replacing vendor/github.com/modern-go/reflect2 with Debian's 1.0.2"
rm -rf "$tree/vendor/github.com/modern-go/reflect2"
cp -r /usr/share/gocode/src/github.com/modern-go/reflect2 "$tree/vendor/github.com/modern-go/reflect2"
rm -rf "$tree/vendor/github.com/modern-go/reflect2/.git"* "$tree/vendor/github.com/modern-go/reflect2/go.mod"
# go.mod of the vendor tree keeps its 1.0.1 pin: -mod=vendor only checks modules.txt's list.

# debian/rules: a GOPATH holding k8s.io/kubernetes, cgo off, the upstream make targets.
gopath="$work/gopath"
mkdir -p "$gopath/src/k8s.io"
ln -s "$tree" "$gopath/src/k8s.io/kubernetes"
say "building kube-apiserver $version with $(go version | cut -d' ' -f3) (about 5 minutes on two cores)"
(
	cd "$gopath/src/k8s.io/kubernetes"
	export GOPATH="$gopath" GOCACHE="$work/gocache" GO111MODULE=off CGO_ENABLED=0 GOFLAGS=
	export KUBE_GIT_VERSION="v$version" KUBE_GIT_TREE_STATE=clean
	# hack/lib/golang.sh prints one line per step; a ticker shows the build is alive in between.
	(while sleep 30; do say "still building ($(($(date +%s) - started)) s)"; done) &
	ticker=$!
	trap 'kill $ticker 2>/dev/null' EXIT
	make WHAT=cmd/kube-apiserver >&2
) || {
	say "building kube-apiserver failed (output above)"
	exit 1
}

built=$(find "$tree/_output" -type f -name kube-apiserver -perm -u+x | head -n 1)
[[ -n $built ]] || {
	say "the build produced no kube-apiserver under _output/"
	exit 1
}
mkdir -p "$cache"
cp "$built" "$cache/kube-apiserver"
ln -sf /usr/bin/etcd "$cache/etcd"
[[ -x /usr/bin/etcdctl ]] && ln -sf /usr/bin/etcdctl "$cache/etcdctl"
"$cache/kube-apiserver" --version >&2
touch "$cache/.complete"
say "cached in $cache after $(($(date +%s) - started)) s"
printf '%s\n' "$cache"
