//! What the suite checks, in order, against one control plane: install deploy/ as shipped, then
//! the shared matrix (tests/kind/cases.tsv) and the scenarios only a real API server can show.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::cluster::ControlPlane;
use crate::kubectl::{self, Out};
use crate::webhook::{self, Serve};
use crate::{Suite, root};

/// The scenarios, by the name `cargo test --test e2e -- NAME` selects. Installing always runs.
pub const NAMES: &[&str] = &[
    "producers",
    "matrix",
    "warnings",
    "secret-lifecycle",
    "existing-objects",
    "system-namespaces",
    "outage",
    "watch-cache",
    "rotation",
    "warn-overlay",
];

pub struct Env {
    pub plane: ControlPlane,
    pub serve: Serve,
    pub admin: PathBuf,
    pub base: Vec<Value>,
}

impl Env {
    pub fn kubectl(&self, args: &[&str]) -> Out {
        kubectl::run(&self.admin, args)
    }
    pub fn kubectl_in(&self, stdin: &str, args: &[&str]) -> Out {
        kubectl::run_with_stdin(&self.admin, args, Some(stdin))
    }
    pub fn minor(&self) -> u32 {
        minor(&self.plane.version)
    }
    /// A case manifest as this API server serves it: CronJobs are batch/v1 from 1.21 only,
    /// batch/v1beta1 before (the same fields, so the same paths and verdicts).
    pub fn case_text(&self, file: &str) -> Result<String, String> {
        let text = std::fs::read_to_string(case(file)).map_err(|e| format!("{file}: {e}"))?;
        Ok(if self.minor() < 21 && text.contains("\nkind: CronJob\n") {
            text.replace("\napiVersion: batch/v1\n", "\napiVersion: batch/v1beta1\n")
        } else {
            text
        })
    }
    /// `kubectl VERB -n NS -f -` of a case manifest under another name, so that it is new to
    /// the API server (kubectl sends nothing for an object it finds unchanged).
    pub fn with_renamed_case(&self, verb: &[&str], ns: &str, file: &str, name: &str) -> Out {
        let text = match self.case_text(file) {
            Ok(text) => text,
            Err(e) => {
                return Out {
                    code: None,
                    stderr: e,
                    ..Out::default()
                };
            }
        };
        let mut objects: Vec<Value> = Vec::new();
        for doc in serde_yaml_ng::Deserializer::from_str(&text) {
            match <Value as serde::Deserialize>::deserialize(doc) {
                Ok(mut v) if !v.is_null() => {
                    v["metadata"]["name"] = Value::from(name);
                    objects.push(v);
                }
                Ok(_) => {}
                Err(e) => {
                    return Out {
                        code: None,
                        stderr: format!("{file}: {e}"),
                        ..Out::default()
                    };
                }
            }
        }
        let mut args = verb.to_vec();
        args.extend(["-n", ns, "-f", "-"]);
        let list = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": objects});
        self.kubectl_in(&list.to_string(), &args)
    }
    /// `kubectl VERB -n NS -f -` with the case manifest on stdin.
    pub fn with_case(&self, verb: &[&str], ns: &str, file: &str) -> Out {
        match self.case_text(file) {
            Ok(text) => {
                let mut args = verb.to_vec();
                args.extend(["-n", ns, "-f", "-"]);
                self.kubectl_in(&text, &args)
            }
            Err(e) => Out {
                code: None,
                stderr: e,
                ..Out::default()
            },
        }
    }
}

pub fn cases_dir() -> PathBuf {
    root().join("tests/kind/manifests/cases")
}

pub fn case(file: &str) -> String {
    cases_dir().join(file).display().to_string()
}

fn e2e_manifest(file: &str) -> String {
    root()
        .join("tests/e2e/manifests")
        .join(file)
        .display()
        .to_string()
}

// What kubectl printed, judged the way a person reads it. Each returns the output when it is
// not what is expected, for the failure report.

/// Refused by applyguard: kubectl's own "Error from server (Forbidden) ... admission webhook
/// "validate.applyguard.io" (or "secrets.validate.applyguard.io") denied the request:" followed by
/// "[rule] path" and `text`.
pub fn denied(out: &Out, rule: &str, path: &str, text: &str) -> Result<(), String> {
    let err = out.stderr.as_str();
    let ok = !out.ok()
        && err.contains("Error from server (Forbidden)")
        && denied_by_webhook(out, rule, path, text).is_ok();
    if ok { Ok(()) } else { Err(out.show()) }
}

/// Refused by applyguard, whatever kubectl wraps it in (`kubectl set env` prints "error: failed
/// to patch env update to pod template: admission webhook ... denied the request").
pub fn denied_by_webhook(out: &Out, rule: &str, path: &str, text: &str) -> Result<(), String> {
    let err = out.stderr.as_str();
    let ok = !out.ok()
        && err.contains("validate.applyguard.io\" denied the request")
        && err.contains(&format!("[{rule}] {path}"))
        && err.contains("Fix: ")
        && (text.is_empty() || err.contains(text));
    if ok { Ok(()) } else { Err(out.show()) }
}

/// Applied, with a "Warning: rule path: ..." line containing `text`.
pub fn warned(out: &Out, rule: &str, path: &str, text: &str) -> Result<(), String> {
    // A finding too long for one 256-rune warning names its field from the pod spec on.
    let prefixes = [path, applyguard::warnings::short_path(path)]
        .map(|path| format!("Warning: {rule} {path}: "));
    let ok = out.ok()
        && out.warnings().iter().any(|w| {
            prefixes.iter().any(|prefix| w.starts_with(prefix))
                && w.contains(text)
                && w.chars().count() <= "Warning: ".len() + 256
        });
    if ok { Ok(()) } else { Err(out.show()) }
}

/// Applied, and no Warning line.
pub fn clean(out: &Out) -> Result<(), String> {
    if out.ok() && out.warnings().is_empty() {
        Ok(())
    } else {
        Err(out.show())
    }
}

/// Failed, printing `text`.
pub fn fails_with(out: &Out, text: &str) -> Result<(), String> {
    if !out.ok() && out.all().contains(text) {
        Ok(())
    } else {
        Err(out.show())
    }
}

fn succeeded(out: &Out) -> Result<(), String> {
    if out.ok() { Ok(()) } else { Err(out.show()) }
}

