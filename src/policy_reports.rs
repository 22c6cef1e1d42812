//! PolicyReports (`wgpolicyk8s.io/v1alpha2`, the Kubernetes policy working group's format that
//! Kyverno and Kubewarden write too) from serve's background audit: one report per namespace with
//! findings, named `applyguard`, written in place by server-side apply, results capped.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use kube::Client;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use kube::discovery::ApiResource;
use serde_json::{Value, json};

use crate::scan::{Finding, Level, Report};

/// Each namespace's report.
pub const REPORT_NAME: &str = "applyguard";
/// Results kept per report, the most severe first. Kyverno's reports have filled etcd
/// (kyverno#8974): an object has a 1.5 MiB limit and every update is a new etcd revision.
pub const MAX_RESULTS: usize = 100;
const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
/// How many findings a capped report leaves out.
const LEFT_OUT: &str = "applyguard.io/results-left-out";

/// Writes the reports, once discovery shows the API is served.
pub struct Reporter {
    client: Client,
    resource: ApiResource,
}

impl Reporter {
    /// `None` when the API server does not serve PolicyReport v1alpha2 (the CRD is not
    /// installed), so the audit goes on with gauges and logs only.
    pub async fn discover(client: &Client) -> Option<Reporter> {
        let group = kube::discovery::group(client, "wgpolicyk8s.io")
            .await
            .ok()?;
        let (resource, _) = group
            .versioned_resources("v1alpha2")
            .into_iter()
            .find(|(ar, _)| ar.kind == "PolicyReport")?;
        Some(Reporter {
            client: client.clone(),
            resource,
        })
    }

    /// Applies this run's reports and deletes those of namespaces with no finding left.
    /// Returns how many reports were written.
    pub async fn write(&self, report: &Report) -> Result<usize, kube::Error> {
        let reports = reports(report, SystemTime::now());
        let params = PatchParams::apply("applyguard").force();
        for (namespace, body) in &reports {
            let api: Api<DynamicObject> =
                Api::namespaced_with(self.client.clone(), namespace, &self.resource);
            api.patch(REPORT_NAME, &params, &Patch::Apply(body)).await?;
        }
        // Ours (by label) in namespaces that are clean now, including from before a restart.
        let all: Api<DynamicObject> = Api::all_with(self.client.clone(), &self.resource);
        let ours = all
            .list(&ListParams::default().labels(&format!("{MANAGED_BY}=applyguard")))
            .await?;
        for old in ours.items {
            let namespace = old.metadata.namespace.clone().unwrap_or_default();
            let name = old.metadata.name.clone().unwrap_or_default();
            if name == REPORT_NAME && !reports.contains_key(&namespace) {
                let api: Api<DynamicObject> =
                    Api::namespaced_with(self.client.clone(), &namespace, &self.resource);
                match api.delete(&name, &DeleteParams::default()).await {
                    Ok(_) => {}
                    Err(kube::Error::Api(status)) if status.code == 404 => {}
                    Err(err) => return Err(err),
                }
            }
        }
        Ok(reports.len())
    }
}

fn result_of(level: Level) -> Option<&'static str> {
    match level {
        Level::Enforce => Some("fail"),
        Level::Warn => Some("warn"),
        Level::Exempt => Some("skip"),
        Level::Notice => None,
    }
}

