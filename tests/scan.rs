//! `applyguard scan` over fixture repositories: cross-references inside the set, each finding
//! family, parse errors and duplicate keys, stdin, every output format (SARIF validated against
//! the 2.1.0 schema), and every exit code.

mod common;

use std::io::Write;
use std::process::{Command, Output, Stdio};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_applyguard");

fn fixture(name: &str) -> String {
    format!("{}/tests/fixtures/scan/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn scan(args: &[&str]) -> Output {
    Command::new(BIN).arg("scan").args(args).output().unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).to_string()
}

fn json_report(args: &[&str]) -> (i32, Value) {
    let mut all = vec!["--format", "json"];
    all.extend_from_slice(args);
    let output = scan(&all);
    let report: Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", stdout(&output)));
    (output.status.code().unwrap(), report)
}

fn findings(report: &Value, level: &str) -> Vec<(String, String, String)> {
    report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["level"] == level)
        .map(|f| {
            (
                format!(
                    "{}:{}",
                    f["file"].as_str().unwrap().rsplit('/').next().unwrap(),
                    f["line"]
                ),
                f["rule"].as_str().unwrap().to_string(),
                f["path"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn clean_kustomize_set_passes_and_counts_the_kustomization() {
    let (code, report) = json_report(&[&fixture("clean-kustomize")]);
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(report["summary"]["objects"], 6);
    assert_eq!(report["summary"]["skippedNotKubernetes"], 1);
    assert_eq!(report["summary"]["enforce"], 0);
    assert_eq!(report["findings"].as_array().unwrap().len(), 0);
}

#[test]
fn external_secret_in_another_file_satisfies_the_reference() {
    let (code, report) = json_report(&[&fixture("external-secret")]);
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(report["summary"]["notice"], 2);
    // Without the ExternalSecret's file the same Deployment fails.
    let (code, report) = json_report(&[&format!("{}/deployment.yaml", fixture("external-secret"))]);
    assert_eq!(code, 1);
    assert_eq!(findings(&report, "enforce").len(), 2);
    // ...unless --inventory supplies it, and its store, from elsewhere.
    let (code, _) = json_report(&[
        "--inventory",
        &format!("{}/externalsecret.yaml", fixture("external-secret")),
        "--inventory",
        &format!("{}/clustersecretstore.yaml", fixture("external-secret")),
        &format!("{}/deployment.yaml", fixture("external-secret")),
    ]);
    assert_eq!(code, 0);
    // An ExternalSecret whose ClusterSecretStore is nowhere produces nothing.
    let (code, report) = json_report(&[
        "--inventory",
        &format!("{}/externalsecret.yaml", fixture("external-secret")),
        &format!("{}/deployment.yaml", fixture("external-secret")),
    ]);
    assert_eq!(code, 1);
    assert_eq!(findings(&report, "enforce").len(), 2, "{report:#}");
    for f in report["findings"].as_array().unwrap() {
        let message = f["message"].as_str().unwrap();
        assert!(
            message.contains("ExternalSecret orders-db would produce")
                && message.contains("ClusterSecretStore vault does not exist"),
            "{message}"
        );
    }
}

#[test]
fn each_rule_family_is_reported_with_file_line_and_path() {
    let cases = [
        (
            "missing-secret",
            (
                "deployment.yaml:20",
                "secret-ref",
                "spec.template.spec.volumes[0].secret",
            ),
        ),
        (
            "placeholder-image",
            (
                "deployment.yaml:14",
                "placeholder-image",
                "spec.template.spec.containers[0].image",
            ),
        ),
        (
            "root-container",
            (
                "pod.yaml:8",
                "root-container",
                "spec.containers[0].securityContext.runAsNonRoot",
            ),
        ),
    ];
    for (dir, (at, rule, path)) in cases {
        let (code, report) = json_report(&[&fixture(dir)]);
        assert_eq!(code, 1, "{dir}");
        assert_eq!(
            findings(&report, "enforce"),
            vec![(at.to_string(), rule.to_string(), path.to_string())],
            "{dir}"
        );
    }
    // The text format: one line per violation (message, value and fix, as the denial has them),
    // then the summary.
    let output = scan(&[&fixture("missing-secret")]);
    let text = stdout(&output);
    let first = text.lines().next().unwrap();
    assert!(
        first.ends_with("deployment.yaml:20:11 Deployment/edge/gateway secret-ref spec.template.spec.volumes[0].secret: secret \"gateway-client-tls\" not found in namespace \"edge\", and no ExternalSecret, SealedSecret or Certificate produces it (checked: the scanned manifests) (value: \"gateway-client-tls\"). Fix: create Secret \"gateway-client-tls\" in namespace \"edge\" (or what produces it) before this workload, or fix the name."),
        "{first}"
    );
    assert!(
        text.lines()
            .last()
            .unwrap()
            .starts_with("scanned 1 file(s), 1 document(s), 1 object(s)"),
        "{text}"
    );
}

#[test]
fn a_parse_error_is_located_and_the_rest_is_still_scanned() {
    let (code, report) = json_report(&[&fixture("parse-error")]);
    assert_eq!(code, 2);
    let errors = report["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1);
    assert!(errors[0]["file"].as_str().unwrap().ends_with("mixed.yaml"));
    assert_eq!(errors[0]["line"], 15);
    // The document after the broken one is evaluated.
    assert_eq!(
        findings(&report, "enforce"),
        vec![(
            "mixed.yaml:23".into(),
            "root-container".into(),
            "spec.containers[0].securityContext.runAsNonRoot".into()
        )]
    );
    assert_eq!(report["summary"]["objects"], 2);
}

#[test]
fn duplicate_keys_are_reported() {
    let output = scan(&[&fixture("duplicate-keys")]);
    assert_eq!(output.status.code(), Some(2));
    let text = stdout(&output);
    // At the repeated key's own line, naming the first.
    assert!(text.contains("deployment.yaml:15: error: "), "{text}");
    assert!(text.contains("(first at line 14)"), "{text}");
    assert!(text.contains("duplicate key \"image\""), "{text}");
}

#[test]
fn stdin_is_scanned_like_a_file() {
    let rendered = std::fs::read(format!("{}/rendered.yaml", fixture("clean-kustomize"))).unwrap();
    let bad = std::fs::read(format!("{}/deployment.yaml", fixture("placeholder-image"))).unwrap();
    let mut input = rendered.clone();
    input.extend_from_slice(b"\n---\n");
    input.extend_from_slice(&bad);
    let mut child = Command::new(BIN)
        .args(["scan", "--format", "json", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&input).unwrap();
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(1));
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    let enforce = findings(&report, "enforce");
    assert_eq!(enforce.len(), 1);
    // The bad document starts after the rendered set, a blank line and the `---` marker; its
    // image is on its 14th line.
    let line = String::from_utf8_lossy(&rendered).lines().count() + 3 + 13;
    assert_eq!(enforce[0].0, format!("<stdin>:{line}"), "{enforce:?}");
}

#[test]
fn objects_without_a_namespace_go_to_the_given_one() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("set.yaml"),
        "apiVersion: v1\nkind: Secret\nmetadata: {name: creds}\nstringData: {token: x}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  securityContext: {runAsNonRoot: true, runAsUser: 1000}\n  containers:\n  - name: a\n    image: ghcr.io/acme/a:1\n    envFrom: [{secretRef: {name: creds}}]\n",
    )
    .unwrap();
    let (code, report) = json_report(&["--namespace", "team-a", dir.path().to_str().unwrap()]);
    assert_eq!(code, 0, "{report:#}");
    // The Pod explicitly elsewhere cannot see it.
    std::fs::write(
        dir.path().join("other.yaml"),
        "apiVersion: v1\nkind: Pod\nmetadata: {name: q, namespace: team-b}\nspec:\n  securityContext: {runAsNonRoot: true, runAsUser: 1000}\n  containers:\n  - name: a\n    image: ghcr.io/acme/a:1\n    envFrom: [{secretRef: {name: creds}}]\n",
    )
    .unwrap();
    let (code, report) = json_report(&["--namespace", "team-a", dir.path().to_str().unwrap()]);
    assert_eq!(code, 1);
    let message = report["findings"][0]["message"].as_str().unwrap();
    assert!(
        message.contains("exists in namespace \"team-a\""),
        "{message}"
    );
}

#[test]
fn warn_mode_reports_without_failing() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.yaml");
    std::fs::write(&config, "mode: warn\n").unwrap();
    let (code, report) = json_report(&[
        "--config",
        config.to_str().unwrap(),
        &fixture("placeholder-image"),
    ]);
    assert_eq!(code, 0);
    assert_eq!(findings(&report, "warn").len(), 1);
    assert_eq!(report["summary"]["exitCode"], 0);
}

#[test]
fn json_schema_is_stable() {
    let (_, report) = json_report(&[&fixture("root-container")]);
    assert_eq!(report["version"], 1);
    let keys: Vec<&String> = report["summary"].as_object().unwrap().keys().collect();
    assert_eq!(
        keys,
        [
            "documents",
            "enforce",
            "errors",
            "exempt",
            "exitCode",
            "files",
            "notice",
            "objects",
            "skippedEmpty",
            "skippedNotKubernetes",
            "skippedPatches",
            "warn"
        ]
    );
    let finding = report["findings"][0].as_object().unwrap();
    let keys: Vec<&String> = finding.keys().collect();
    assert_eq!(
        keys,
        [
            "apiVersion",
            "column",
            "file",
            "fix",
            "kind",
            "level",
            "line",
            "message",
            "name",
            "namespace",
            "path",
            "rule",
            "value"
        ]
    );
}

#[test]
fn sarif_validates_against_the_2_1_0_schema() {
    let root = fixture("");
    let output = scan(&["--format", "sarif", &root]);
    assert_eq!(
        output.status.code(),
        Some(2),
        "parse-error and duplicate-keys are in the set"
    );
    let sarif: Value = serde_json::from_slice(&output.stdout).unwrap();
    let errors = common::sarif_errors(&sarif);
    assert!(errors.is_empty(), "SARIF invalid: {errors:#?}");
    // The schema really checks: a broken document is rejected.
    let mut broken = sarif.clone();
    broken["runs"][0]["results"][0]["level"] = Value::from("fatal");
    assert!(!common::sarif_errors(&broken).is_empty());
    let run = &sarif["runs"][0];
    let rules: Vec<&str> = run["tool"]["driver"]["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        rules,
        [
            "secret-ref",
            "placeholder-image",
            "root-container",
            "plaintext-kafka",
            "placeholder-secret",
            "secret-in-use",
            "duplicate-object",
            "not-in-kustomization",
            "invalid-manifest"
        ]
    );
    let results = run["results"].as_array().unwrap();
    let placeholder = results
        .iter()
        .find(|r| r["ruleId"] == "placeholder-image")
        .unwrap();
    assert_eq!(placeholder["level"], "error");
    assert_eq!(placeholder["ruleIndex"], 1);
    let location = &placeholder["locations"][0]["physicalLocation"];
    assert!(
        location["artifactLocation"]["uri"]
            .as_str()
            .unwrap()
            .ends_with("placeholder-image/deployment.yaml")
    );
    // At the image itself, relative to the directory scan ran in, tracked by fingerprint.
    assert_eq!(location["region"]["startLine"], 14);
    assert_eq!(location["region"]["startColumn"], 11);
    assert_eq!(location["artifactLocation"]["uriBaseId"], "SRCROOT");
    assert!(
        run["originalUriBaseIds"]["SRCROOT"]["uri"]
            .as_str()
            .unwrap()
            .starts_with("file:///")
    );
    let fingerprint = placeholder["partialFingerprints"]["applyguardFinding/v1"]
        .as_str()
        .unwrap();
    assert_eq!(fingerprint.len(), 16);
    assert!(results.iter().any(|r| r["ruleId"] == "invalid-manifest"
        && r["locations"][0]["physicalLocation"]["region"]["startLine"] == 15));
}

#[test]
fn exit_codes() {
    assert_eq!(scan(&[&fixture("clean-kustomize")]).status.code(), Some(0));
    assert_eq!(scan(&[&fixture("root-container")]).status.code(), Some(1));
    assert_eq!(scan(&[&fixture("parse-error")]).status.code(), Some(2));
    let missing = scan(&[&fixture("no-such-dir")]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(stdout(&missing).contains("no-such-dir"));
    // Bad arguments and bad configuration are 2 as well, with the reason on stderr.
    let none = Command::new(BIN).arg("scan").output().unwrap();
    assert_eq!(none.status.code(), Some(2));
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("c.yaml");
    std::fs::write(&config, "rules: {nope: {}}\n").unwrap();
    let bad = scan(&[
        "--config",
        config.to_str().unwrap(),
        &fixture("clean-kustomize"),
    ]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("nope"));
    let bad_format = scan(&["--format", "xml", &fixture("clean-kustomize")]);
    assert_eq!(bad_format.status.code(), Some(2));
}

/// A repository shaped like the audited trading platform: Ingresses, ExternalSecrets whose
/// ClusterSecretStore is nowhere, a producer defined twice (once without a key a Deployment
/// reads), a CHANGE_ME Secret template and an Argo Rollout. Every finding at its file and line.
#[test]
fn the_audited_repository_shape_is_caught_file_by_file() {
    let (code, report) = json_report(&[&fixture("audit-repo")]);
    assert_eq!(code, 1, "{report:#}");
    let mut got = findings(&report, "enforce");
    got.sort();
    // Each at its field: the env entry's secretKeyRef, the store reference, each definition's
    // metadata.name, the TLS entry, the container, the Secret's keys.
    let want = [
        (
            "deployments.yaml:21",
            "secret-ref",
            "spec.template.spec.containers[0].env[0].valueFrom.secretKeyRef",
        ),
        (
            "externalsecrets.yaml:10",
            "secret-ref",
            "spec.secretStoreRef",
        ),
        (
            "externalsecrets.yaml:19",
            "duplicate-object",
            "metadata.name",
        ),
        (
            "feast-offline-store.yaml:5",
            "duplicate-object",
            "metadata.name",
        ),
        ("ingresses.yaml:13", "secret-ref", "spec.tls[0].secretName"),
        (
            "rollout.yaml:20",
            "root-container",
            "spec.template.spec.containers[0].securityContext.runAsNonRoot",
        ),
        (
            "rollout.yaml:25",
            "secret-ref",
            "spec.template.spec.containers[0].env[0].valueFrom.secretKeyRef",
        ),
        (
            "secret-template.yaml:10",
            "placeholder-secret",
            "stringData.api-key",
        ),
        (
            "secret-template.yaml:11",
            "placeholder-secret",
            "stringData.api-secret",
        ),
    ];
    let want: Vec<(String, String, String)> = want
        .iter()
        .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
        .collect();
    assert_eq!(got, want);
    let message = |file: &str, rule: &str| -> String {
        report["findings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["file"].as_str().unwrap().ends_with(file) && f["rule"] == rule)
            .map(|f| f["message"].as_str().unwrap().to_string())
            .unwrap()
    };
    // The duplicated producer: only the key both definitions declare counts.
    assert!(
        message("deployments.yaml", "secret-ref")
            .contains("with keys \"password\", not \"username\"")
    );
    assert!(
        message("rollout.yaml", "secret-ref")
            .contains("ClusterSecretStore aether-vault does not exist")
    );
    let duplicate = message("feast-offline-store.yaml", "duplicate-object");
    assert!(
        duplicate.contains("externalsecrets.yaml:19")
            && duplicate.contains("feast-offline-store.yaml:5"),
        "{duplicate}"
    );
    // No value of the Secret template is in the report.
    let text = report.to_string();
    assert!(!text.contains("CHANGE_ME"), "{text}");
    // The ingress-shim Ingress and the key both definitions declare are notices, not violations.
    let notices = findings(&report, "notice");
    assert_eq!(notices.len(), 2, "{notices:?}");
}

/// An empty file, or the empty stdin of a failed `kubectl kustomize ... |`, is unusable input.
#[test]
fn empty_input_is_an_error_not_a_pass() {
    use std::io::Write;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_applyguard"))
        .args(["scan", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"").unwrap();
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        text.starts_with("<stdin>: error: no documents to scan"),
        "{text}"
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("empty.yaml"), "# nothing yet\n---\n").unwrap();
    let output = scan(&[dir.path().to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2), "{}", stdout(&output));
    // A file with only non-Kubernetes documents (a kustomization) is not empty input.
    std::fs::write(
        dir.path().join("kustomization.yaml"),
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n",
    )
    .unwrap();
    assert_eq!(scan(&[dir.path().to_str().unwrap()]).status.code(), Some(0));
}

/// A kustomize tree scanned as files: base, two overlays whose patch files (strategic merge,
/// `patches`, JSON 6902) are partial objects, and a directory no kustomization lists.
#[test]
fn a_kustomize_tree_is_read_as_kustomize_reads_it() {
    let (code, report) = json_report(&[&fixture("kustomize-tree")]);
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(report["summary"]["skippedPatches"], 3);
    assert_eq!(
        report["summary"]["objects"], 2,
        "base's Deployment and Secret"
    );
    let findings = report["findings"].as_array().unwrap();
    assert_eq!(findings.len(), 1, "{findings:#?}");
    assert_eq!(findings[0]["rule"], "not-in-kustomization");
    assert_eq!(findings[0]["level"], "notice");
    assert!(
        findings[0]["file"]
            .as_str()
            .unwrap()
            .ends_with("legacy/old-deployment.yaml")
    );
    // The same unlisted file scanned on its own is evaluated.
    let (code, report) = json_report(&[&format!(
        "{}/legacy/old-deployment.yaml",
        fixture("kustomize-tree")
    )]);
    assert_eq!(code, 1);
    assert!(!findings_of(&report, "placeholder-image").is_empty());
    // What the tree scan spares: the same patch scanned on its own, as a whole object, is a
    // container without an image running as root.
    let (code, report) = json_report(&[&format!(
        "{}/overlays/staging/resources-patch.yaml",
        fixture("kustomize-tree")
    )]);
    assert_eq!(code, 1);
    assert!(!findings_of(&report, "placeholder-image").is_empty());
}

fn findings_of(report: &Value, rule: &str) -> Vec<Value> {
    report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["rule"] == rule)
        .cloned()
        .collect()
}

/// `--kustomize`: each overlay is built (kubectl kustomize) and what it deploys is scanned, with
/// findings placed in the source files. A patch that brings in a placeholder image is caught,
/// which reading the files alone cannot do.
#[test]
fn kustomize_builds_are_scanned_and_traced_to_their_files() {
    if Command::new("kubectl")
        .args(["version", "--client"])
        .output()
        .is_err()
    {
        eprintln!("SKIPPED: kubectl is not installed; --kustomize not exercised");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("tree");
    let copy = Command::new("cp")
        .args(["-r", &fixture("kustomize-tree"), tree.to_str().unwrap()])
        .status()
        .unwrap();
    assert!(copy.success());
    let patch = tree.join("overlays/staging/resources-patch.yaml");
    let text = std::fs::read_to_string(&patch).unwrap().replace(
        "limits: {memory: 256Mi}",
        "limits: {memory: 256Mi}\n          image: ghcr.io/your-org/checkout:staging",
    );
    std::fs::write(&patch, text).unwrap();
    // As files: the patch is a patch, nothing is wrong.
    let (code, _) = json_report(&[tree.to_str().unwrap()]);
    assert_eq!(code, 0);
    let (code, report) = json_report(&["--kustomize", tree.to_str().unwrap()]);
    assert_eq!(code, 1, "{report:#}");
    let images = findings_of(&report, "placeholder-image");
    assert_eq!(
        images.len(),
        1,
        "only the staging build has it: {images:#?}"
    );
    let finding = &images[0];
    assert!(
        finding["file"]
            .as_str()
            .unwrap()
            .ends_with("base/deployment.yaml"),
        "{finding}"
    );
    assert_eq!(finding["line"], 16, "the base's image line");
    assert_eq!(finding["value"], "ghcr.io/your-org/checkout:staging");
    assert!(
        finding["message"]
            .as_str()
            .unwrap()
            .contains("[as built by kustomize from ")
            && finding["message"]
                .as_str()
                .unwrap()
                .contains("overlays/staging]"),
        "{finding}"
    );
    // The unlisted directory still gets its notice; the builds are not duplicates of each other.
    assert_eq!(findings_of(&report, "not-in-kustomization").len(), 1);
    assert!(findings_of(&report, "duplicate-object").is_empty());
    // A build that fails is unusable input, naming the directory.
    std::fs::write(
        tree.join("overlays/prod/kustomization.yaml"),
        "resources: [../../nowhere]\n",
    )
    .unwrap();
    let output = scan(&["--kustomize", tree.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2), "{}", stdout(&output));
    assert!(
        stdout(&output).contains("overlays/prod"),
        "{}",
        stdout(&output)
    );
}

/// Locations in JSON input and in a List: the finding points at the field, not the file's top.
#[test]
fn findings_in_json_and_lists_are_placed_at_their_field() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("pod.json"),
        "{\n  \"apiVersion\": \"v1\",\n  \"kind\": \"Pod\",\n  \"metadata\": {\"name\": \"p\", \"namespace\": \"shop\"},\n  \"spec\": {\n    \"securityContext\": {\"runAsNonRoot\": true, \"runAsUser\": 1000},\n    \"containers\": [\n      {\"name\": \"a\", \"image\": \"ghcr.io/your-org/a:1\"}\n    ]\n  }\n}\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("list.yaml"),
        "apiVersion: v1\nkind: List\nitems:\n  - apiVersion: v1\n    kind: ConfigMap\n    metadata: {name: c, namespace: shop}\n  - apiVersion: v1\n    kind: Pod\n    metadata: {name: q, namespace: shop}\n    spec:\n      securityContext: {runAsNonRoot: true, runAsUser: 1000}\n      containers: [{name: b, image: registry.example.com/b:1}]\n",
    )
    .unwrap();
    let (code, report) = json_report(&[dir.path().to_str().unwrap()]);
    assert_eq!(code, 1, "{report:#}");
    let mut placed: Vec<(String, u64, u64)> = findings_of(&report, "placeholder-image")
        .iter()
        .map(|f| {
            (
                f["file"]
                    .as_str()
                    .unwrap()
                    .rsplit('/')
                    .next()
                    .unwrap()
                    .to_string(),
                f["line"].as_u64().unwrap(),
                f["column"].as_u64().unwrap(),
            )
        })
        .collect();
    placed.sort();
    assert_eq!(
        placed,
        [
            ("list.yaml".to_string(), 12, 30),
            ("pod.json".to_string(), 8, 21)
        ]
    );
}

/// Definitions merge only within one set: the scanned files replace what --inventory had,
/// sibling overlays are separate builds, and a duplicate whose keys are decided at run time
/// leaves the keys unknown rather than missing.
#[test]
fn sets_are_kept_apart() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let write = |file: &str, text: &str| {
        let path = root.join(file);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    };
    let reader = |key: &str| {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: reader-{key}, namespace: shop}}\nspec:\n  securityContext: {{runAsNonRoot: true, runAsUser: 1000}}\n  containers:\n    - name: a\n      image: ghcr.io/acme/a:1\n      env: [{{name: X, valueFrom: {{secretKeyRef: {{name: db, key: {key}}}}}}}]\n"
        )
    };
    write(
        "inventory/db.yaml",
        "apiVersion: v1\nkind: Secret\nmetadata: {name: db, namespace: shop}\nstringData: {user: u}\n",
    );
    write(
        "app/db.yaml",
        "apiVersion: v1\nkind: Secret\nmetadata: {name: db, namespace: shop}\nstringData: {user: u, password: p}\n",
    );
    write("app/pod.yaml", &reader("password"));
    let inventory = root.join("inventory");
    let app = root.join("app");
    let (code, report) = json_report(&[
        "--inventory",
        inventory.to_str().unwrap(),
        app.to_str().unwrap(),
    ]);
    assert_eq!(
        code, 0,
        "the scanned Secret replaces the inventory's: {report:#}"
    );

    // Two overlays each with their own ConfigMap of one name: two builds, no duplicate.
    write("k/base/kustomization.yaml", "resources: [pod.yaml]\n");
    write(
        "k/base/pod.yaml",
        &reader("user").replace("reader-user", "base"),
    );
    write("k/base/secret.yaml", "");
    for overlay in ["prod", "staging"] {
        write(
            &format!("k/overlays/{overlay}/kustomization.yaml"),
            "resources: [../../base, settings.yaml, ../../../inventory/db.yaml]\n",
        );
        write(
            &format!("k/overlays/{overlay}/settings.yaml"),
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings, namespace: shop}\ndata: {LOG: info}\n",
        );
    }
    let (_, report) = json_report(&[root.join("k").to_str().unwrap()]);
    assert!(
        findings_of(&report, "duplicate-object").is_empty(),
        "{report:#}"
    );

    // An ExternalSecret defined twice, once with dataFrom: its keys are unknown, not missing.
    write(
        "es/a.yaml",
        "apiVersion: external-secrets.io/v1\nkind: ExternalSecret\nmetadata: {name: db, namespace: shop}\nspec:\n  secretStoreRef: {kind: ClusterSecretStore, name: vault}\n  data: [{secretKey: user, remoteRef: {key: db}}]\n",
    );
    write(
        "es/b.yaml",
        "apiVersion: external-secrets.io/v1\nkind: ExternalSecret\nmetadata: {name: db, namespace: shop}\nspec:\n  secretStoreRef: {kind: ClusterSecretStore, name: vault}\n  dataFrom: [{extract: {key: db}}]\n",
    );
    write(
        "es/store.yaml",
        "apiVersion: external-secrets.io/v1\nkind: ClusterSecretStore\nmetadata: {name: vault}\nspec: {provider: {fake: {}}}\n",
    );
    write("es/pod.yaml", &reader("password"));
    let (_, report) = json_report(&[root.join("es").to_str().unwrap()]);
    let refs = findings_of(&report, "secret-ref");
    assert!(
        refs.iter().all(|f| f["level"] == "notice"),
        "unknown keys are a notice: {refs:#?}"
    );
}

