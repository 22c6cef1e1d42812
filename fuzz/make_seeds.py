#!/usr/bin/env python3
"""Seed corpora for the fuzz targets, made from the test fixtures (tests/fixtures, examples/).

    python3 fuzz/make_seeds.py CORPUS_DIR

Writes CORPUS_DIR/<target>/<sha1> files; existing files (what earlier runs found) are kept.
Only the standard library is needed; PyYAML, when present, adds the YAML fixtures as JSON seeds
for the JSON targets.
"""

import hashlib
import json
import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
FIXTURES = [ROOT / "tests" / "fixtures", ROOT / "examples"]

TARGETS = [
    "admission_review",
    "admission_review_inventory",
    "workload_view",
    "image_reference",
    "kafka_parsers",
    "scan_yaml",
]

IMAGES = [
    "nginx",
    "nginx:1.27",
    "docker.io/library/nginx:latest",
    "ghcr.io/your-org/app:1.0",
    "ghcr.io/acme/todo-api",
    "registry.example.com/team/app",
    "exampleco.io/app",
    "<registry>/app",
    "${REGISTRY}/app:${TAG}",
    "$(IMAGE)",
    "{{ .Values.image }}",
    "localhost:5000/a/b:tag",
    "[::1]:5000/app",
    "app@sha256:" + "0" * 64,
    "quay.io/org/app:v1@sha256:" + "a" * 64,
    "registry.invalid/x",
    "yourls",
    "UPPER/case",
    "",
    "  ",
]

KAFKA = [
    "listeners=PLAINTEXT://:9092,CONTROLLER://:9093\n"
    "advertised.listeners=PLAINTEXT://kafka-0.kafka:9092\n"
    "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT\n"
    "inter.broker.listener.name=PLAINTEXT\n",
    "security.protocol=SASL_SSL\nsasl.mechanism=SCRAM-SHA-512\n"
    "bootstrap.servers=SASL_SSL://kafka:9093\n",
    "# comment\n! bang comment\nkey\\ with\\ spaces = value \\\n    continued\nunicode=\\u00e9\\u12\n",
    "INTERNAL://127.0.0.1:9092,EXTERNAL://[::1]:9094,CLIENT://localhost:9095",
    "INTERNAL:SASL_PLAINTEXT, EXTERNAL : ssl ,BROKEN",
    "KAFKA_CFG_LISTENER_SECURITY_PROTOCOL_MAP",
    "KAFKA_LISTENERS\nKAFKA_CFG_ADVERTISED__LISTENERS\nKAFKA_OPTS___X____Y\n",
    "ALLOW_PLAINTEXT_LISTENER\nALLOW_ANONYMOUS_LOGIN\nKAFKA_ZOOKEEPER_PROTOCOL\n",
    "$(HOST):9092,$$(HOST),$(UNTERMINATED,$",
    "zookeeper.ssl.client.enable=false\nproducer.security.protocol=PLAINTEXT\n",
]


def write(corpus, target, data):
    if isinstance(data, str):
        data = data.encode("utf-8")
    directory = corpus / target
    directory.mkdir(parents=True, exist_ok=True)
    (directory / hashlib.sha1(data).hexdigest()).write_bytes(data)


def walk(value, key=None):
    """(key, value) for every string anywhere in a JSON value."""
    if isinstance(value, dict):
        for k, v in value.items():
            yield from walk(v, k)
    elif isinstance(value, list):
        for v in value:
            yield from walk(v, key)
    elif isinstance(value, str):
        yield key, value


def pod_specs(obj):
    """Every pod spec inside an object (spec, spec.template.spec, CronJob's)."""
    if not isinstance(obj, dict):
        return
    spec = obj.get("spec")
    if isinstance(spec, dict):
        if "containers" in spec:
            yield spec
        yield from pod_specs(spec.get("template"))
        yield from pod_specs(spec.get("jobTemplate"))


def main():
    corpus = pathlib.Path(sys.argv[1])
    try:
        import yaml  # optional
    except ImportError:
        yaml = None
    objects = []
    for base in FIXTURES:
        for path in sorted(base.rglob("*")):
            if not path.is_file() or path.suffix not in (".json", ".yaml", ".yml"):
                continue
            raw = path.read_bytes()
            if len(raw) > 256 * 1024:
                continue  # schemas and other large reference files
            text = raw.decode("utf-8", errors="replace")
            write(corpus, "scan_yaml", raw)
            docs = []
            if path.suffix == ".json":
                try:
                    docs = [json.loads(text)]
                except ValueError:
                    docs = []
                if docs and isinstance(docs[0], dict) and "request" in docs[0]:
                    write(corpus, "admission_review", raw)
                    write(corpus, "admission_review_inventory", raw)
            elif yaml is not None:
                try:
                    docs = [d for d in yaml.safe_load_all(text) if d is not None]
                except yaml.YAMLError:
                    docs = []
            else:
                for image in re.findall(r"image:\s*[\"']?([^\s\"']+)", text):
                    write(corpus, "image_reference", image)
            for doc in docs:
                request = doc.get("request") if isinstance(doc, dict) else None
                if isinstance(request, dict):
                    for field in ("object", "oldObject"):
                        if isinstance(request.get(field), dict):
                            objects.append(request[field])
                elif isinstance(doc, dict) and "kind" in doc:
                    objects.append(doc)
    for obj in objects:
        compact = json.dumps(obj, separators=(",", ":"))
        write(corpus, "workload_view", compact)
        # A bare object is wrapped into a CREATE review by the admission targets.
        write(corpus, "admission_review", compact)
        write(corpus, "admission_review_inventory", compact)
        for spec in pod_specs(obj):
            write(corpus, "workload_view", json.dumps(spec, separators=(",", ":")))
        for key, value in walk(obj):
            if key == "image":
                write(corpus, "image_reference", value)
            if key in ("name", "value") or "\n" in value or "=" in value:
                write(corpus, "kafka_parsers", value)
    for image in IMAGES:
        write(corpus, "image_reference", image)
    for text in KAFKA:
        write(corpus, "kafka_parsers", text)
    for target in TARGETS:
        (corpus / target).mkdir(parents=True, exist_ok=True)
        count = sum(1 for _ in (corpus / target).iterdir())
        print(f"{target}: {count} seed file(s)")


if __name__ == "__main__":
    main()
