//! `applyguard audit`: what is already in the cluster. Lists every live object the webhook would
//! evaluate and evaluates it with the cluster as inventory, into the scan report (text, json,
//! SARIF); the same listing feeds serve's background audit.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use kube::api::{Api, DynamicObject, ListParams};
use kube::discovery::{ApiResource, verbs};
use kube::{Client, ResourceExt};
use serde_json::Value;

use crate::engine::Engine;
use crate::inventory::cluster::{ClusterInventory, ClusterOptions};
use crate::inventory::{Inventory, Readiness};
use crate::policy::Policy;
use crate::scan::{InputError, Level, Report};

/// The kinds the webhook evaluates on CREATE and UPDATE (deploy/base/webhook.yaml's first
/// entry), by API group. Secrets are left out: listing them would read every value, and the
/// webhook's own Secrets entry is optional (SECURITY.md); `scan` covers placeholder-secret.
pub const AUDITED: &[(&str, &str)] = &[
    ("", "Pod"),
    ("", "ReplicationController"),
    ("", "ConfigMap"),
    ("apps", "Deployment"),
    ("apps", "StatefulSet"),
    ("apps", "DaemonSet"),
    ("apps", "ReplicaSet"),
    ("batch", "Job"),
    ("batch", "CronJob"),
    ("argoproj.io", "Rollout"),
    ("networking.k8s.io", "Ingress"),
    ("gateway.networking.k8s.io", "Gateway"),
    ("external-secrets.io", "ExternalSecret"),
    ("kafka.strimzi.io", "Kafka"),
];

/// List page size: bounded memory per response on large clusters.
const PAGE: u32 = 500;

/// What to audit.
#[derive(Debug, Clone)]
pub struct AuditOptions {
    /// Only this namespace (the inventory still reads the whole cluster, as the webhook does).
    pub namespace: Option<String>,
    /// How long to wait for the cluster inventory's first lists.
    pub ready_timeout: Duration,
}

/// Live objects, listed: what the evaluation needs, and what could not be read.
#[derive(Default)]
pub struct Listed {
    pub objects: Vec<Value>,
    /// Owned by a controller that is itself audited: checked through that controller.
    pub controlled: usize,
    pub errors: Vec<InputError>,
}

/// Every audited kind (and the policy's `workloads:`) the API server serves, in `namespace` or
/// all of them, page by page. `progress` hears one line per kind.
pub async fn list(
    client: &Client,
    policy: &Policy,
    namespace: Option<&str>,
    progress: &(dyn Fn(&str) + Sync),
) -> Listed {
    let mut kinds: Vec<(String, String)> = AUDITED
        .iter()
        .map(|(g, k)| (g.to_string(), k.to_string()))
        .collect();
    kinds.extend(
        policy
            .workloads
            .iter()
            .map(|w| (w.group.clone(), w.kind.clone())),
    );
    let mut groups: BTreeMap<String, Option<kube::discovery::ApiGroup>> = BTreeMap::new();
    let mut listed = Listed::default();
    for (group, kind) in &kinds {
        if !groups.contains_key(group) {
            let found = match kube::discovery::group(client, group).await {
                Ok(found) => Some(found),
                // The group is not served at all (kube says so without a request error).
                Err(kube::Error::Discovery(_)) => None,
                Err(kube::Error::Api(status)) if status.code == 404 => None,
                Err(err) => {
                    listed.errors.push(InputError {
                        file: String::new(),
                        line: None,
                        message: format!(
                            "cannot discover API group {:?}: {err}",
                            display_group(group)
                        ),
                    });
                    None
                }
            };
            groups.insert(group.clone(), found);
        }
        // The most stable version that serves the kind (CronJob is batch/v1beta1 before 1.21).
        let Some(resource) = groups[group].as_ref().and_then(|g| {
            g.resources_by_stability()
                .into_iter()
                .find(|(ar, caps)| ar.kind == *kind && caps.supports_operation(verbs::LIST))
                .map(|(ar, _)| ar)
        }) else {
            progress(&format!("{kind} ({}): not served", display_group(group)));
            continue;
        };
        let before = listed.objects.len();
        match list_kind(client, &resource, namespace, &kinds, &mut listed).await {
            Ok(()) => progress(&format!(
                "{kind} ({}): {} object(s)",
                resource.api_version,
                listed.objects.len() - before
            )),
            Err(err) => {
                progress(&format!("{}: {err}", describe(&resource)));
                listed.errors.push(InputError {
                    file: String::new(),
                    line: None,
                    message: format!(
                        "cannot list {}: {err} (the audit needs list on every kind the webhook evaluates; deploy/components/audit has the rules)",
                        describe(&resource)
                    ),
                });
            }
        }
    }
    listed
}