fn absent(env: &Env, namespace: &str, file: &str) -> Result<(), String> {
    let out = env.with_case(&["get"], namespace, file);
    if !out.ok() && out.stderr.contains("NotFound") {
        Ok(())
    } else {
        Err(out.show())
    }
}

pub fn run(
    suite: &mut Suite,
    plane: ControlPlane,
    work: &Path,
    filter: Option<&str>,
) -> Result<(), String> {
    let mut env = install(suite, plane, work)?;
    let selected = |name: &str| filter.is_none_or(|f| name.contains(f));
    let started = Instant::now();
    for name in NAMES {
        if !selected(name) {
            continue;
        }
        println!("\n=== {name}");
        let t = Instant::now();
        match *name {
            "producers" => producers(suite, &env),
            "matrix" => matrix(suite, &env),
            "warnings" => warnings(suite, &env),
            "secret-lifecycle" => secret_lifecycle(suite, &env),
            "existing-objects" => existing_objects(suite, &env),
            "system-namespaces" => system_namespaces(suite, &env),
            "outage" => outage(suite, &mut env),
            "watch-cache" => watch_cache(suite, &mut env),
            "rotation" => rotation(suite, &env),
            "warn-overlay" => warn_overlay(suite, &env),
            _ => unreachable!("every name in NAMES has a scenario"),
        }?;
        println!("    ({name}: {:.1} s)", t.elapsed().as_secs_f64());
    }
    println!("\nscenarios: {:.0} s", started.elapsed().as_secs_f64());
    if suite.failures() > 0 {
        println!(
            "\n{}--- applyguard serve (last lines of {})\n{}",
            env.plane.tail_logs(),
            env.serve.log.display(),
            env.serve.log_tail(25)
        );
    }
    env.serve.stop();
    Ok(())
}

/// deploy/base rendered by kustomize and applied as shipped; only the webhook's clientConfig
/// is changed (a loopback URL and caBundle instead of the Service).
fn install(suite: &mut Suite, plane: ControlPlane, work: &Path) -> Result<Env, String> {
    println!("\n=== install");
    let admin = plane.admin_kubeconfig.clone();
    // Namespaces and a Deployment that predate applyguard (it may run as root).
    for file in ["namespaces.yaml", "legacy-deployment.yaml"] {
        let path = root().join("tests/kind/manifests/setup").join(file);
        let out = kubectl::run(&admin, &["apply", "-f", &path.display().to_string()]);
        suite.check(
            &format!("before applyguard: {file} applied"),
            out.ok(),
            || out.show(),
        );
    }
    let base = webhook::render(&root().join("deploy/base"))?;
    let server_minor = minor(&plane.version);
    let old_server = server_minor < 21;
    // The webhook's own objects: what a cluster needs for applyguard to decide.
    let (pod_objects, rest): (Vec<&Value>, Vec<&Value>) = base
        .iter()
        .filter(|o| webhook::kind(o) != "ValidatingWebhookConfiguration")
        .partition(|o| matches!(webhook::kind(o), "Deployment" | "PodDisruptionBudget"));
    let out = webhook::apply(&admin, &rest, &[]);
    suite.check(
        "deploy/base's Namespace, ServiceAccount, ClusterRole(Binding), policy ConfigMap and Service accepted",
        out.ok(),
        || out.show(),
    );
    // The background audit's list rights, as deploy/components/audit adds them (serve runs
    // with --audit-interval here, so every scenario runs with the audit going).
    for component in ["audit", "policy-reports"] {
        let rbac = root().join(format!("deploy/components/{component}/rbac.yaml"));
        let out = kubectl::run(&admin, &["apply", "-f", &rbac.display().to_string()]);
        suite.check(
            &format!("deploy/components/{component}'s ClusterRole(Binding) accepted"),
            out.ok(),
            || out.show(),
        );
    }
    // What runs the pods uses newer fields: topologySpreadConstraints.matchLabelKeys (1.25) and
    // nodeTaintsPolicy (1.26), PodDisruptionBudget policy/v1 (1.21). On an older API server
    // kubectl refuses them by name; docs/operations.md says deploy/ as shipped needs 1.26.
    for object in pod_objects {
        let kind = webhook::kind(object);
        let out = webhook::apply(&admin, &[object], &[]);
        let expected: &[&str] = match kind {
            "Deployment" => &["matchLabelKeys", "nodeTaintsPolicy"],
            _ => &["policy/v1"],
        };
        if server_minor >= 26 {
            suite.check(&format!("deploy/base {kind} accepted"), out.ok(), || {
                out.show()
            });
        } else {
            suite.check(
                &format!(
                    "deploy/base {kind} refused by this older API server, naming {}",
                    expected.join(" and ")
                ),
                !out.ok() && expected.iter().all(|e| out.stderr.contains(e)),
                || out.show(),
            );
        }
    }

    let policy = webhook::policy(&base)?;
    let mut serve = Serve::prepare(&plane, work, &policy)?;
    serve.start()?;
    suite.check(
        "applyguard serve, as ServiceAccount applyguard/applyguard with deploy/'s ClusterRoles only (base's, components/audit's and components/policy-reports'), is ready",
        true,
        String::new,
    );
    let forbidden = serve
        .log_tail(200)
        .lines()
        .filter(|l| l.contains("forbidden"))
        .count();
    suite.check(
        "serve's watches met no RBAC refusal",
        forbidden == 0,
        || serve.log_tail(40),
    );
    if old_server {
        let logged = serve
            .log_tail(200)
            .lines()
            .any(|l| l.contains("kubernetes.io/metadata.name") && l.contains("1.21"));
        suite.check(
            "serve says at start that this API server is older than 1.21 and what it does about it",
            logged,
            || serve.log_tail(40),
        );
    }

    let vwc = webhook::loopback_webhook(&base, serve.port, &serve.ca_bundle)?;
    let out = webhook::apply(&admin, &[&vwc], &[]);
    suite.check(
        "ValidatingWebhookConfiguration from deploy/base registered",
        out.ok(),
        || out.show(),
    );
    let env = Env {
        plane,
        serve,
        admin,
        base,
    };
    suite.eventually(
        "the API server calls the webhook (server dry run of a good Pod: allowed, no warning)",
        Duration::from_secs(20),
        || {
            clean(&env.kubectl(&[
                "apply",
                "--dry-run=server",
                "-n",
                "ag-enforce",
                "-f",
                &case("pod-good.yaml"),
            ]))
        },
    );
    Ok(env)
}

