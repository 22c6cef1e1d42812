#!/usr/bin/env bash
# The kind suite (`make kind-test`): applyguard on a real cluster, asserting what kubectl prints.
#
# Creates a kind cluster (tests/kind/kind-config.yaml), builds the image (deploy/Dockerfile) and
# loads it into the nodes, installs applyguard through deploy/overlays/self-signed (no
# cert-manager), waits until it answers, then applies the matrix in tests/kind/cases.tsv and the
# scenarios below, and finally switches to deploy/overlays/warn (the rollout recipe). The cluster
# is deleted on exit, on failure too. Needs docker (with a reachable daemon), kind and kubectl;
# where one is missing it says which and exits 1. Prints "N passed, N failed" last; exits 1 on
# any failure.
#
# Environment:
#   KIND_CLUSTER_NAME  cluster name (default applyguard-kind); an existing cluster of that name
#                      is an error, never reused or deleted
#   IMAGE              image to build and load (default ghcr.io/applyguard/applyguard:kind, the
#                      name tests/kind/overlay installs)
#   SKIP_BUILD=1       use an already built $IMAGE
#   KEEP_CLUSTER=1     keep the cluster afterwards (delete it with kind delete cluster --name ...)
#   APPLYGUARD         command for `applyguard certs` (default: run it from $IMAGE with docker)
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
here="$root/tests/kind"
cases="$here/manifests/cases"
cluster=${KIND_CLUSTER_NAME:-applyguard-kind}
image=${IMAGE:-ghcr.io/applyguard/applyguard:kind}
wait_timeout=180s

log() { printf '\n=== %s\n' "$*"; }

