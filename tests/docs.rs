//! The documentation is true to the code: every flag the pages name exists on a subcommand and
//! every flag a subcommand has is documented, every metric they name is one applyguard
//! registers, and every relative link (with its #anchor) leads somewhere.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const BIN: &str = env!("CARGO_BIN_EXE_applyguard");

/// Flags of other programs that the pages quote (kubectl, curl, kube-apiserver, Kafka's CLI,
/// ingress-nginx), by the program that has them.
const OTHER_TOOLS: &[(&str, &str)] = &[
    ("--server-side", "kubectl apply"),
    ("--dry-run", "kubectl apply"),
    ("--insecure", "curl"),
    ("--cacert", "curl"),
    ("--authorization-mode", "kube-apiserver"),
    ("--bootstrap-server", "Kafka's command-line tools"),
    ("--default-ssl-certificate", "ingress-nginx"),
];

fn pages() -> Vec<PathBuf> {
    let mut pages = vec![
        Path::new(ROOT).join("README.md"),
        Path::new(ROOT).join("SECURITY.md"),
    ];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(Path::new(ROOT).join("docs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.sort();
    pages.extend(docs);
    pages
}

/// Code spans (`...`) of a page, fenced blocks excluded.
fn code_spans(text: &str) -> Vec<String> {
    let mut spans = Vec::new();
    let mut fenced = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            continue;
        }
        let mut parts = line.split('`');
        parts.next();
        while let (Some(inside), Some(_)) = (parts.next(), parts.next()) {
            spans.push(inside.to_string());
        }
    }
    spans
}

/// The subcommands, as `applyguard --help` lists them (a new one is checked without edits here).
fn subcommands() -> Vec<String> {
    let help = Command::new(BIN).arg("--help").output().unwrap();
    let help = String::from_utf8(help.stdout).unwrap();
    help.lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .map(str::to_string)
        .collect()
}

fn subcommand_flags() -> BTreeSet<String> {
    let mut flags = BTreeSet::new();
    let subcommands = subcommands();
    assert!(
        subcommands.iter().any(|c| c == "audit") && subcommands.len() >= 5,
        "{subcommands:?}"
    );
    for sub in &subcommands {
        let help = Command::new(BIN).args([sub, "--help"]).output().unwrap();
        let help = String::from_utf8(help.stdout).unwrap();
        for word in help.split_whitespace() {
            let word = word.trim_end_matches(',');
            let flag: String = word
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
                .collect();
            if flag.starts_with("--") && flag.len() > 2 && flag != "--help" {
                flags.insert(flag);
            }
        }
    }
    flags
}

#[test]
fn every_documented_flag_exists_and_every_flag_is_documented() {
    let ours = subcommand_flags();
    assert!(
        ours.contains("--stale-after") && ours.contains("--format"),
        "{ours:?}"
    );
    let other: BTreeSet<&str> = OTHER_TOOLS.iter().map(|(f, _)| *f).collect();
    let mut documented = BTreeSet::new();
    for page in pages() {
        let text = std::fs::read_to_string(&page).unwrap();
        for span in code_spans(&text) {
            if !span.starts_with("--") {
                continue;
            }
            let flag: String = span
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
                .collect();
            // `--*security-protocol`: a pattern of other programs' flags, not a flag.
            if flag.len() <= 2 || other.contains(flag.as_str()) {
                continue;
            }
            assert!(
                ours.contains(&flag),
                "{} names {flag}, which no applyguard subcommand has (theirs: {ours:?})",
                page.display()
            );
            documented.insert(flag);
        }
    }
    let missing: Vec<&String> = ours.difference(&documented).collect();
    assert!(
        missing.is_empty(),
        "flags no page documents (as a `--flag` code span): {missing:?}"
    );
}

#[test]
fn every_documented_metric_is_registered() {
    let sources: String = [
        "src/metrics.rs",
        "src/server/mod.rs",
        "src/server/handlers.rs",
    ]
    .iter()
    .filter_map(|f| std::fs::read_to_string(Path::new(ROOT).join(f)).ok())
    .collect();
    let mut named = BTreeSet::new();
    for page in pages() {
        let text = std::fs::read_to_string(&page).unwrap();
        for (i, _) in text.match_indices("applyguard_") {
            let name: String = text[i..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            named.insert(name);
        }
    }
    assert!(named.len() >= 8, "{named:?}");
    for name in &named {
        // prometheus-client adds the _total suffix of counters itself.
        let registered = name.strip_suffix("_total").unwrap_or(name);
        assert!(
            sources.contains(&format!("\"{registered}\"")),
            "the docs name {name}, which applyguard does not register"
        );
    }
}

/// GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

fn anchors(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|l| l.starts_with('#'))
        .map(|l| anchor(l.trim_start_matches('#')))
        .collect()
}

#[test]
fn every_relative_link_resolves() {
    let mut checked = 0;
    for page in pages() {
        let text = std::fs::read_to_string(&page).unwrap();
        let dir = page.parent().unwrap();
        for (i, _) in text.match_indices("](") {
            let target: String = text[i + 2..].chars().take_while(|c| *c != ')').collect();
            if target.starts_with("http") || target.starts_with("mailto:") {
                continue;
            }
            let (file, fragment) = match target.split_once('#') {
                Some((f, a)) => (f, Some(a)),
                None => (target.as_str(), None),
            };
            let path = if file.is_empty() {
                page.clone()
            } else {
                dir.join(file)
            };
            assert!(
                path.exists(),
                "{}: link to {target} leads nowhere",
                page.display()
            );
            if let Some(fragment) = fragment {
                let headings = anchors(&std::fs::read_to_string(&path).unwrap());
                assert!(
                    headings.contains(fragment),
                    "{}: no heading #{fragment} in {}",
                    page.display(),
                    path.display()
                );
            }
            checked += 1;
        }
    }
    assert!(checked > 20, "{checked} links");
}