/// "v1.20.2" -> 20 (0 when unknown, which counts as old).
pub fn minor(version: &str) -> u32 {
    version
        .trim_start_matches('v')
        .split('.')
        .nth(1)
        .and_then(|m| {
            m.trim_end_matches(|c: char| !c.is_ascii_digit())
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

/// ExternalSecret, SealedSecret, Certificate and Strimzi Kafka CRDs installed while serve
/// runs: serve starts watching them, and what they produce counts.
fn producers(suite: &mut Suite, env: &Env) -> Result<(), String> {
    let out = env.kubectl(&[
        "apply",
        "-f",
        &root()
            .join("tests/kind/manifests/crds")
            .display()
            .to_string(),
    ]);
    suite.check(
        "producer and Strimzi CRDs installed while serve runs",
        out.ok(),
        || out.show(),
    );
    let out = env.kubectl(&[
        "wait",
        "--for",
        "condition=Established",
        "--timeout=30s",
        "crd/externalsecrets.external-secrets.io",
        "crd/sealedsecrets.bitnami.com",
        "crd/certificates.cert-manager.io",
        "crd/kafkas.kafka.strimzi.io",
        "crd/secretstores.external-secrets.io",
        "crd/clustersecretstores.external-secrets.io",
        "crd/rollouts.argoproj.io",
    ]);
    suite.check("CRDs established", out.ok(), || out.show());
    for ns in ["ag-enforce", "ag-warn"] {
        let out = env.kubectl(&["apply", "-n", ns, "-f", &case("secretstore-vault.yaml")]);
        suite.check(
            &format!("SecretStore vault created in {ns}"),
            out.ok(),
            || out.show(),
        );
    }
    // The ExternalSecret's own check needs its store in the cache: the store watch starts when
    // its CRD is established, and the store must have been seen by then.
    for ns in ["ag-enforce", "ag-warn"] {
        suite.eventually(
            &format!("ExternalSecret app-db created in {ns} once its SecretStore is known"),
            Duration::from_secs(15),
            || {
                let out =
                    env.kubectl(&["apply", "-n", ns, "-f", &case("externalsecret-app-db.yaml")]);
                if out.ok() && !out.stderr.contains("Warning:") {
                    Ok(())
                } else {
                    Err(out.show())
                }
            },
        );
    }
    let ns = "ag-enforce";
    suite.eventually(
        "a key the ExternalSecret produces: allowed, with a notice naming the producer",
        Duration::from_secs(15),
        || {
            warned(
                &env.kubectl(&[
                    "apply",
                    "--dry-run=server",
                    "-n",
                    ns,
                    "-f",
                    &case("deployment-externalsecret-password.yaml"),
                ]),
                "secret-ref",
                "spec.template.spec.containers[0].env[0].valueFrom.secretKeyRef",
                "produced by ExternalSecret app-db",
            )
        },
    );
    let out = env.kubectl(&[
        "apply",
        "--dry-run=server",
        "-n",
        ns,
        "-f",
        &case("deployment-externalsecret-username.yaml"),
    ]);
    suite.expect(
        "a key the ExternalSecret drops: denied",
        denied(
            &out,
            "secret-ref",
            "spec.template.spec.containers[0].env[0].valueFrom.secretKeyRef",
            "username",
        ),
    );
    for (producer, consumer, what) in [
        (
            "sealedsecret-api-token.yaml",
            "pod-sealedsecret.yaml",
            "SealedSecret api-token",
        ),
        (
            "certificate-web-tls.yaml",
            "pod-certificate.yaml",
            "Certificate web-tls",
        ),
    ] {
        let out = env.kubectl(&["apply", "-n", ns, "-f", &e2e_manifest(producer)]);
        suite.check(&format!("{what} created"), out.ok(), || out.show());
        suite.eventually(
            &format!("a Pod reading what {what} produces: allowed"),
            Duration::from_secs(15),
            || {
                let out = env.kubectl(&[
                    "apply",
                    "--dry-run=server",
                    "-n",
                    ns,
                    "-f",
                    &e2e_manifest(consumer),
                ]);
                if out.ok()
                    && out
                        .warnings()
                        .iter()
                        .any(|w| w.contains(&format!("produced by {what}")))
                {
                    Ok(())
                } else {
                    Err(out.show())
                }
            },
        );
    }
    let out = env.kubectl(&[
        "apply",
        "--dry-run=server",
        "-n",
        ns,
        "-f",
        &e2e_manifest("pod-sealedsecret-missing-key.yaml"),
    ]);
    suite.expect(
        "a key the SealedSecret does not seal: denied",
        denied(
            &out,
            "secret-ref",
            "spec.containers[0].env[0].valueFrom.secretKeyRef",
            "password",
        ),
    );
    let out = env.kubectl(&[
        "apply",
        "--dry-run=server",
        "-n",
        ns,
        "-f",
        &e2e_manifest("kafka-plaintext.yaml"),
    ]);
    suite.expect(
        "a Strimzi Kafka with a plaintext listener: denied",
        denied(&out, "plaintext-kafka", "spec.kafka.listeners[0].tls", ""),
    );
    Ok(())
}

/// tests/kind/cases.tsv, the matrix the kind suite applies too, in ag-enforce and ag-warn.
fn matrix(suite: &mut Suite, env: &Env) -> Result<(), String> {
    let table =
        std::fs::read_to_string(root().join("tests/kind/cases.tsv")).map_err(|e| e.to_string())?;
    let mut rows = 0;
    for line in table.lines() {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let cols: Vec<&str> = line.split('\t').collect();
        let [file, verdict, rule, path, text] = cols[..] else {
            return Err(format!(
                "tests/kind/cases.tsv: not 5 tab-separated columns: {line:?}"
            ));
        };
        let dash = |s: &str| {
            if s == "-" {
                String::new()
            } else {
                s.to_string()
            }
        };
        let (rule, path, text) = (dash(rule), dash(path), dash(text));
        rows += 1;
        let apply = |ns: &str| env.with_case(&["apply"], ns, file);
        match verdict {
            "allow" => {
                for ns in ["ag-enforce", "ag-warn"] {
                    let out = apply(ns);
                    suite.expect(&format!("{file} in {ns}: allowed, no warning"), clean(&out));
                }
            }
            "notice" => {
                for ns in ["ag-enforce", "ag-warn"] {
                    let out = apply(ns);
                    suite.expect(
                        &format!("{file} in {ns}: allowed, warning '{rule} {path}: ...{text}...'"),
                        warned(&out, &rule, &path, &text),
                    );
                }
            }
            "deny" => {
                let out = apply("ag-enforce");
                suite.expect(
                    &format!("{file} in ag-enforce: denied, naming [{rule}] {path} and {text:?}"),
                    denied(&out, &rule, &path, &text),
                );
                let gone = absent(env, "ag-enforce", file);
                suite.check(
                    &format!("{file} in ag-enforce: nothing created"),
                    gone.is_ok(),
                    || gone.unwrap_err(),
                );
                let out = apply("ag-warn");
                suite.expect(
                    &format!(
                        "{file} in ag-warn: applied, with 'Warning: {rule} {path}: ...{text}...'"
                    ),
                    warned(&out, &rule, &path, &text),
                );
            }
            other => {
                return Err(format!(
                    "tests/kind/cases.tsv: unknown verdict {other:?} for {file}"
                ));
            }
        }
    }
    suite.check("tests/kind/cases.tsv has cases", rows > 0, String::new);
    Ok(())
}

/// A Deployment with 30 violations in a warn namespace: created, and every Warning line kubectl
/// prints is whole or cut by applyguard on a word, within the API server's budget, with a count
/// of what was left out.
fn warnings(suite: &mut Suite, env: &Env) -> Result<(), String> {
    let containers: Vec<Value> = (0..10)
        .map(|i| {
            serde_json::json!({
                "name": format!("app-{i}"),
                "image": format!("ghcr.io/your-org/app-{i}:1.0"),
                "env": [{"name": "DB_PASSWORD", "valueFrom": {"secretKeyRef": {"name": format!("missing-{i}"), "key": "password"}}}],
            })
        })
        .collect();
    let deployment = serde_json::json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "thirty-violations"},
        "spec": {
            "selector": {"matchLabels": {"app": "thirty"}},
            "template": {"metadata": {"labels": {"app": "thirty"}}, "spec": {"containers": containers}},
        },
    });
    let out = env.kubectl_in(
        &deployment.to_string(),
        &["apply", "-n", "ag-warn", "-f", "-"],
    );
    suite.check("30 violations in ag-warn: created", out.ok(), || out.show());
    let lines = out.warnings();
    let rule_line = regex::Regex::new(
        r"^Warning: (secret-ref|placeholder-image|root-container) (spec\.template\.spec\.)?containers\[\d\]\S*: \S.*\. Fix: \S.*$",
    )
    .map_err(|e| e.to_string())?;
    let more_line = regex::Regex::new(r"^Warning: applyguard: (\d+) more warning\(s\) not shown; see the audit log or run applyguard review$")
        .map_err(|e| e.to_string())?;
    let shown = lines.iter().filter(|l| rule_line.is_match(l)).count();
    let more: usize = lines
        .iter()
        .find_map(|l| more_line.captures(l).and_then(|c| c[1].parse().ok()))
        .unwrap_or(0);
    let stray: Vec<&&str> = lines
        .iter()
        .filter(|l| !rule_line.is_match(l) && !more_line.is_match(l))
        .collect();
    suite.check(
        &format!("every Warning line is one finding or the count of the rest ({shown} shown + {more} counted = 30)"),
        stray.is_empty() && shown + more == 30 && shown > 0,
        || format!("stray lines: {stray:#?}\n{}", out.show()),
    );
    let runes: usize = lines
        .iter()
        .map(|l| l.trim_start_matches("Warning: ").chars().count())
        .sum();
    suite.check(
        &format!(
            "the warnings total {runes} runes, inside the API server's 4096 (so it cut none itself)"
        ),
        runes <= 4096
            && lines
                .iter()
                .all(|l| l.chars().count() <= 256 + "Warning: ".len()),
        || out.show(),
    );
    let whole = lines.iter().filter(|l| !l.contains("...")).count();
    let on_words = lines.iter().all(|l| {
        l.match_indices("...").all(|(at, _)| {
            l[..at].ends_with(|c: char| c.is_alphanumeric() || c == '"' || c == ')')
                && l[at + 3..].chars().next().is_none_or(|c| c == ' ')
        })
    });
    suite.check(
        &format!("every line keeps its fix, shortened parts end on a whole word ({whole} whole)"),
        on_words,
        || out.show(),
    );
    let out = env.kubectl(&["delete", "-n", "ag-warn", "deployment/thirty-violations"]);
    suite.check("the 30-violation Deployment deleted", out.ok(), || {
        out.show()
    });
    Ok(())
}