fn display_group(group: &str) -> &str {
    if group.is_empty() { "core" } else { group }
}

fn describe(resource: &ApiResource) -> String {
    if resource.group.is_empty() {
        format!("{}/{}", resource.plural, resource.version)
    } else {
        format!(
            "{}.{}/{}",
            resource.plural, resource.group, resource.version
        )
    }
}

async fn list_kind(
    client: &Client,
    resource: &ApiResource,
    namespace: Option<&str>,
    audited: &[(String, String)],
    listed: &mut Listed,
) -> Result<(), kube::Error> {
    let api: Api<DynamicObject> = match namespace {
        Some(namespace) => Api::namespaced_with(client.clone(), namespace, resource),
        None => Api::all_with(client.clone(), resource),
    };
    let mut params = ListParams::default().limit(PAGE);
    loop {
        let page = api.list(&params).await?;
        for object in page.items {
            if controlled_by_audited(&object, audited) {
                listed.controlled += 1;
                continue;
            }
            listed.objects.push(as_manifest(object, resource));
        }
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(token) => params = params.continue_token(&token),
            None => return Ok(()),
        }
    }
}

/// A Deployment's ReplicaSets and Pods, a CronJob's Jobs: their controller is evaluated, and
/// the same finding once per replica would bury the one that matters.
fn controlled_by_audited(object: &DynamicObject, audited: &[(String, String)]) -> bool {
    object.owner_references().iter().any(|owner| {
        owner.controller == Some(true) && {
            let group = owner.api_version.rsplit_once('/').map_or("", |(g, _)| g);
            audited.iter().any(|(g, k)| g == group && *k == owner.kind)
        }
    })
}

/// The object as its manifest would be: list items carry no apiVersion and kind, and what
/// kube-apiserver keeps for itself (managed fields, kubectl's copy of the last apply) is no
/// rule's business and would double the memory an audit holds.
fn as_manifest(object: DynamicObject, resource: &ApiResource) -> Value {
    let mut value = serde_json::to_value(object).unwrap_or(Value::Null);
    if let Some(map) = value.as_object_mut() {
        map.insert("apiVersion".into(), resource.api_version.clone().into());
        map.insert("kind".into(), resource.kind.clone().into());
        if let Some(metadata) = map.get_mut("metadata").and_then(Value::as_object_mut) {
            metadata.remove("managedFields");
            if let Some(annotations) = metadata
                .get_mut("annotations")
                .and_then(Value::as_object_mut)
            {
                annotations.remove("kubectl.kubernetes.io/last-applied-configuration");
            }
        }
    }
    value
}

/// `applyguard audit`: waits for the cluster inventory (the same watches as serve), lists, and
/// evaluates. Progress goes to stderr; the report is the caller's to print.
pub async fn audit(options: &AuditOptions, policy: Policy) -> Result<Report> {
    let config = kube::Config::infer().await.map_err(|err| {
        anyhow::anyhow!(
            "no Kubernetes API configuration: not running in a cluster and no usable kubeconfig ({err})"
        )
    })?;
    audit_with(config, options, policy).await
}

