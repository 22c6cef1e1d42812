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