/// A Secret and the Deployment that reads it, applied together; the Secret deleted and
/// re-created under a running webhook.
fn secret_lifecycle(suite: &mut Suite, env: &Env) -> Result<(), String> {
    let dir = e2e_manifest("secret-and-reader");
    let out = env.kubectl(&["apply", "-n", "ag-enforce", "-f", &dir]);
    suite.check(
        "kubectl apply -f dir/ with a Secret and the Deployment reading it: both created, no warning",
        clean(&out).is_ok() && out.stdout.contains("secret/lifecycle-db") && out.stdout.contains("deployment.apps/lifecycle"),
        || out.show(),
    );
    let reader = e2e_manifest("pod-lifecycle-reader.yaml");
    let pod = |env: &Env| {
        env.kubectl(&[
            "apply",
            "--dry-run=server",
            "-n",
            "ag-enforce",
            "-f",
            &reader,
        ])
    };
    // The deletion guard: removing the key the Deployment reads, then deleting the Secret, both
    // go through (warn by default) with a warning naming the Deployment and its field.
    let out = env.kubectl(&[
        "patch",
        "-n",
        "ag-enforce",
        "secret/lifecycle-db",
        "--type=json",
        "-p",
        r#"[{"op": "add", "path": "/data/other", "value": "eA=="}, {"op": "remove", "path": "/data/password"}]"#,
        "--dry-run=server",
    ]);
    suite.expect(
        "kubectl patch removing the key a Deployment reads (dry run): allowed, with a secret-in-use warning naming the Deployment and field",
        warned(
            &out,
            "secret-in-use",
            "data.password",
            "Deployment ag-enforce/lifecycle reads key \"password\" of secret \"lifecycle-db\" in spec.template.spec.containers[0].env[0]; new pods will not start",
        ),
    );
    let out = env.kubectl(&["delete", "-n", "ag-enforce", "secret/lifecycle-db"]);
    suite.expect(
        "kubectl delete of the Secret the Deployment reads: deleted, with a secret-in-use warning naming the Deployment and field",
        warned(
            &out,
            "secret-in-use",
            "metadata.name",
            "Deployment ag-enforce/lifecycle reads key \"password\" of secret \"lifecycle-db\" in spec.template.spec.containers[0].env[0]; new pods will not start",
        )
        .and_then(|()| {
            if out.stdout.contains("deleted") { Ok(()) } else { Err(out.show()) }
        }),
    );
    println!("    kubectl printed:\n{}", out.stderr.trim_end());
    // The very next apply, no retry: the watch delivered the change before kubectl's next
    // request (a denial for a missing Secret also waits up to 1 s for it in the webhook).
    let t = Instant::now();
    let out = pod(env);
    suite.expect(
        &format!(
            "the next apply of a Pod reading the deleted Secret: denied ({} ms)",
            t.elapsed().as_millis()
        ),
        denied(
            &out,
            "secret-ref",
            "spec.containers[0].env[0].valueFrom.secretKeyRef",
            "secret \"lifecycle-db\" not found",
        ),
    );
    let out = env.kubectl(&[
        "apply",
        "-n",
        "ag-enforce",
        "-f",
        &format!("{dir}/secret.yaml"),
    ]);
    suite.check("the Secret re-created", out.ok(), || out.show());
    let t = Instant::now();
    let out = pod(env);
    suite.expect(
        &format!(
            "the next apply of the same Pod: allowed again ({} ms)",
            t.elapsed().as_millis()
        ),
        clean(&out),
    );
    // kubectl applies files in the order given (a directory's in name order): a workload applied
    // before its Secret is denied, the Secret does not exist yet; kustomize orders Secrets first.
    let dir = e2e_manifest("workload-before-secret");
    let (deployment, secret) = (
        format!("{dir}/deployment.yaml"),
        format!("{dir}/secret.yaml"),
    );
    let out = env.kubectl(&[
        "apply",
        "-n",
        "ag-enforce",
        "-f",
        &deployment,
        "-f",
        &secret,
    ]);
    suite.expect("kubectl apply of a Deployment before its Secret (as -f dir/ does when its file sorts first): the Deployment is denied, naming the Secret", denied(&out, "secret-ref", "spec.template.spec.containers[0].env[0].valueFrom.secretKeyRef", "secret \"ordered-db\" not found"));
    let out = env.kubectl(&[
        "delete",
        "-n",
        "ag-enforce",
        "secret/ordered-db",
        "--ignore-not-found",
    ]);
    suite.check(
        "(its Secret, created after, removed again)",
        out.ok(),
        || out.show(),
    );
    let out = env.kubectl(&["apply", "-n", "ag-enforce", "-k", &dir]);
    suite.expect(
        "the same directory with kubectl apply -k (kustomize puts the Secret first): allowed",
        clean(&out),
    );
    Ok(())
}