/// `audit` against the API server `config` names.
pub async fn audit_with(
    config: kube::Config,
    options: &AuditOptions,
    policy: Policy,
) -> Result<Report> {
    let cluster = config.cluster_url.to_string();
    let progress = |line: &str| eprintln!("applyguard audit: {line}");
    let client = Client::try_from(config.clone()).context("cannot build a Kubernetes client")?;
    let inventory = ClusterInventory::connect(config, ClusterOptions::default())
        .context("cannot build a Kubernetes client")?;
    wait_until_ready(&inventory, options.ready_timeout, &progress).await?;
    let listed = list(&client, &policy, options.namespace.as_deref(), &progress).await;
    progress(&format!("evaluating {} object(s)", listed.objects.len()));
    let inventory: Arc<dyn Inventory> = Arc::new(inventory);
    let engine = Engine::with_inventory(policy, inventory)?;
    let mut report = Report {
        cluster: Some(cluster),
        controlled: listed.controlled,
        errors: listed.errors,
        ..Report::default()
    };
    let objects = listed.objects;
    // CPU-bound (rayon inside): off the async workers.
    let report = tokio::task::spawn_blocking(move || {
        crate::scan::evaluate_live(&engine, objects, &mut report);
        report
    })
    .await?;
    Ok(report)
}