/// A Kafka ConfigMap and the StatefulSet that reads it with envFrom: each setting is reported
/// once, at the ConfigMap key where it is fixed, judged with the reader's whole environment (the
/// CONTROLLER listener is plaintext only through the StatefulSet's protocol map); a listener
/// setting with two plaintext listeners is one finding naming both. Scanned without the
/// ConfigMap, the reader keeps its findings (the webhook, which sees one object, does the same).
#[test]
fn a_configmap_setting_is_one_finding_where_it_is_fixed() {
    let (code, report) = json_report(&[&fixture("kafka-configmap")]);
    assert_eq!(code, 1, "{report:#}");
    let got = findings(&report, "enforce");
    assert_eq!(
        got,
        [
            ("kafka-env.yaml:8", "data.KAFKA_CFG_LISTENERS"),
            ("kafka-env.yaml:9", "data.KAFKA_CFG_ADVERTISED_LISTENERS"),
            ("kafka-env.yaml:10", "data.ALLOW_PLAINTEXT_LISTENER"),
        ]
        .map(|(at, path)| (
            at.to_string(),
            "plaintext-kafka".to_string(),
            path.to_string()
        )),
        "{report:#}"
    );
    let listeners = &report["findings"][0];
    assert_eq!(listeners["kind"], "ConfigMap");
    assert_eq!(listeners["name"], "kafka-env");
    assert_eq!(
        listeners["message"],
        "read by StatefulSet kafka, container \"kafka\": KAFKA_CFG_LISTENERS listeners \"PLAINTEXT://:9092\" (PLAINTEXT), \"CONTROLLER://:9093\" (PLAINTEXT) are unencrypted on the network"
    );

    let alone = format!("{}/kafka.yaml", fixture("kafka-configmap"));
    let with_inventory = format!("{}/kafka-env.yaml", fixture("kafka-configmap"));
    let (code, report) = json_report(&["--inventory", &with_inventory, &alone]);
    assert_eq!(code, 1, "{report:#}");
    let got = findings(&report, "enforce");
    assert_eq!(got.len(), 3, "{report:#}");
    assert!(
        got.iter().all(|(at, _, path)| at == "kafka.yaml:21"
            && path == "spec.template.spec.containers[0].envFrom[0].configMapRef"),
        "{got:?}"
    );
}