/// Objects created before the webhook was registered: updates that leave the pod template
/// alone are allowed, ones that change it are evaluated; dry runs, server-side apply, delete.
/// `kubectl applyguard audit ARGS`, the plugin form: a kubectl-applyguard link on PATH, and
/// kubectl hands the plugin its environment (KUBECONFIG) and arguments.
fn audit(env: &Env, args: &[&str]) -> Out {
    let bin = std::env::temp_dir().join(format!("applyguard-e2e-plugin-{}", std::process::id()));
    let link = bin.join("kubectl-applyguard");
    let _ = std::fs::create_dir_all(&bin);
    if !link.exists() {
        let _ = std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_applyguard"), &link);
    }
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let output = std::process::Command::new(kubectl::binary())
        .env("KUBECONFIG", &env.admin)
        .env("PATH", path)
        .arg("applyguard")
        .arg("audit")
        .args(args)
        .stdin(std::process::Stdio::null())
        .output();
    let command = format!("kubectl applyguard audit {}", args.join(" "));
    match output {
        Ok(output) => Out {
            code: output.status.code(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
            command,
        },
        Err(e) => Out {
            code: None,
            stderr: format!("cannot run kubectl: {e}"),
            command,
            ..Out::default()
        },
    }
}

fn existing_objects(suite: &mut Suite, env: &Env) -> Result<(), String> {
    // The Deployment created before applyguard, found by the audit the way a denial says it.
    let out = audit(env, &["--namespace", "ag-legacy"]);
    let finding = "Deployment/ag-legacy/legacy root-container spec.template.spec.containers[0].securityContext.runAsNonRoot: ";
    suite.check(
        "kubectl applyguard audit -n ag-legacy: exit 1, the root Deployment created before applyguard named with its field and fix",
        out.code == Some(1)
            && out.stdout.lines().any(|l| l.starts_with(finding) && l.contains("may run as root") && l.contains("Fix: "))
            && out.stdout.contains("audited 1 object(s) in https://")
            && out.stderr.contains("applyguard audit: Deployment (apps/v1): 1 object(s)"),
        || out.show(),
    );
    println!(
        "    kubectl applyguard audit printed:\n{}\n    and on stderr:\n{}",
        out.stdout.trim_end(),
        out.stderr.trim_end()
    );
    let out = audit(env, &["--namespace", "ag-legacy", "--format", "sarif"]);
    let sarif: Value = serde_json::from_str(&out.stdout).unwrap_or(Value::Null);
    let result = &sarif["runs"][0]["results"][0];
    suite.check(
        "... --format sarif: the finding at its logical location (the object and field), no file",
        out.code == Some(1)
            && result["ruleId"] == "root-container"
            && result["locations"][0].get("physicalLocation").is_none()
            && result["locations"][0]["logicalLocations"][0]["fullyQualifiedName"]
                .as_str()
                .is_some_and(|n| {
                    n.starts_with("Deployment/ag-legacy/legacy.spec.template.spec.containers[0]")
                }),
        || out.show(),
    );
    // serve's background audit (every 2 s here) finds it too: in the gauge and in a log line.
    let gauge = |env: &Env| -> Option<i64> {
        let (_, body) = env.serve.get("/metrics").ok()?;
        body.lines()
            .find_map(|l| {
                l.strip_prefix(
                    "applyguard_existing_violations{rule=\"root-container\",mode=\"enforce\"} ",
                )
            })
            .and_then(|v| v.parse().ok())
    };
    let logged = |env: &Env, what: &str| {
        env.serve
            .log_tail(20_000)
            .lines()
            .any(|l| l.contains(what) && l.contains("legacy") && l.contains("root-container"))
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while !(gauge(env).is_some_and(|n| n >= 1) && logged(env, "existing violation found"))
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(200));
    }
    suite.check(
        "serve --audit-interval: applyguard_existing_violations{rule=root-container,mode=enforce} >= 1, and a log line naming the legacy Deployment",
        gauge(env).is_some_and(|n| n >= 1) && logged(env, "existing violation found"),
        || format!("gauge: {:?}\n{}", gauge(env), env.serve.log_tail(40)),
    );
    let refused = env
        .serve
        .log_tail(20_000)
        .lines()
        .filter(|l| {
            (l.contains("could not be listed") || l.contains("PolicyReports not written"))
                && l.contains("forbidden")
        })
        .count();
    suite.check(
        "... and the audit listed every kind with deploy/'s RBAC (no kind refused)",
        refused == 0,
        || env.serve.log_tail(40),
    );
    // With the PolicyReport CRD installed, the next runs write ag-legacy's report.
    let crd = e2e_manifest("policyreport-crd.yaml");
    let out = env.kubectl(&["apply", "-f", &crd]);
    suite.expect(
        "the PolicyReport CRD (wgpolicyk8s.io/v1alpha2) installed",
        succeeded(&out),
    );
    let report = |env: &Env| -> Option<Value> {
        let out = env.kubectl(&[
            "get",
            "policyreport",
            "-n",
            "ag-legacy",
            "applyguard",
            "-o",
            "json",
        ]);
        if out.ok() {
            serde_json::from_str(&out.stdout).ok()
        } else {
            None
        }
    };
    let failing = |report: &Value| {
        report["results"].as_array().is_some_and(|results| {
            results.iter().any(|r| {
                r["result"] == "fail"
                    && r["rule"] == "root-container"
                    && r["resources"][0]["kind"] == "Deployment"
                    && r["resources"][0]["name"] == "legacy"
            })
        }) && report["summary"]["fail"].as_u64() >= Some(1)
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut found = report(env);
    while !found.as_ref().is_some_and(failing) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(300));
        found = report(env);
    }
    suite.check(
        "serve --policy-reports: PolicyReport ag-legacy/applyguard lists the legacy Deployment as fail (root-container)",
        found.as_ref().is_some_and(failing),
        || format!("{found:?}\n{}", env.serve.log_tail(20)),
    );
    let out = env.kubectl(&["get", "policyreports", "-A"]);
    println!(
        "    kubectl get policyreports -A:\n{}",
        out.stdout.trim_end()
    );
    // kubectl VERB -n ag-legacy deployment/legacy ARGS...
    let run = |verb: &[&str], args: &[&str]| {
        let mut all = verb.to_vec();
        all.extend_from_slice(&["-n", "ag-legacy", "deployment/legacy"]);
        all.extend_from_slice(args);
        env.kubectl(&all)
    };
    let out = run(&["scale"], &["--replicas=3"]);
    suite.expect(
        "kubectl scale of a root Deployment created before applyguard: allowed",
        succeeded(&out),
    );
    let out = run(&["label"], &["team=payments"]);
    suite.expect("kubectl label of it: allowed, no warning", clean(&out));
    let out = run(&["annotate"], &["owner=platform"]);
    suite.expect("kubectl annotate of it: allowed, no warning", clean(&out));
    let out = run(&["set", "env"], &["LEGACY_TOUCHED=1"]);
    suite.expect(
        "kubectl set env (a pod template change): evaluated, and denied",
        denied_by_webhook(
            &out,
            "root-container",
            "spec.template.spec.containers[0].securityContext.runAsNonRoot",
            "may run as root",
        ),
    );
    let file = case("deployment-root-container.yaml");
    let out = env.kubectl(&["apply", "--dry-run=server", "-n", "ag-enforce", "-f", &file]);
    suite.expect(
        "kubectl apply --dry-run=server: the verdict (denied)",
        denied(
            &out,
            "root-container",
            "spec.template.spec.containers[0].securityContext.runAsNonRoot",
            "may run as root",
        ),
    );
    let gone = absent(env, "ag-enforce", "deployment-root-container.yaml");
    suite.check("... and nothing created", gone.is_ok(), || {
        gone.unwrap_err()
    });
    let out = env.with_renamed_case(
        &["apply", "--dry-run=server"],
        "ag-warn",
        "deployment-root-container.yaml",
        "dry-run-root",
    );
    suite.check(
        "kubectl apply --dry-run=server in ag-warn: allowed with the warning, marked as a server dry run",
        warned(&out, "root-container", "spec.template.spec.containers[0].securityContext.runAsNonRoot", "may run as root").is_ok()
            && out.stdout.contains("(server dry run)"),
        || out.show(),
    );
    let out = env.kubectl(&["apply", "--server-side", "-n", "ag-enforce", "-f", &file]);
    suite.expect(
        "kubectl apply --server-side of a root Deployment: denied",
        denied(
            &out,
            "root-container",
            "spec.template.spec.containers[0].securityContext.runAsNonRoot",
            "may run as root",
        ),
    );
    let out = env.kubectl(&[
        "apply",
        "--server-side",
        "-n",
        "ag-enforce",
        "-f",
        &case("deployment-good.yaml"),
    ]);
    suite.expect(
        "kubectl apply --server-side of a good Deployment: allowed",
        clean(&out),
    );
    let out = run(&["delete"], &[]);
    suite.expect(
        "kubectl delete of the legacy Deployment: allowed",
        succeeded(&out),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while !logged(env, "existing violation resolved") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    for line in env.serve.log_tail(20_000).lines() {
        if line.contains("existing violation") && line.contains("legacy") {
            println!("    serve logged: {line}");
        }
    }
    suite.check(
        "... and the next background audit logs its finding as resolved",
        logged(env, "existing violation resolved"),
        || env.serve.log_tail(40),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while report(env).is_some() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(300));
    }
    suite.check(
        "... and ag-legacy's PolicyReport is deleted once the namespace is clean",
        report(env).is_none(),
        || format!("{:?}", report(env)),
    );
    Ok(())
}

