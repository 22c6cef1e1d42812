//! applyguard obeys its own rules: the project's deploy/ manifests pass `applyguard scan`.

use std::path::Path;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_applyguard");
const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn scan(args: &[&str]) -> (i32, String) {
    let output = Command::new(BIN).arg("scan").args(args).output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.code().unwrap_or(-1), text)
}

#[test]
fn deploy_base_passes_scan() {
    // The base mounts the Secret that every overlay adds; supply it as existing elsewhere.
    let (code, text) = scan(&[
        "--inventory",
        &format!("{ROOT}/tests/fixtures/deploy-tls-secret.yaml"),
        &format!("{ROOT}/deploy/base"),
    ]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("0 violation(s) in enforce mode"), "{text}");
    // Without it the scan really fails: the check is live.
    let (code, text) = scan(&[&format!("{ROOT}/deploy/base")]);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("\"applyguard-tls\" not found"), "{text}");
}

fn have(tool: &str) -> bool {
    Command::new(tool)
        .arg("version")
        .arg("--client")
        .output()
        .is_ok_and(|o| o.status.success())
        || Command::new(tool)
            .arg("version")
            .output()
            .is_ok_and(|o| o.status.success())
}

#[test]
fn every_rendered_overlay_passes_scan() {
    if !have("kubectl") && !have("kustomize") {
        // `make test` machines have kubectl; say so loudly where they do not.
        eprintln!("SKIPPED: neither kubectl nor kustomize is installed; overlays not rendered");
        return;
    }
    let out = tempfile::tempdir().unwrap();
    let status = Command::new(format!("{ROOT}/scripts/render-deploy.sh"))
        .env("APPLYGUARD", BIN)
        .arg("--out")
        .arg(out.path())
        .status()
        .unwrap();
    assert!(status.success(), "render-deploy.sh failed");
    let mut rendered: Vec<_> = std::fs::read_dir(out.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    rendered.sort();
    let names: Vec<String> = rendered
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().to_string())
        .collect();
    for overlay in ["cert-manager", "self-signed", "warn"] {
        assert!(
            names.contains(&format!("{overlay}.yaml")),
            "{overlay} not rendered: {names:?}"
        );
    }
    // One overlay per scan: each is a whole install, and must not borrow another's Secret.
    for file in &rendered {
        let (code, text) = scan(&[file.to_str().unwrap()]);
        assert_eq!(code, 0, "{}: {text}", file.display());
        assert!(Path::new(file).exists());
    }
}