missing=()
for tool in docker kind kubectl; do
	command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if ((${#missing[@]})); then
	echo "kind suite: not run: missing ${missing[*]} (it needs docker, kind and kubectl on PATH)" >&2
	exit 1
fi
if ! docker info >/dev/null 2>&1; then
	echo "kind suite: not run: docker is installed but its daemon is not reachable (docker info failed)" >&2
	exit 1
fi
if kind get clusters 2>/dev/null | grep -qx "$cluster"; then
	echo "kind suite: a kind cluster named $cluster already exists; delete it or set KIND_CLUSTER_NAME" >&2
	exit 1
fi
if [[ $image != ghcr.io/applyguard/applyguard:kind ]]; then
	echo "kind suite: tests/kind/overlay installs ghcr.io/applyguard/applyguard:kind; IMAGE=$image would not be used" >&2
	exit 1
fi

work=$(mktemp -d)
export KUBECONFIG="$work/kubeconfig" # never touch the caller's kubeconfig
created=0

diagnostics() {
	echo "--- diagnostics"
	kubectl get nodes -o wide || true
	kubectl get pods -A -o wide || true
	kubectl -n applyguard describe deployment applyguard || true
	kubectl -n applyguard logs -l app.kubernetes.io/component=webhook --all-containers --prefix --tail=200 || true
	kubectl get events -A --sort-by=.lastTimestamp | tail -n 60 || true
}

cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	if ((rc != 0)) && ((created)) && [[ -f $KUBECONFIG ]]; then
		diagnostics
	fi
	if ((created)); then
		if [[ ${KEEP_CLUSTER:-0} == 1 ]]; then
			echo "kind suite: KEEP_CLUSTER=1: kept cluster $cluster (kubeconfig: kind get kubeconfig --name $cluster)"
		else
			kind delete cluster --name "$cluster" || true
		fi
	fi
	rm -rf "$work"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

passed=0
failed=0
out=""

pass() {
	passed=$((passed + 1))
	echo "ok   $*"
}
fail() {
	failed=$((failed + 1))
	echo "FAIL $*"
	printf '%s\n' "$out" | sed 's/^/     | /'
}

# Runs kubectl, keeping its combined output in $out and returning its exit code.
kc() {
	local rc=0
	out=$(kubectl "$@" 2>&1) || rc=$?
	return "$rc"
}

# Predicates over one kubectl run: each runs its command (the arguments after the expectation)
# and returns 0 when kubectl printed what is expected.
denied() { # RULE PATH KUBECTL_ARGS...
	local rule=$1 path=$2
	shift 2
	! kc "$@" && grep -qF "denied the request" <<<"$out" && grep -qF "[$rule] $path" <<<"$out"
}
# Denied, the message also naming TEXT (the offending value; "" for none) and a fix.
denied_with() { # RULE PATH TEXT KUBECTL_ARGS...
	local rule=$1 path=$2 text=$3
	shift 3
	denied "$rule" "$path" "$@" && grep -qF "Fix: " <<<"$out" && grep -qF -- "$text" <<<"$out"
}
warned() { # RULE PATH KUBECTL_ARGS...
	local rule=$1 path=$2
	shift 2
	kc "$@" && grep -qF -e "Warning: $rule $path" -e "Warning: $rule $(short_path "$path")" <<<"$out"
}
# The field path a warning too long for 256 runes is composed with (src/warnings.rs short_path).
short_path() { # PATH
	local path=${1%.valueFrom.secretKeyRef}
	path=${path%.valueFrom.configMapKeyRef}
	if [[ $path == *template.spec.* ]]; then
		path=${path##*template.spec.}
	elif [[ $path =~ ^spec\.(containers\[|initContainers\[|ephemeralContainers\[|volumes\[|securityContext|imagePullSecrets\[) ]]; then
		path=${path#spec.}
	fi
	printf '%s' "$path"
}
noticed() { # RULE PATH TEXT KUBECTL_ARGS...
	local rule=$1 path=$2 text=$3 short
	shift 3
	short=$(short_path "$path")
	kc "$@" && grep -e "^Warning: $rule " <<<"$out" |
		grep -F -e "Warning: $rule $path: " -e "Warning: $rule $short: " | grep -qF "$text"
}
clean() { # KUBECTL_ARGS...
	kc "$@" && ! grep -q "Warning:" <<<"$out"
}
succeeds() { kc "$@"; }
fails_with() { # TEXT KUBECTL_ARGS...
	local text=$1
	shift
	! kc "$@" && grep -qF "$text" <<<"$out"
}
absent() { # NAMESPACE FILE: the object in FILE does not exist
	! kc get -n "$1" -f "$2" && grep -q "NotFound" <<<"$out"
}

no_webhook_pods() {
	kc -n applyguard get pods -l app.kubernetes.io/component=webhook -o name && [[ -z $out ]]
}

check() { # DESCRIPTION PREDICATE ARGS...
	local what=$1
	shift
	if "$@"; then pass "$what"; else fail "$what"; fi
}
# Like check, retried for up to SECONDS: for state the webhook learns through its watches.
eventually() { # SECONDS DESCRIPTION PREDICATE ARGS...
	local deadline=$((SECONDS + $1)) what=$2
	shift 2
	until "$@"; do
		if ((SECONDS >= deadline)); then
			fail "$what"
			return 0
		fi
		sleep 2
	done
	pass "$what"
}

# Until the webhook answers through its Service (endpoints ready, caBundle in place).
wait_for_webhook() {
	eventually 90 "the webhook answers (server dry run of a good Pod)" \
		clean apply --dry-run=server -n ag-enforce -f "$cases/pod-good.yaml"
}

log "tools"
docker version --format 'docker {{.Server.Version}}'
kind version
kubectl version --client
case "$(kind version)" in
*v0.29.*) ;;
*) echo "note: tests/kind/kind-config.yaml pins the node image built for kind v0.29.0" ;;
esac

if [[ ${SKIP_BUILD:-0} != 1 ]]; then
	log "build $image"
	docker build -f "$root/deploy/Dockerfile" -t "$image" "$root"
fi

log "create kind cluster $cluster"
created=1
kind create cluster --name "$cluster" --config "$here/kind-config.yaml" --kubeconfig "$KUBECONFIG" --wait "$wait_timeout"
kind load docker-image "$image" --name "$cluster"

log "before applyguard: CRDs, namespaces, ExternalSecrets, a legacy Deployment"
kubectl apply -f "$here/manifests/crds/"
kubectl wait --for condition=Established --timeout=60s crd/externalsecrets.external-secrets.io \
	crd/sealedsecrets.bitnami.com crd/certificates.cert-manager.io crd/kafkas.kafka.strimzi.io \
	crd/secretstores.external-secrets.io crd/clustersecretstores.external-secrets.io \
	crd/rollouts.argoproj.io
kubectl apply -f "$here/manifests/setup/namespaces.yaml"
for ns in ag-enforce ag-warn; do
	kubectl apply -n "$ns" -f "$cases/secretstore-vault.yaml"
	kubectl apply -n "$ns" -f "$cases/externalsecret-app-db.yaml"
done
# Created before the webhook exists, and in violation of root-container.
kubectl apply -f "$here/manifests/setup/legacy-deployment.yaml"

log "install applyguard (deploy/overlays/self-signed, certificates from scripts/deploy-certs.sh)"
# A copy of the tree, so the certificates never land in the caller's deploy/overlays/self-signed.
mkdir -p "$work/tree/tests"
cp -R "$root/deploy" "$work/tree/deploy"
cp -R "$here" "$work/tree/tests/kind"
rm -rf "$work/tree/deploy/overlays/self-signed/generated"
if [[ -n ${APPLYGUARD:-} ]]; then
	"$root/scripts/deploy-certs.sh" --out "$work/tree/deploy/overlays/self-signed/generated"
else
	APPLYGUARD_IMAGE=$image "$root/scripts/deploy-certs.sh" --out "$work/tree/deploy/overlays/self-signed/generated"
fi
kubectl apply -k "$work/tree/tests/kind/overlay"
# The namespace enforces Pod Security "restricted": the rollout also proves the pods meet it.
kubectl -n applyguard rollout status deployment/applyguard --timeout="$wait_timeout"
check "both replicas ready" \
	test "$(kubectl -n applyguard get deployment applyguard -o jsonpath='{.status.readyReplicas}')" = 2
kubectl -n applyguard get pods -l app.kubernetes.io/component=webhook -o wide
wait_for_webhook

log "kubectl apply --dry-run=server: the verdict, nothing created"
check "dry run denied in ag-enforce, naming the field" \
	denied root-container spec.containers[0].securityContext.runAsNonRoot \
	apply --dry-run=server -n ag-enforce -f "$cases/pod-root-container.yaml"
check "dry run in ag-warn: allowed with the warning" \
	warned placeholder-image spec.containers[0].image \
	apply --dry-run=server -n ag-warn -f "$cases/pod-placeholder-image.yaml"
check "... and it said (server dry run)" grep -qF "(server dry run)" <<<"$out"
check "dry run of a good Pod: allowed, no warning" \
	clean apply --dry-run=server -n ag-enforce -f "$cases/pod-good.yaml"
for pair in ag-enforce:pod-root-container.yaml ag-warn:pod-placeholder-image.yaml ag-enforce:pod-good.yaml; do
	check "dry run created nothing: ${pair%%:*}/${pair#*:}" absent "${pair%%:*}" "$cases/${pair#*:}"
done

log "the matrix (tests/kind/cases.tsv) in ag-enforce and ag-warn (applyguard.io/mode=warn)"
while IFS=$'\t' read -r file verdict rule path text; do
	[[ -z $file || $file == \#* ]] && continue
	manifest="$cases/$file"
	case "$verdict" in
	allow)
		for ns in ag-enforce ag-warn; do
			check "$file in $ns: allowed, no warning" clean apply -n "$ns" -f "$manifest"
		done
		;;
	notice)
		for ns in ag-enforce ag-warn; do
			check "$file in $ns: allowed, warning '$rule $path: ...$text...'" \
				noticed "$rule" "$path" "$text" apply -n "$ns" -f "$manifest"
		done
		;;
	deny)
		[[ $text == - ]] && text=""
		check "$file in ag-enforce: denied, naming [$rule] $path and '$text'" \
			denied_with "$rule" "$path" "$text" apply -n ag-enforce -f "$manifest"
		check "$file in ag-enforce: nothing created" absent ag-enforce "$manifest"
		check "$file in ag-warn: applied, with 'Warning: $rule $path: ...$text...'" \
			noticed "$rule" "$path" "$text" apply -n ag-warn -f "$manifest"
		;;
	*)
		echo "tests/kind/cases.tsv: unknown verdict '$verdict' for $file" >&2
		exit 1
		;;
	esac
done <"$here/cases.tsv"

log "kubectl debug: an ephemeral container is evaluated too"
check "ephemeral container with a placeholder image denied" \
	denied placeholder-image spec.ephemeralContainers[0].image \
	debug -n ag-enforce pod/good --image=ghcr.io/your-org/debug:1.0 --container=debugger

log "a Deployment that predates applyguard can still be scaled and relabelled"
check "scale-only update (kubectl patch spec.replicas) accepted" \
	clean patch -n ag-legacy deployment/legacy --type=merge -p '{"spec":{"replicas":2}}'
check "kubectl scale accepted" succeeds scale -n ag-legacy deployment/legacy --replicas=3
check "relabel accepted" clean label -n ag-legacy deployment/legacy team=payments
check "a pod template change is evaluated, and denied" \
	denied root-container spec.template.spec.containers[0].securityContext.runAsNonRoot \
	set env -n ag-legacy deployment/legacy LEGACY_TOUCHED=1

log "applyguard's own namespace and kube-system are never blocked"
for ns in applyguard kube-system; do
	check "plaintext Kafka ConfigMap in $ns: not evaluated, applied" \
		clean apply -n "$ns" -f "$cases/configmap-plaintext-kafka.yaml"
	kubectl delete -n "$ns" -f "$cases/configmap-plaintext-kafka.yaml" --wait=false --ignore-not-found >/dev/null || true
done
kubectl -n applyguard scale deployment/applyguard --replicas=0
eventually 120 "applyguard scaled to 0: its pods are gone" no_webhook_pods
check "webhook down, failurePolicy Fail: requests in ag-enforce fail closed" \
	fails_with "failed calling webhook" apply --dry-run=server -n ag-enforce -f "$cases/pod-good.yaml"
check "webhook down: kube-system still writable" \
	succeeds apply --dry-run=server -n kube-system -f "$cases/configmap-plaintext-kafka.yaml"
kubectl -n applyguard scale deployment/applyguard --replicas=2
check "webhook down: its own pods are created and become ready" \
	succeeds -n applyguard rollout status deployment/applyguard --timeout="$wait_timeout"
wait_for_webhook

log "warnings-first rollout: deploy/overlays/warn, then a namespace switched to enforce by label"
kubectl apply -k "$work/tree/tests/kind/overlay-warn"
kubectl -n applyguard rollout status deployment/applyguard --timeout="$wait_timeout"
check "warn overlay: failurePolicy Ignore" \
	test "$(kubectl get validatingwebhookconfiguration applyguard -o jsonpath='{.webhooks[0].failurePolicy}')" = Ignore
eventually 90 "warn overlay: unlabelled namespace gets warnings, not denials" \
	warned root-container spec.containers[0].securityContext.runAsNonRoot \
	apply --dry-run=server -n ag-rollout -f "$cases/pod-root-container.yaml"
kubectl label namespace ag-rollout applyguard.io/mode=enforce --overwrite
eventually 60 "warn overlay: namespace labelled applyguard.io/mode=enforce denies" \
	denied root-container spec.containers[0].securityContext.runAsNonRoot \
	apply --dry-run=server -n ag-rollout -f "$cases/pod-root-container.yaml"

printf '\n%d passed, %d failed\n' "$passed" "$failed"
((failed == 0))