/// kube-system and applyguard's own namespace are never blocked. From 1.21 the shipped
/// namespaceSelector keeps them away from the webhook; on older API servers namespaces have no
/// kubernetes.io/metadata.name label, the selector matches them, and the systemNamespaces
/// exemption is what keeps them safe.
fn system_namespaces(suite: &mut Suite, env: &Env) -> Result<(), String> {
    let old = env.minor() < 21;
    for ns in ["kube-system", "applyguard"] {
        let out = env.with_case(&["apply"], ns, "configmap-plaintext-kafka.yaml");
        if old {
            suite.check(
                &format!("plaintext Kafka ConfigMap in {ns} (1.20: the selector sends it): allowed, warning that {ns} is a system namespace"),
                out.ok() && out.warnings().iter().any(|w| w.contains(&format!("namespace {ns} is a system namespace"))),
                || out.show(),
            );
        } else {
            suite.expect(
                &format!("plaintext Kafka ConfigMap in {ns}: not sent to the webhook, applied"),
                clean(&out),
            );
        }
        let out = env.with_case(&["delete"], ns, "configmap-plaintext-kafka.yaml");
        suite.check(&format!("(removed from {ns})"), out.ok(), || out.show());
    }
    Ok(())
}

/// serve stopped: failurePolicy Fail refuses with the API server's own message, system
/// namespaces stay writable, the warn overlay's Ignore lets requests through; serve restarted:
/// back to normal.
fn outage(suite: &mut Suite, env: &mut Env) -> Result<(), String> {
    if env.minor() < 21 {
        // What docs/operations.md and serve's start-up warning tell users of older API servers to do.
        for ns in ["kube-system", "kube-node-lease", "applyguard"] {
            let label = format!("kubernetes.io/metadata.name={ns}");
            let out = env.kubectl(&["label", "namespace", ns, &label, "--overwrite"]);
            suite.check(
                &format!("1.20: namespace {ns} labelled {label}"),
                out.ok(),
                || out.show(),
            );
        }
    }
    env.serve.stop();
    let out = env.with_renamed_case(
        &["apply", "--dry-run=server"],
        "ag-enforce",
        "pod-good.yaml",
        "good-outage",
    );
    suite.expect(
        "serve down, failurePolicy Fail: the apply is refused with the API server's message",
        fails_with(&out, "failed calling webhook \"validate.applyguard.io\""),
    );
    let out = env.with_renamed_case(
        &["apply", "--dry-run=server"],
        "kube-system",
        "configmap-plaintext-kafka.yaml",
        "outage-kafka",
    );
    suite.expect("serve down: kube-system still writable", succeeded(&out));
    let warn = webhook::render(&webhook::warn_kustomization(&root())?)?;
    let vwc = webhook::loopback_webhook(&warn, env.serve.port, &env.serve.ca_bundle)?;
    let out = webhook::apply(&env.admin, &[&vwc], &[]);
    suite.check(
        "the warn overlay's webhook (failurePolicy Ignore) applied",
        out.ok(),
        || out.show(),
    );
    suite.eventually(
        "serve down, failurePolicy Ignore: the apply goes through",
        Duration::from_secs(10),
        || {
            succeeded(&env.kubectl(&[
                "apply",
                "--dry-run=server",
                "-n",
                "ag-enforce",
                "-f",
                &case("pod-root-container.yaml"),
            ]))
        },
    );
    let base_vwc = webhook::loopback_webhook(&env.base, env.serve.port, &env.serve.ca_bundle)?;
    let out = webhook::apply(&env.admin, &[&base_vwc], &[]);
    suite.check(
        "deploy/base's webhook (failurePolicy Fail) restored",
        out.ok(),
        || out.show(),
    );
    let started = Instant::now();
    env.serve.start()?;
    suite.check(
        &format!(
            "serve restarted and ready in {} ms",
            started.elapsed().as_millis()
        ),
        true,
        String::new,
    );
    suite.eventually(
        "serve back: a root Pod is denied again",
        Duration::from_secs(10),
        || {
            denied(
                &env.kubectl(&[
                    "apply",
                    "--dry-run=server",
                    "-n",
                    "ag-enforce",
                    "-f",
                    &case("pod-root-container.yaml"),
                ]),
                "root-container",
                "spec.containers[0].securityContext.runAsNonRoot",
                "",
            )
        },
    );
    Ok(())
}

