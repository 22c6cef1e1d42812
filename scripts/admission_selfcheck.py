#!/usr/bin/env python3
"""Offline admission checks with `applyguard review`, no cluster needed.

  deploy FILE...   every object of each rendered overlay (scripts/render-deploy.sh) is wrapped in
                   a CREATE AdmissionReview and reviewed with the overlay as the inventory, under
                   that overlay's own policy (its applyguard-config ConfigMap: proves it loads)
                   and under the default policy (every rule enforced): applyguard must admit its
                   own installation.
  cases            the kind suite's matrix (tests/kind/cases.tsv) reviewed offline: each bad case
                   denied in enforce mode and warned in warn mode, naming the rule and field path
                   that tests/kind/run.sh asserts kubectl prints.

APPLYGUARD (environment) is the command that runs applyguard, split like a shell would
(default: "cargo run --quiet --locked --"). Needs PyYAML (scripts/validate-deploy.sh installs it
with kubernetes-validate).
"""

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile

import yaml

# kind -> (group, version, resource) for the AdmissionReview; other kinds get a guessed plural,
# which is fine: applyguard allows every kind it does not evaluate.
RESOURCES = {
    "Pod": ("", "v1", "pods"),
    "ConfigMap": ("", "v1", "configmaps"),
    "ReplicationController": ("", "v1", "replicationcontrollers"),
    "Deployment": ("apps", "v1", "deployments"),
    "StatefulSet": ("apps", "v1", "statefulsets"),
    "DaemonSet": ("apps", "v1", "daemonsets"),
    "ReplicaSet": ("apps", "v1", "replicasets"),
    "Job": ("batch", "v1", "jobs"),
    "CronJob": ("batch", "v1", "cronjobs"),
}


def applyguard_cmd():
    return shlex.split(os.environ.get("APPLYGUARD", "cargo run --quiet --locked --"))


def short_path(path):
    """The field path a warning too long for 256 runes is composed with (src/warnings.rs)."""
    for suffix in (".valueFrom.secretKeyRef", ".valueFrom.configMapKeyRef"):
        if path.endswith(suffix):
            path = path[: -len(suffix)]
            break
    at = path.rfind("template.spec.")
    if at >= 0:
        return path[at + len("template.spec."):]
    rest = path[len("spec."):] if path.startswith("spec.") else None
    pod_fields = ("containers[", "initContainers[", "ephemeralContainers[", "volumes[",
                  "securityContext", "imagePullSecrets[")
    if rest is not None and rest.startswith(pod_fields):
        return rest
    return path


def warned(warning, rule, field, text):
    """A warning line for this finding: its rule, its field (whole or short), its text, and
    within the API server's 256 runes."""
    named = any(warning.startswith(f"{rule} {f}: ") for f in (field, short_path(field)))
    return named and text in warning and len(warning) <= 256


def load_docs(path):
    with open(path, encoding="utf-8") as f:
        return [d for d in yaml.safe_load_all(f) if isinstance(d, dict)]


def admission_review(obj, namespace, uid):
    api_version = obj.get("apiVersion", "v1")
    group, _, version = api_version.rpartition("/")
    kind = obj["kind"]
    g, v, resource = RESOURCES.get(kind, (group, version, kind.lower() + "s"))
    gvk = {"group": g, "version": v, "kind": kind}
    gvr = {"group": g, "version": v, "resource": resource}
    request = {
        "uid": uid,
        "kind": gvk,
        "resource": gvr,
        "requestKind": gvk,
        "requestResource": gvr,
        "name": obj.get("metadata", {}).get("name", ""),
        "operation": "CREATE",
        "userInfo": {"username": "kind-suite", "groups": ["system:authenticated"]},
        "object": obj,
        "dryRun": False,
    }
    if namespace:
        request["namespace"] = namespace
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request}