/// Every initial list of the inventory done, or an error saying which is missing: an audit
/// with half a cache would report Secrets as missing that exist.
async fn wait_until_ready(
    inventory: &ClusterInventory,
    timeout: Duration,
    progress: &dyn Fn(&str),
) -> Result<()> {
    let start = Instant::now();
    let mut said = Instant::now();
    loop {
        match inventory.readiness() {
            Readiness::Ready => return Ok(()),
            Readiness::NotReady(why) => {
                if start.elapsed() >= timeout {
                    anyhow::bail!(
                        "the cluster inventory is not ready after {} s: {why} (the audit needs list and watch on what the webhook's ClusterRole names)",
                        timeout.as_secs()
                    );
                }
                if said.elapsed() >= Duration::from_secs(5) {
                    progress(&format!("waiting for the cluster inventory: {why}"));
                    said = Instant::now();
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A finding as the background audit tracks it between runs: what and where, not the text.
type FindingKey = (&'static str, &'static str, String, String, String, String);

/// Findings per (rule, mode), for the gauges.
type Counts = BTreeMap<(&'static str, &'static str), i64>;

fn mode(level: Level) -> Option<&'static str> {
    match level {
        Level::Enforce => Some("enforce"),
        Level::Warn => Some("warn"),
        Level::Exempt => Some("exempt"),
        Level::Notice => None,
    }
}

/// What one background run found: per finding its message, and the gauge counts.
fn tally(report: &Report) -> (BTreeMap<FindingKey, String>, Counts) {
    let mut findings = BTreeMap::new();
    let mut counts = BTreeMap::new();
    for f in &report.findings {
        let Some(mode) = mode(f.level) else { continue };
        *counts.entry((f.rule, mode)).or_insert(0) += 1;
        findings.insert(
            (
                f.rule,
                mode,
                f.kind.clone(),
                f.namespace.clone(),
                f.name.clone(),
                f.path.clone(),
            ),
            f.message.clone(),
        );
    }
    (findings, counts)
}

/// One log line per finding that appeared (`found`) or went (`resolved`) since the last run.
fn log_change(key: &FindingKey, message: &str, change: &str) {
    let (rule, mode, kind, namespace, name, path) = key;
    tracing::info!(
        rule,
        mode,
        kind,
        namespace,
        name,
        path,
        finding = message,
        "existing violation {change}"
    );
}

/// serve's `--audit-interval`: the same listing and evaluation as `applyguard audit`, with the
/// engine serve answers with (its policy, reloads included, and its watch cache as inventory),
/// every `interval`. Results go to the `applyguard_existing_violations` gauges and one log line
/// per finding that appeared or went since the last run. The watch cache keeps reference tuples,
/// not objects (it is sized for 100k objects), so each run lists the objects page by page and
/// drops them when evaluated.
pub async fn run_in_background(
    client: Client,
    engine: Arc<arc_swap::ArcSwap<Engine>>,
    metrics: Arc<crate::metrics::Metrics>,
    interval: Duration,
    policy_reports: bool,
) {
    let mut last: Option<BTreeMap<FindingKey, String>> = None;
    let mut said_not_served = false;
    loop {
        // Never judged against a half-listed cache: a Secret not yet listed is not missing.
        while engine.load().inventory().readiness() != Readiness::Ready {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        let started = Instant::now();
        let current = engine.load_full();
        let listed = list(&client, current.policy(), None, &|line| {
            tracing::debug!(progress = line, "background audit")
        })
        .await;
        let complete = listed.errors.is_empty();
        for error in &listed.errors {
            tracing::warn!(error = %error.message, "background audit: a kind could not be listed");
        }
        let objects = listed.objects.len();
        let report = tokio::task::spawn_blocking(move || {
            let mut report = Report::default();
            crate::scan::evaluate_live(&current, listed.objects, &mut report);
            report
        })
        .await
        .unwrap_or_default();
        let (findings, counts) = tally(&report);
        metrics.audited(&counts, complete);
        if last.is_none() {
            tracing::info!(
                objects,
                violations = findings.len(),
                seconds = started.elapsed().as_secs_f64(),
                "background audit: existing objects evaluated"
            );
        }
        // Every finding once, when it first appears, and once more when it goes.
        for (key, message) in &findings {
            if last
                .as_ref()
                .is_none_or(|previous| !previous.contains_key(key))
            {
                log_change(key, message, "found");
            }
        }
        for (key, message) in last.iter().flatten() {
            if !findings.contains_key(key) {
                log_change(key, message, "resolved");
            }
        }
        if policy_reports {
            // Looked up each run: the CRD may be installed (or removed) while serve runs.
            match crate::policy_reports::Reporter::discover(&client).await {
                Some(reporter) => match reporter.write(&report).await {
                    Ok(written) => {
                        tracing::debug!(written, "background audit: PolicyReports written")
                    }
                    Err(err) => {
                        tracing::warn!(error = %err, "background audit: PolicyReports not written")
                    }
                },
                None if !said_not_served => {
                    said_not_served = true;
                    tracing::info!(
                        "background audit: the PolicyReport API (wgpolicyk8s.io/v1alpha2) is not served; no reports written until it is"
                    );
                }
                None => {}
            }
        }
        last = Some(findings);
        tokio::time::sleep(interval).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(value: Value) -> DynamicObject {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn replicas_are_checked_through_their_controller() {
        let audited: Vec<(String, String)> = AUDITED
            .iter()
            .map(|(g, k)| (g.to_string(), k.to_string()))
            .collect();
        let owned = |api_version: &str, kind: &str, controller: bool| {
            object(
                serde_json::json!({"metadata": {"name": "p", "ownerReferences": [
                {"apiVersion": api_version, "kind": kind, "name": "o", "uid": "1", "controller": controller}]}}),
            )
        };
        assert!(controlled_by_audited(
            &owned("apps/v1", "ReplicaSet", true),
            &audited
        ));
        assert!(controlled_by_audited(
            &owned("batch/v1", "Job", true),
            &audited
        ));
        // Not a controller, or a controller applyguard does not evaluate: the object itself is.
        assert!(!controlled_by_audited(
            &owned("apps/v1", "ReplicaSet", false),
            &audited
        ));
        assert!(!controlled_by_audited(
            &owned("core.strimzi.io/v1beta2", "StrimziPodSet", true),
            &audited
        ));
        assert!(!controlled_by_audited(
            &object(serde_json::json!({"metadata": {"name": "bare"}})),
            &audited
        ));
    }

    #[test]
    fn listed_items_become_manifests_without_the_api_servers_bookkeeping() {
        let resource = ApiResource {
            group: "apps".into(),
            version: "v1".into(),
            api_version: "apps/v1".into(),
            kind: "Deployment".into(),
            plural: "deployments".into(),
        };
        let value = as_manifest(
            object(
                serde_json::json!({"metadata": {"name": "d", "namespace": "shop",
                "managedFields": [{"manager": "kubectl"}],
                "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}", "applyguard.io/exempt": "root-container"}},
                "spec": {"replicas": 1}}),
            ),
            &resource,
        );
        assert_eq!(value["apiVersion"], "apps/v1");
        assert_eq!(value["kind"], "Deployment");
        assert!(value["metadata"].get("managedFields").is_none());
        assert_eq!(
            value["metadata"]["annotations"],
            serde_json::json!({"applyguard.io/exempt": "root-container"})
        );
        assert_eq!(value["spec"]["replicas"], 1);
    }
}