/// The watch cache against the real watch: kube-apiserver stopped (serve's watches fail: stale
/// after --stale-after), Secrets changed meanwhile through a second API server, etcd compacted
/// past serve's last resourceVersion (so resuming gets 410 Gone and must relist), the first API
/// server back: serve recovers and its verdicts follow the changes.
fn watch_cache(suite: &mut Suite, env: &mut Env) -> Result<(), String> {
    let pod_reading = |env: &Env, secret: &str| {
        let pod = serde_json::json!({
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": format!("reads-{secret}")},
            "spec": {
                "securityContext": {"runAsNonRoot": true, "runAsUser": 65532},
                "containers": [{"name": "app", "image": "registry.k8s.io/pause:3.10",
                    "env": [{"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": secret, "key": "password"}}}]}],
            },
        });
        env.kubectl_in(
            &pod.to_string(),
            &["apply", "--dry-run=server", "-n", "ag-enforce", "-f", "-"],
        )
    };
    let path = "spec.containers[0].env[0].valueFrom.secretKeyRef";
    let out = env.kubectl(&[
        "create",
        "secret",
        "generic",
        "cache-old",
        "-n",
        "ag-enforce",
        "--from-literal=password=x",
    ]);
    suite.check("Secret cache-old created", out.ok(), || out.show());
    suite.eventually(
        "a Pod reading cache-old: allowed",
        Duration::from_secs(2),
        || clean(&pod_reading(env, "cache-old")),
    );
    let stale = |env: &Env| env.serve.metric("applyguard_inventory_stale");
    suite.check(
        "applyguard_inventory_stale is 0",
        stale(env) == Some(0.0),
        || env.serve.log_tail(20),
    );

    env.plane.stop_apiserver();
    let second = env.plane.start_second_apiserver()?;
    suite.eventually(
        "kube-apiserver down: after --stale-after (3 s) applyguard_inventory_stale is 1",
        Duration::from_secs(20),
        || match stale(env) {
            Some(1.0) => Ok(()),
            other => Err(format!(
                "applyguard_inventory_stale = {other:?}\n{}",
                env.serve.log_tail(10)
            )),
        },
    );
    let via_second = |args: &[&str]| kubectl::run(&second, args);
    let out = via_second(&["delete", "secret", "cache-old", "-n", "ag-enforce"]);
    suite.check(
        "meanwhile, through a second API server: cache-old deleted",
        out.ok(),
        || out.show(),
    );
    let out = via_second(&[
        "create",
        "secret",
        "generic",
        "cache-new",
        "-n",
        "ag-enforce",
        "--from-literal=password=x",
    ]);
    suite.check("... and cache-new created", out.ok(), || out.show());
    let revision = env.plane.compact_etcd()?;
    suite.check(
        &format!("etcd compacted at revision {revision}, past serve's last resourceVersion"),
        true,
        String::new,
    );
    env.plane.stop_second_apiserver();
    env.plane.start_apiserver()?;
    suite.eventually(
        "kube-apiserver back: applyguard_inventory_stale returns to 0",
        Duration::from_secs(40),
        || match stale(env) {
            Some(0.0) => Ok(()),
            other => Err(format!(
                "applyguard_inventory_stale = {other:?}\n{}",
                env.serve.log_tail(10)
            )),
        },
    );
    suite.eventually(
        "at once (within 2 s of not stale): a Pod reading cache-new, created while serve could not watch, is allowed",
        Duration::from_secs(2),
        || clean(&pod_reading(env, "cache-new")),
    );
    let out = pod_reading(env, "cache-old");
    suite.expect(
        "... and one reading cache-old (deleted meanwhile) is denied",
        denied(&out, "secret-ref", path, "secret \"cache-old\" not found"),
    );
    let relisted = env
        .serve
        .log_tail(400)
        .lines()
        .any(|l| l.contains("410 Gone") && l.contains("relisting now"));
    suite.check(
        "serve's log shows the 410 Gone that made it relist at once",
        relisted,
        || env.serve.log_tail(40),
    );
    // Changes after the relist still arrive through the resumed watch.
    let out = env.kubectl(&["delete", "secret", "cache-new", "-n", "ag-enforce"]);
    suite.check(
        "cache-new deleted through the restarted API server",
        out.ok(),
        || out.show(),
    );
    let out = pod_reading(env, "cache-new");
    suite.expect(
        "the next apply of a Pod reading cache-new: denied",
        denied(&out, "secret-ref", path, ""),
    );
    Ok(())
}