def review(review_obj, config, inventories, workdir):
    path = os.path.join(workdir, "review.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump(review_obj, f)
    cmd = applyguard_cmd() + ["review"]
    if config:
        cmd += ["--config", config]
    for inv in inventories:
        cmd += ["--inventory", inv]
    cmd.append(path)
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {done.returncode}: {done.stderr.strip()}")
    return json.loads(done.stdout)["response"]


def check_deploy(files):
    failures = 0
    with tempfile.TemporaryDirectory() as tmp:
        for path in files:
            docs = load_docs(path)
            rendered = "/".join(path.split(os.sep)[-2:])  # for messages: kind/warn.yaml
            configs = [
                d for d in docs
                if d.get("kind") == "ConfigMap"
                and d["metadata"]["name"].startswith("applyguard-config")
            ]
            if len(configs) != 1:
                print(f"FAIL {rendered}: expected one applyguard-config ConfigMap, found {len(configs)}")
                failures += 1
                continue
            config = os.path.join(tmp, "config.yaml")
            with open(config, "w", encoding="utf-8") as f:
                f.write(configs[0]["data"]["config.yaml"])
            # Every rule enforced, and applyguard's own namespace evaluated too: the default
            # systemNamespaces exemption would otherwise wave its objects through.
            strict = os.path.join(tmp, "strict.yaml")
            with open(strict, "w", encoding="utf-8") as f:
                f.write("exemptions:\n  systemNamespaces: []\n")
            for i, obj in enumerate(docs):
                ns = obj.get("metadata", {}).get("namespace", "")
                name = f"{obj['kind']}/{obj['metadata']['name']}"
                # The overlay's own policy (proves it loads), and the default policy, where
                # every rule enforces: a warn overlay must not hide a violation of its own.
                for label, cfg in (("own policy", config), ("every rule enforced", strict)):
                    try:
                        resp = review(admission_review(obj, ns, f"selfcheck-{i}"), cfg, [path], tmp)
                    except RuntimeError as err:
                        print(f"FAIL {rendered} {name} ({label}): {err}")
                        failures += 1
                        continue
                    warnings = resp.get("warnings") or []
                    if not resp.get("allowed"):
                        message = resp.get("status", {}).get("message")
                        print(f"FAIL {rendered} {name} ({label}): denied: {message}")
                        failures += 1
                    elif obj["kind"] in RESOURCES:
                        detail = "; ".join(warnings) if warnings else "no warnings"
                        print(f"ok   {rendered} {name} ({label}): allowed ({detail})")
    return failures


def read_cases(path):
    cases = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            line = line.rstrip("\n")
            if not line or line.startswith("#"):
                continue
            fields = [None if x == "-" else x for x in line.split("\t")]
            if len(fields) != 5 or fields[1] not in ("deny", "allow", "notice"):
                raise SystemExit(f"{path}:{number}: expected file, deny|allow|notice, rule, path, text")
            cases.append(tuple(fields))
    return cases


def namespaced_inventory(files, namespaces, out):
    """The inventory manifests copied into each test namespace (kubectl apply -n does the same)."""
    docs = []
    for path in files:
        for doc in load_docs(path):
            if doc.get("kind") == "Namespace" or doc.get("metadata", {}).get("namespace"):
                docs.append(doc)
                continue
            for ns in namespaces:
                copy = json.loads(json.dumps(doc))
                copy["metadata"]["namespace"] = ns
                docs.append(copy)
    with open(out, "w", encoding="utf-8") as f:
        yaml.safe_dump_all(docs, f)
    return out


def check_cases(cases_file, manifests, enforce_config, warn_config, inventory):
    """Mirrors tests/kind/run.sh: the same expectations, checked against `applyguard review`.

    The warn namespace is reviewed with the warn policy rather than through its
    applyguard.io/mode label, so this holds whether or not namespace modes are built."""
    failures = 0
    with tempfile.TemporaryDirectory() as tmp:
        namespaces = ("ag-enforce", "ag-warn")
        inv = [namespaced_inventory(inventory, namespaces, os.path.join(tmp, "inventory.yaml"))]
        for file, verdict, rule, field, text in read_cases(cases_file):
            text = text or ""
            obj = load_docs(os.path.join(manifests, file))[0]
            for ns, config in zip(namespaces, (enforce_config, warn_config)):
                resp = review(admission_review(obj, ns, "case"), config, inv, tmp)
                allowed = resp.get("allowed")
                warnings = resp.get("warnings") or []
                message = resp.get("status", {}).get("message", "")
                if verdict == "allow":
                    ok = allowed and not warnings
                    what = "allowed, no warning"
                elif verdict == "notice":
                    ok = allowed and any(
                        warned(w, rule, field, text) for w in warnings
                    )
                    what = f"allowed, warning '{rule} {field}: ...{text}...'"
                elif ns == "ag-enforce":
                    ok = (
                        not allowed
                        and f"[{rule}] {field}" in message
                        and text in message
                        and "Fix: " in message
                    )
                    what = f"denied naming [{rule}] {field}, {text!r} and a fix"
                else:
                    ok = allowed and any(
                        warned(w, rule, field, text) for w in warnings
                    )
                    what = f"allowed, warning '{rule} {field}: ...{text}...'"
                print(f"{'ok  ' if ok else 'FAIL'} {file} in {ns}: {what}")
                if not ok:
                    print(f"     got allowed={allowed} message={message!r} warnings={warnings!r}")
                    failures += 1
    return failures


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    d = sub.add_parser("deploy")
    d.add_argument("files", nargs="+")
    c = sub.add_parser("cases")
    c.add_argument("--cases", required=True)
    c.add_argument("--manifests", required=True)
    c.add_argument("--enforce-config", required=True)
    c.add_argument("--warn-config", required=True)
    c.add_argument("--inventory", action="append", default=[])
    args = parser.parse_args()
    if args.command == "deploy":
        failures = check_deploy(args.files)
    else:
        failures = check_cases(args.cases, args.manifests, args.enforce_config, args.warn_config, args.inventory)
    if failures:
        print(f"{failures} check(s) failed")
        return 1
    print("all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