/// Renders a kustomization written into a scratch directory under target/ (kustomize only
/// follows relative paths), returning its objects.
fn render(kustomization: &str) -> Vec<serde_json::Value> {
    let scratch = tempfile::tempdir_in(format!("{ROOT}/target")).unwrap();
    std::fs::write(scratch.path().join("kustomization.yaml"), kustomization).unwrap();
    let out = Command::new("kubectl")
        .args(["kustomize", scratch.path().to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    applyguard::inventory::manifests::parse_documents(&text, Path::new("rendered")).unwrap()
}

/// The ValidatingWebhookConfiguration's webhooks of a rendered kustomization.
fn rendered_webhooks(kustomization: &str) -> Vec<serde_json::Value> {
    let vwc = render(kustomization)
        .into_iter()
        .find(|o| o["kind"] == "ValidatingWebhookConfiguration")
        .unwrap();
    vwc["webhooks"].as_array().unwrap().clone()
}

#[test]
fn secrets_have_their_own_webhook_that_fails_open_and_can_be_removed() {
    if !have("kubectl") {
        eprintln!("SKIPPED: kubectl is not installed; overlays not rendered");
        return;
    }
    let hooks = rendered_webhooks("resources:\n  - ../../deploy/overlays/cert-manager\n");
    let names: Vec<&str> = hooks.iter().map(|h| h["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "validate.applyguard.io",
            "secrets.validate.applyguard.io",
            "deletions.validate.applyguard.io"
        ]
    );
    assert_eq!(hooks[0]["failurePolicy"], "Fail");
    assert_eq!(hooks[1]["failurePolicy"], "Ignore");
    // The deletion guard never blocks a delete when applyguard is down.
    assert_eq!(hooks[2]["failurePolicy"], "Ignore");
    let operations: Vec<&str> = hooks[2]["rules"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r["operations"].as_array().unwrap())
        .map(|o| o.as_str().unwrap())
        .collect();
    assert!(operations.iter().all(|o| *o == "DELETE"), "{operations:?}");
    let resources = |hook: &serde_json::Value| -> Vec<String> {
        hook["rules"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|r| r["resources"].as_array().unwrap().clone())
            .map(|r| r.as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(resources(&hooks[1]), ["secrets"]);
    assert_eq!(
        resources(&hooks[2]),
        [
            "secrets",
            "externalsecrets",
            "sealedsecrets",
            "certificates"
        ]
    );
    let main = resources(&hooks[0]);
    assert!(!main.contains(&"secrets".to_string()), "{main:?}");
    for kind in ["ingresses", "gateways", "externalsecrets", "rollouts"] {
        assert!(
            main.contains(&kind.to_string()),
            "{kind} not intercepted: {main:?}"
        );
    }
    let without = rendered_webhooks(
        "resources:\n  - ../../deploy/overlays/cert-manager\ncomponents:\n  - ../../deploy/components/without-secrets\n",
    );
    let names: Vec<&str> = without
        .iter()
        .map(|h| h["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["validate.applyguard.io", "deletions.validate.applyguard.io"]
    );
    // No Secret, and so no Secret value, reaches applyguard through the deletions entry either.
    assert_eq!(
        resources(&without[1]),
        ["externalsecrets", "sealedsecrets", "certificates"]
    );
}

/// The background audit's component: serve gets --audit-interval, and base's ClusterRole with
/// the component's covers list on every kind the audit lists.
#[test]
fn the_audit_component_turns_the_audit_on_with_the_rbac_it_needs() {
    if !have("kubectl") {
        eprintln!("SKIPPED: kubectl is not installed; the audit component is not rendered");
        return;
    }
    let objects = render(
        "resources:\n  - ../../deploy/overlays/cert-manager\ncomponents:\n  - ../../deploy/components/audit\n",
    );
    let deployment = objects
        .iter()
        .find(|o| o["kind"] == "Deployment" && o["metadata"]["name"] == "applyguard")
        .unwrap();
    let args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
        .as_array()
        .unwrap();
    assert!(args.iter().any(|a| a == "--audit-interval=600"), "{args:?}");
    let mut listable: Vec<(String, String)> = Vec::new();
    for role in objects.iter().filter(|o| o["kind"] == "ClusterRole") {
        for rule in role["rules"].as_array().unwrap() {
            if !rule["verbs"]
                .as_array()
                .unwrap()
                .iter()
                .any(|v| v == "list")
            {
                continue;
            }
            for group in rule["apiGroups"].as_array().unwrap() {
                for resource in rule["resources"].as_array().unwrap() {
                    listable.push((
                        group.as_str().unwrap().to_string(),
                        resource.as_str().unwrap().to_string(),
                    ));
                }
            }
        }
    }
    for (group, kind) in applyguard::audit::AUDITED {
        let lower = kind.to_lowercase();
        let plural = if lower.ends_with('s') {
            format!("{lower}es")
        } else {
            format!("{lower}s")
        };
        assert!(
            listable.contains(&(group.to_string(), plural.clone())),
            "{group}/{plural} cannot be listed: {listable:?}"
        );
    }
    // The install with the audit on still passes its own scan.
    let file = tempfile::Builder::new().suffix(".json").tempfile().unwrap();
    let list = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": objects});
    std::fs::write(file.path(), list.to_string()).unwrap();
    let (code, text) = scan(&[file.path().to_str().unwrap()]);
    assert_eq!(code, 0, "{text}");
}

/// PolicyReports: the component adds --policy-reports and a ClusterRole that writes only
/// policyreports.wgpolicyk8s.io; base writes nothing at all.
#[test]
fn only_the_policy_reports_component_writes_and_only_policyreports() {
    if !have("kubectl") {
        eprintln!("SKIPPED: kubectl is not installed; the components are not rendered");
        return;
    }
    let render = |components: &str| {
        render(&format!(
            "resources:\n  - ../../deploy/overlays/cert-manager\n{components}"
        ))
    };
    let writes = |objects: &[serde_json::Value]| -> Vec<String> {
        let mut found = Vec::new();
        for role in objects
            .iter()
            .filter(|o| o["kind"] == "ClusterRole" || o["kind"] == "Role")
        {
            for rule in role["rules"].as_array().unwrap() {
                let verbs: Vec<&str> = rule["verbs"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_str().unwrap())
                    .collect();
                if verbs.iter().any(|v| !["get", "list", "watch"].contains(v)) {
                    for resource in rule["resources"].as_array().unwrap() {
                        found.push(resource.as_str().unwrap().to_string());
                    }
                }
            }
        }
        found
    };
    assert!(writes(&render("")).is_empty());
    let objects = render(
        "components:\n  - ../../deploy/components/audit\n  - ../../deploy/components/policy-reports\n",
    );
    assert_eq!(writes(&objects), ["policyreports"]);
    let args = objects
        .iter()
        .find(|o| o["kind"] == "Deployment")
        .unwrap()["spec"]["template"]["spec"]["containers"][0]["args"]
        .clone();
    let args: Vec<&str> = args
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert!(
        args.contains(&"--audit-interval=600") && args.contains(&"--policy-reports"),
        "{args:?}"
    );
}