/// The serving pair rotated three times (same CA, new key) while applies run back to back:
/// none fails, and serve reports each reload.
fn rotation(suite: &mut Suite, env: &Env) -> Result<(), String> {
    let reloads = |env: &Env| {
        env.serve
            .metric("applyguard_tls_certificate_reload_total{result=\"success\"}")
            .unwrap_or(0.0)
    };
    let before = reloads(env);
    let stop = std::sync::atomic::AtomicBool::new(false);
    let (applies, failures) = std::thread::scope(|scope| {
        let worker = scope.spawn(|| {
            let (mut applies, mut failures) = (0, Vec::new());
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let out = env.kubectl(&[
                    "apply",
                    "--dry-run=server",
                    "-n",
                    "ag-enforce",
                    "-f",
                    &case("pod-good.yaml"),
                ]);
                applies += 1;
                if clean(&out).is_err() {
                    failures.push(out.show());
                }
            }
            (applies, failures)
        });
        for _ in 0..3 {
            std::thread::sleep(Duration::from_millis(1500));
            if let Err(e) = env.serve.rotate() {
                eprintln!("rotation failed: {e}");
            }
        }
        std::thread::sleep(Duration::from_millis(1500));
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        worker
            .join()
            .unwrap_or((0, vec!["the apply loop panicked".to_string()]))
    });
    let after = reloads(env);
    suite.check(
        &format!(
            "serving certificate rotated 3 times: {} reloads reported",
            after - before
        ),
        after - before >= 3.0,
        || env.serve.log_tail(20),
    );
    suite.check(
        &format!(
            "{applies} applies during the rotations, {} failed",
            failures.len()
        ),
        applies > 3 && failures.is_empty(),
        || failures.join("\n"),
    );
    Ok(())
}

/// The warnings-first rollout: deploy/components/warn's policy and webhook; a namespace then
/// switched to enforce by label.
fn warn_overlay(suite: &mut Suite, env: &Env) -> Result<(), String> {
    let warn = webhook::render(&webhook::warn_kustomization(&root())?)?;
    std::fs::write(&env.serve.policy, webhook::policy(&warn)?).map_err(|e| e.to_string())?;
    let vwc = webhook::loopback_webhook(&warn, env.serve.port, &env.serve.ca_bundle)?;
    let out = webhook::apply(&env.admin, &[&vwc], &[]);
    suite.check(
        "warn overlay: its policy written (serve reloads it) and its webhook applied",
        out.ok(),
        || out.show(),
    );
    let pod = case("pod-root-container.yaml");
    let path = "spec.containers[0].securityContext.runAsNonRoot";
    suite.eventually(
        "warn overlay: an unlabelled namespace gets warnings, not denials",
        Duration::from_secs(10),
        || {
            warned(
                &env.kubectl(&["apply", "--dry-run=server", "-n", "ag-rollout", "-f", &pod]),
                "root-container",
                path,
                "may run as root",
            )
        },
    );
    let out = env.kubectl(&[
        "label",
        "namespace",
        "ag-rollout",
        "applyguard.io/mode=enforce",
        "--overwrite",
    ]);
    suite.check(
        "ag-rollout labelled applyguard.io/mode=enforce",
        out.ok(),
        || out.show(),
    );
    suite.eventually(
        "warn overlay: the labelled namespace denies",
        Duration::from_secs(2),
        || {
            denied(
                &env.kubectl(&["apply", "--dry-run=server", "-n", "ag-rollout", "-f", &pod]),
                "root-container",
                path,
                "may run as root",
            )
        },
    );
    Ok(())
}