/// Two Deployments read one ConfigMap key that is plaintext only through their own protocol map;
/// one is exempt. The scan keeps the finding the webhook would deny, once, at the ConfigMap.
#[test]
fn an_exempt_reader_does_not_hide_one_the_webhook_would_deny() {
    let dir = tempfile::tempdir().unwrap();
    let reader = |name: &str, exempt: bool| {
        let annotations = if exempt {
            "  annotations:\n    applyguard.io/exempt: plaintext-kafka\n    applyguard.io/exempt-reason: lab broker\n"
        } else {
            ""
        };
        format!(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {name}\n  namespace: stream\n{annotations}spec:\n  selector: {{matchLabels: {{app: {name}}}}}\n  template:\n    metadata: {{labels: {{app: {name}}}}}\n    spec:\n      securityContext: {{runAsNonRoot: true, runAsUser: 1001}}\n      containers:\n        - name: kafka\n          image: docker.io/bitnami/kafka:3.7.0\n          envFrom: [{{configMapRef: {{name: kafka-env}}}}]\n          env:\n            - {{name: KAFKA_CFG_LISTENER_SECURITY_PROTOCOL_MAP, value: \"INTERNAL:PLAINTEXT\"}}\n"
        )
    };
    std::fs::write(dir.path().join("a-exempt.yaml"), reader("a-exempt", true)).unwrap();
    std::fs::write(dir.path().join("b-plain.yaml"), reader("b-plain", false)).unwrap();
    std::fs::write(
        dir.path().join("kafka-env.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: kafka-env\n  namespace: stream\ndata:\n  KAFKA_CFG_LISTENERS: \"INTERNAL://:9092\"\n",
    )
    .unwrap();
    let (code, report) = json_report(&[dir.path().to_str().unwrap()]);
    assert_eq!(code, 1, "{report:#}");
    let listeners: Vec<&Value> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["rule"] == "plaintext-kafka")
        .collect();
    assert_eq!(listeners.len(), 1, "{report:#}");
    assert_eq!(listeners[0]["level"], "enforce");
    assert_eq!(listeners[0]["kind"], "ConfigMap");
    assert!(
        listeners[0]["message"]
            .as_str()
            .unwrap()
            .starts_with("read by Deployment b-plain, "),
        "{report:#}"
    );
}