/// The report bodies, by namespace: every namespace with at least one violation.
pub fn reports(report: &Report, now: SystemTime) -> BTreeMap<String, Value> {
    let since = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let timestamp = json!({"seconds": since.as_secs(), "nanos": since.subsec_nanos()});
    let mut by_namespace: BTreeMap<&str, Vec<&Finding>> = BTreeMap::new();
    for finding in &report.findings {
        if result_of(finding.level).is_some() && !finding.namespace.is_empty() {
            by_namespace
                .entry(&finding.namespace)
                .or_default()
                .push(finding);
        }
    }
    by_namespace
        .into_iter()
        .map(|(namespace, mut findings)| {
            let mut summary = BTreeMap::from([
                ("pass", 0),
                ("fail", 0),
                ("warn", 0),
                ("error", 0),
                ("skip", 0),
            ]);
            for f in &findings {
                if let Some(result) = result_of(f.level) {
                    *summary.entry(result).or_default() += 1;
                }
            }
            // The most severe first, so a cap drops warnings and exemptions before failures.
            findings.sort_by_key(|f| match f.level {
                Level::Enforce => 0,
                Level::Warn => 1,
                _ => 2,
            });
            let left_out = findings.len().saturating_sub(MAX_RESULTS);
            let results: Vec<Value> = findings
                .iter()
                .take(MAX_RESULTS)
                .map(|f| {
                    json!({
                        "source": "applyguard",
                        "policy": "applyguard",
                        "rule": f.rule,
                        "result": result_of(f.level),
                        "scored": true,
                        "severity": if f.level == Level::Enforce { "high" } else { "medium" },
                        "timestamp": timestamp,
                        "message": format!("{}: {}", f.path, f.message),
                        "resources": [{
                            "apiVersion": f.api_version,
                            "kind": f.kind,
                            "namespace": f.namespace,
                            "name": f.name,
                        }],
                        "properties": {"path": f.path, "fix": f.fix},
                    })
                })
                .collect();
            let body = json!({
                "apiVersion": "wgpolicyk8s.io/v1alpha2",
                "kind": "PolicyReport",
                "metadata": {
                    "name": REPORT_NAME,
                    "namespace": namespace,
                    "labels": {MANAGED_BY: "applyguard"},
                    "annotations": {LEFT_OUT: left_out.to_string()},
                },
                "summary": summary,
                "results": results,
            });
            (namespace.to_string(), body)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finding(namespace: &str, name: &str, level: Level) -> Finding {
        Finding {
            file: String::new(),
            line: 0,
            column: 0,
            api_version: "apps/v1".into(),
            kind: "Deployment".into(),
            namespace: namespace.into(),
            name: name.into(),
            rule: "root-container",
            level,
            path: "spec.template.spec.containers[0].securityContext.runAsNonRoot".into(),
            value: "unset".into(),
            message: "container \"app\" may run as root".into(),
            fix: "set runAsNonRoot: true".into(),
            read_from: None,
        }
    }

    #[test]
    fn one_report_per_namespace_capped_with_failures_first() {
        let mut report = Report::default();
        for i in 0..MAX_RESULTS + 20 {
            report
                .findings
                .push(finding("shop", &format!("w-{i:03}"), Level::Warn));
        }
        report
            .findings
            .push(finding("shop", "root", Level::Enforce));
        report
            .findings
            .push(finding("ops", "exempt", Level::Exempt));
        let mut note = finding("ops", "noted", Level::Notice);
        note.rule = "secret-ref";
        report.findings.push(note);
        let reports = reports(
            &report,
            UNIX_EPOCH + std::time::Duration::from_secs(1_800_000_000),
        );
        assert_eq!(reports.keys().collect::<Vec<_>>(), ["ops", "shop"]);
        let shop = &reports["shop"];
        let results = shop["results"].as_array().unwrap();
        assert_eq!(results.len(), MAX_RESULTS);
        assert_eq!(results[0]["result"], "fail");
        assert_eq!(results[0]["resources"][0]["name"], "root");
        assert_eq!(shop["summary"]["fail"], 1);
        assert_eq!(shop["summary"]["warn"], MAX_RESULTS + 20);
        assert_eq!(shop["metadata"]["annotations"][LEFT_OUT], "21");
        assert_eq!(shop["metadata"]["labels"][MANAGED_BY], "applyguard");
        assert_eq!(results[0]["timestamp"]["seconds"], 1_800_000_000u64);
        // Notices are not results; exemptions are skips.
        let ops = &reports["ops"];
        assert_eq!(ops["results"].as_array().unwrap().len(), 1);
        assert_eq!(ops["results"][0]["result"], "skip");
    }
}
