//! The cluster inventory: kube-rs watchers (list + watch, with relists on 410 Gone and dropped
//! connections) feeding an in-memory, indexed cache. No API call is made while answering an
//! admission request.
//!
//! Secrets are decoded into [`SlimSecret`], whose deserializer keeps the name, namespace, type
//! and key names and skips every value (and every annotation, where `kubectl apply` keeps a
//! plaintext copy of the Secret): no Secret value is ever held, not even transiently as a Rust
//! string. ExternalSecret, SealedSecret and Certificate are watched only where discovery shows
//! their API is served. A metadata-only watch of their CustomResourceDefinitions re-runs
//! discovery as soon as one is installed, established or removed, so that a CRD applied together
//! with its objects and the workloads reading them counts within a second; the periodic pass
//! remains for clusters whose RBAC does not grant that watch.
//!
//! Faults: while the API server is unreachable the cache keeps answering from its last state;
//! a watch failing for `stale_after` makes it stale (failureMode applies); the first successful
//! response for that resource clears it, and the resumed watch (or a relist after 410 Gone)
//! catches up. Watch events that repeat or arrive out of order are dropped by resourceVersion
//! (see `versions`), so a replay can never undo a newer state.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Debug;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::{ClusterResourceScope, NamespaceResourceScope};
use kube::api::{Api, ApiResource, DynamicObject, PartialObjectMeta};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource};
use serde::de::{DeserializeOwned, IgnoredAny};
use serde::{Deserialize, Deserializer};
use tokio::task::JoinHandle;

use super::versions::{Verdict, Versions, comparable};
use super::{
    Catalog, ConfigMapInfo, CustomKind, Inventory, Producer, ReaderKind, Readers, Readiness,
    ReferenceGrant, SecretInfo, SharedCatalog, StoreLookup, StoreRef, producer_from_object, read,
    store_info, write,
};
use crate::references::{Reading, readings};
use crate::workload::WorkloadKind;

/// Tuning for the watches.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// How often discovery is re-checked for producer CRDs installed or removed after start.
    pub discovery_interval: Duration,
    /// List page size for the initial list and every relist.
    pub page_size: u32,
    /// A watch that has kept failing for this long means the cache is lost: `secret-ref` then
    /// applies `failureMode` instead of trusting old state.
    pub stale_after: Duration,
    /// A watch whose last error is older than this is no longer counted as failing even if no
    /// successful response was seen (the watch backoff tops out at 30 s, so an outage keeps
    /// producing errors more often than this).
    pub error_gap: Duration,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        ClusterOptions {
            discovery_interval: Duration::from_secs(30),
            stale_after: Duration::from_secs(300),
            error_gap: Duration::from_secs(60),
            page_size: 500,
        }
    }
}

/// Object metadata reduced to what the inventory needs: no annotations, no managed fields.
fn slim_meta<'de, D: Deserializer<'de>>(d: D) -> Result<ObjectMeta, D::Error> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Slim {
        name: Option<String>,
        namespace: Option<String>,
        resource_version: Option<String>,
        uid: Option<String>,
        labels: Option<BTreeMap<String, String>>,
    }
    let slim = Slim::deserialize(d)?;
    Ok(ObjectMeta {
        name: slim.name,
        namespace: slim.namespace,
        resource_version: slim.resource_version,
        uid: slim.uid,
        labels: slim.labels,
        ..ObjectMeta::default()
    })
}

/// The keys of a map; its values are skipped by the parser without being stored.
fn keys_only<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeSet<String>, D::Error> {
    let map: Option<BTreeMap<String, IgnoredAny>> = Option::deserialize(d)?;
    Ok(map.map(|m| m.into_keys().collect()).unwrap_or_default())
}

macro_rules! slim_resource {
    ($name:ident, $kind:literal, $plural:literal, $scope:ty) => {
        impl Resource for $name {
            type DynamicType = ();
            type Scope = $scope;
            fn kind(_: &()) -> std::borrow::Cow<'_, str> {
                $kind.into()
            }
            fn group(_: &()) -> std::borrow::Cow<'_, str> {
                "".into()
            }
            fn version(_: &()) -> std::borrow::Cow<'_, str> {
                "v1".into()
            }
            fn plural(_: &()) -> std::borrow::Cow<'_, str> {
                $plural.into()
            }
            fn meta(&self) -> &ObjectMeta {
                &self.metadata
            }
            fn meta_mut(&mut self) -> &mut ObjectMeta {
                &mut self.metadata
            }
        }
    };
}

/// A Secret without its values.
#[derive(Debug, Clone, Deserialize)]
pub struct SlimSecret {
    #[serde(deserialize_with = "slim_meta")]
    pub metadata: ObjectMeta,
    #[serde(rename = "type", default)]
    pub secret_type: Option<String>,
    #[serde(default, deserialize_with = "keys_only")]
    pub data: BTreeSet<String>,
    #[serde(rename = "stringData", default, deserialize_with = "keys_only")]
    pub string_data: BTreeSet<String>,
}
slim_resource!(SlimSecret, "Secret", "secrets", NamespaceResourceScope);

/// A ConfigMap without annotations and without binary values.
#[derive(Debug, Clone, Deserialize)]
pub struct SlimConfigMap {
    #[serde(deserialize_with = "slim_meta")]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub data: Option<BTreeMap<String, String>>,
    #[serde(rename = "binaryData", default, deserialize_with = "keys_only")]
    pub binary_data: BTreeSet<String>,
}
slim_resource!(
    SlimConfigMap,
    "ConfigMap",
    "configmaps",
    NamespaceResourceScope
);

/// A Namespace: its name and labels.
#[derive(Debug, Clone, Deserialize)]
pub struct SlimNamespace {
    #[serde(deserialize_with = "slim_meta")]
    pub metadata: ObjectMeta,
}
slim_resource!(
    SlimNamespace,
    "Namespace",
    "namespaces",
    ClusterResourceScope
);

/// Per watched resource: has the initial list completed, and the last error.
#[derive(Debug, Clone, Default)]
struct WatchState {
    synced: bool,
    /// Counts towards readiness (the core resources and producers found at start).
    required: bool,
    /// The collection path this watch lists and watches (`/api/v1/secrets`), so that a
    /// successful response on it can be credited to it.
    url: String,
    last_error: Option<String>,
    /// When the current run of errors began (cleared by the first successful response), and
    /// when the last error came.
    failing_since: Option<Instant>,
    last_error_at: Option<Instant>,
}

impl WatchState {
    /// The API server answered this watch: whatever outage there was is over.
    fn recovered(&mut self, resource: &str) {
        if let Some(since) = self.failing_since.take() {
            tracing::info!(
                resource = %resource,
                failing_for_seconds = since.elapsed().as_secs(),
                "API server answering again; the watch resumes and the cache catches up"
            );
        }
        self.last_error = None;
    }
}

struct Shared {
    catalog: SharedCatalog,
    stale_after: Duration,
    error_gap: Duration,
    /// Bumped after every catalog change, so a request can wait briefly for a Secret that was
    /// applied together with the workload (`kubectl apply -f dir/`).
    changed: tokio::sync::watch::Sender<u64>,
    watches: Mutex<BTreeMap<String, WatchState>>,
    /// Has the first discovery pass for producer CRDs completed?
    discovered: Mutex<bool>,
    custom_tasks: Mutex<HashMap<CustomKind, (String, JoinHandle<()>)>>,
    /// Watch events dropped as repeats, and as older than the cached state.
    repeated_events: AtomicU64,
    out_of_order_events: AtomicU64,
}

impl Default for Shared {
    fn default() -> Self {
        Shared {
            catalog: Arc::new(std::sync::RwLock::new(Catalog::for_watches())),
            stale_after: ClusterOptions::default().stale_after,
            error_gap: ClusterOptions::default().error_gap,
            changed: tokio::sync::watch::Sender::new(0),
            watches: Mutex::default(),
            discovered: Mutex::default(),
            custom_tasks: Mutex::default(),
            repeated_events: AtomicU64::new(0),
            out_of_order_events: AtomicU64::new(0),
        }
    }
}

impl Shared {
    fn bump(&self) {
        self.changed
            .send_modify(|generation| *generation = generation.wrapping_add(1));
    }

    fn update(&self, resource: &str, f: impl FnOnce(&mut WatchState)) {
        let mut watches = self.watches.lock().unwrap_or_else(|p| p.into_inner());
        f(watches.entry(resource.to_string()).or_default());
    }

    /// A successful response on `path`: the watches of that collection are connected.
    fn answered(&self, path: &str) {
        let mut watches = self.watches.lock().unwrap_or_else(|p| p.into_inner());
        for (resource, w) in watches.iter_mut().filter(|(_, w)| w.url == path) {
            w.recovered(resource);
        }
    }
}

/// The kube client the watches use, wrapped to see each response's status: kube's watcher
/// reports failures as events but resumes silently, and without this a recovered API server
/// would only be noticed at the next change.
#[derive(Clone)]
struct Observed {
    client: Client,
    shared: Arc<Shared>,
}

impl tower_service::Service<http::Request<kube::client::Body>> for Observed {
    type Response = http::Response<kube::client::Body>;
    type Error = kube::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // `Client::send` waits for readiness itself.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<kube::client::Body>) -> Self::Future {
        let client = self.client.clone();
        let shared = self.shared.clone();
        let path = request.uri().path().to_string();
        Box::pin(async move {
            let response = client.send(request).await?;
            if response.status().is_success() {
                shared.answered(&path);
            }
            Ok(response)
        })
    }
}

/// How one resource's events change the catalog.
trait Sink<K>: Send + Sync + 'static {
    fn put(&self, catalog: &mut Catalog, object: &K);
    fn remove(&self, catalog: &mut Catalog, object: &K);
    fn clear(&self, catalog: &mut Catalog);
}

fn name_ns<K: Resource>(object: &K) -> (String, String) {
    let meta = object.meta();
    (
        meta.namespace.clone().unwrap_or_default(),
        meta.name.clone().unwrap_or_default(),
    )
}

struct Secrets;
impl Sink<SlimSecret> for Secrets {
    fn put(&self, catalog: &mut Catalog, s: &SlimSecret) {
        let (ns, name) = name_ns(s);
        let keys = s.data.union(&s.string_data).cloned().collect();
        let secret_type = s
            .secret_type
            .clone()
            .unwrap_or_else(|| "Opaque".to_string());
        catalog.put_secret(&ns, &name, SecretInfo { secret_type, keys });
    }
    fn remove(&self, catalog: &mut Catalog, s: &SlimSecret) {
        let (ns, name) = name_ns(s);
        catalog.remove_secret(&ns, &name);
    }
    fn clear(&self, catalog: &mut Catalog) {
        catalog.clear_secrets();
    }
}

struct ConfigMaps;
impl Sink<SlimConfigMap> for ConfigMaps {
    fn put(&self, catalog: &mut Catalog, c: &SlimConfigMap) {
        let (ns, name) = name_ns(c);
        let info = ConfigMapInfo {
            data: c
                .data
                .iter()
                .flatten()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect(),
            binary_keys: c.binary_data.clone(),
        };
        catalog.put_config_map(&ns, &name, info);
    }
    fn remove(&self, catalog: &mut Catalog, c: &SlimConfigMap) {
        let (ns, name) = name_ns(c);
        catalog.remove_config_map(&ns, &name);
    }
    fn clear(&self, catalog: &mut Catalog) {
        catalog.clear_config_maps();
    }
}

struct Namespaces;
impl Sink<SlimNamespace> for Namespaces {
    fn put(&self, catalog: &mut Catalog, n: &SlimNamespace) {
        let (_, name) = name_ns(n);
        catalog.put_namespace(&name, n.metadata.labels.clone().unwrap_or_default());
    }
    fn remove(&self, catalog: &mut Catalog, n: &SlimNamespace) {
        let (_, name) = name_ns(n);
        catalog.remove_namespace(&name);
    }
    fn clear(&self, catalog: &mut Catalog) {
        catalog.clear_namespaces();
    }
}

/// A custom resource's events: producers, stores and ReferenceGrants.
struct Custom(CustomKind);
impl Sink<DynamicObject> for Custom {
    fn put(&self, catalog: &mut Catalog, object: &DynamicObject) {
        let (ns, name) = name_ns(object);
        match self.0 {
            CustomKind::Producer(kind) => {
                // Remove first: an update may change the target, or stop producing
                // (creationPolicy: None).
                catalog.remove_producer(kind, &ns, &name);
                if let Ok(value) = serde_json::to_value(object)
                    && let Some(producer) = producer_from_object(kind, &value, &ns)
                {
                    catalog.put_producer(producer);
                }
            }
            CustomKind::Store(kind) => {
                let status = serde_json::json!({"status": object.data.get("status")});
                catalog.put_store(kind, &ns, &name, store_info(&status));
            }
            CustomKind::ReferenceGrant => {
                catalog.remove_grant(&ns, &name);
                if let Ok(value) = serde_json::to_value(object)
                    && let Some(grant) = ReferenceGrant::from_object(&value)
                {
                    catalog.put_grant(&ns, grant);
                }
            }
            // Workloads are watched as `WorkloadReadings` (the `Readings` sink), never as
            // whole objects.
            CustomKind::Reader(_) => {}
        }
    }
    fn remove(&self, catalog: &mut Catalog, object: &DynamicObject) {
        let (ns, name) = name_ns(object);
        match self.0 {
            CustomKind::Producer(kind) => catalog.remove_producer(kind, &ns, &name),
            CustomKind::Store(kind) => catalog.remove_store(kind, &ns, &name),
            CustomKind::ReferenceGrant => catalog.remove_grant(&ns, &name),
            CustomKind::Reader(kind) => catalog.remove_readings(kind, &ns, &name),
        }
    }
    fn clear(&self, catalog: &mut Catalog) {
        match self.0 {
            CustomKind::Producer(kind) => catalog.clear_producers(kind),
            CustomKind::Store(kind) => catalog.clear_stores(kind),
            CustomKind::ReferenceGrant => catalog.clear_grants(),
            CustomKind::Reader(kind) => catalog.clear_readings(kind),
        }
    }
}

/// A workload as the references index reads it from a watch: its identity and the Secrets its
/// pod spec reads, worked out while the object is parsed. A list of 20k Pods is buffered until
/// it completes (so a relist replaces the index in one step); buffering reference tuples
/// instead of Pods keeps that from costing hundreds of MiB.
#[derive(Debug, Clone)]
pub struct WorkloadReadings {
    metadata: ObjectMeta,
    /// `None` when the object has no pod spec or is controlled by another object.
    readings: Option<Vec<Reading>>,
}

impl<'de> Deserialize<'de> for WorkloadReadings {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Owners {
            #[serde(default)]
            owner_references: serde_json::Value,
        }
        #[derive(Deserialize)]
        struct Raw {
            metadata: serde_json::Value,
            #[serde(default)]
            spec: serde_json::Value,
        }
        let raw = Raw::deserialize(d)?;
        let owners = Owners::deserialize(&raw.metadata).map_err(serde::de::Error::custom)?;
        let metadata = slim_meta(&raw.metadata).map_err(serde::de::Error::custom)?;
        // List items carry no `kind`; the pod spec's place tells the kinds apart, and all
        // template kinds share the path `spec.template.spec`.
        let kind = if raw.spec.get("jobTemplate").is_some() {
            WorkloadKind::CronJob
        } else if raw.spec.get("template").is_some() {
            WorkloadKind::Deployment
        } else {
            WorkloadKind::Pod
        };
        let object = serde_json::json!({
            "metadata": {"ownerReferences": owners.owner_references},
            "spec": raw.spec,
        });
        Ok(WorkloadReadings {
            metadata,
            readings: readings(kind, &object),
        })
    }
}

impl Resource for WorkloadReadings {
    type DynamicType = ApiResource;
    type Scope = kube::core::DynamicResourceScope;
    fn kind(dt: &ApiResource) -> std::borrow::Cow<'_, str> {
        dt.kind.as_str().into()
    }
    fn group(dt: &ApiResource) -> std::borrow::Cow<'_, str> {
        dt.group.as_str().into()
    }
    fn version(dt: &ApiResource) -> std::borrow::Cow<'_, str> {
        dt.version.as_str().into()
    }
    fn api_version(dt: &ApiResource) -> std::borrow::Cow<'_, str> {
        dt.api_version.as_str().into()
    }
    fn plural(dt: &ApiResource) -> std::borrow::Cow<'_, str> {
        dt.plural.as_str().into()
    }
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

/// A workload kind's events: its entries in the references index.
struct Readings(ReaderKind);
impl Sink<WorkloadReadings> for Readings {
    fn put(&self, catalog: &mut Catalog, object: &WorkloadReadings) {
        let (ns, name) = name_ns(object);
        match &object.readings {
            Some(readings) => catalog.put_readings(self.0, &ns, &name, readings.clone()),
            None => catalog.remove_readings(self.0, &ns, &name),
        }
    }
    fn remove(&self, catalog: &mut Catalog, object: &WorkloadReadings) {
        let (ns, name) = name_ns(object);
        catalog.remove_readings(self.0, &ns, &name);
    }
    fn clear(&self, catalog: &mut Catalog) {
        catalog.clear_readings(self.0);
    }
}

impl Custom {
    /// The API is no longer served (or not yet watched): forget what was held, and say
    /// "unknown" rather than "missing" where that matters.
    fn forget(&self, catalog: &mut Catalog) {
        match self.0 {
            CustomKind::Producer(kind) => catalog.clear_producers(kind),
            CustomKind::Store(kind) => catalog.forget_stores(kind),
            CustomKind::ReferenceGrant => catalog.forget_grants(),
            CustomKind::Reader(kind) => catalog.forget_readings(kind),
        }
    }
}

/// Runs one watch until aborted: relists (Init..InitDone) replace that resource's entries in
/// one step, so a relist after 410 Gone or a dropped connection never shows a half-empty cache.
async fn run_watch<K, S>(
    shared: Arc<Shared>,
    resource: String,
    api: Api<K>,
    page_size: u32,
    sink: S,
) where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    S: Sink<K>,
{
    shared.update(&resource, |w| w.url = api.resource_url().to_string());
    // The default list semantic (a consistent read, not resourceVersion=0) matters: a relist
    // served from a lagging API server's cache could otherwise take the cache back in time.
    let config = watcher::Config::default().page_size(page_size);
    let mut stream = watcher(api, config).boxed();
    let mut buffer: Option<Vec<K>> = None;
    let mut versions = Versions::default();
    let mut backoff = Backoff::default();
    while let Some(event) = stream.next().await {
        if event.is_ok() {
            backoff.reset();
        }
        match event {
            Ok(watcher::Event::Init) => buffer = Some(Vec::new()),
            Ok(watcher::Event::InitApply(object)) => {
                buffer.get_or_insert_with(Vec::new).push(object)
            }
            Ok(watcher::Event::InitDone) => {
                let objects = buffer.take().unwrap_or_default();
                let count = objects.len();
                versions.reset(objects.iter().map(identity));
                {
                    let mut catalog = write(&shared.catalog);
                    sink.clear(&mut catalog);
                    for object in &objects {
                        sink.put(&mut catalog, object);
                    }
                }
                shared.bump();
                shared.update(&resource, |w| {
                    if !w.synced {
                        tracing::info!(resource = %resource, objects = count, "inventory synced");
                    }
                    w.synced = true;
                    w.recovered(&resource);
                });
            }
            Ok(watcher::Event::Apply(object)) => {
                live_event(&shared, &resource, &sink, &mut versions, &object, false)
            }
            Ok(watcher::Event::Delete(object)) => {
                live_event(&shared, &resource, &sink, &mut versions, &object, true)
            }
            Err(err) if is_expired(&err) && backoff.expired_at_once() => {
                // 410 Gone: our resourceVersion was compacted away (after an API server restart,
                // or a watch resumed late). The server is answering, so this is no outage:
                // relist at once. Waiting out a backoff grown during an outage just before
                // would leave the cache behind, unnoticed, for up to 30 s.
                tracing::info!(resource = %resource, error = %err, "resourceVersion expired (410 Gone); relisting now");
            }
            Err(err) => {
                let delay = backoff.next_delay();
                tracing::warn!(resource = %resource, error = %err, retry_in_ms = delay.as_millis() as u64, "watch failed; retrying with backoff (the cache keeps its last state)");
                shared.update(&resource, |w| {
                    let now = Instant::now();
                    let continuing = w.failing_since.is_some()
                        && w.last_error_at
                            .is_some_and(|at| now.duration_since(at) < shared.error_gap);
                    if !continuing {
                        w.failing_since = Some(now);
                    }
                    w.last_error_at = Some(now);
                    w.last_error = Some(err.to_string());
                });
                tokio::time::sleep(delay).await;
            }
        }
    }
}

/// Whether a watch error is 410 Gone (`too old resource version` / `Expired`).
fn is_expired(err: &watcher::Error) -> bool {
    match err {
        watcher::Error::WatchError(status) => status.code == 410,
        watcher::Error::InitialListFailed(kube::Error::Api(status))
        | watcher::Error::WatchStartFailed(kube::Error::Api(status))
        | watcher::Error::WatchFailed(kube::Error::Api(status)) => status.code == 410,
        _ => false,
    }
}

/// The watches' retry delay: 0.8 s doubling to 30 s, with jitter, back to the start at the first
/// event that arrives; 410 Gone retried at once. (kube's default backoff only resets after 120 s without errors, so a 410
/// right after an outage waited as long as the outage's last retry.)
#[derive(Debug, Default)]
struct Backoff {
    failures: u32,
    expired: u32,
}

impl Backoff {
    const FIRST: Duration = Duration::from_millis(800);
    const MAX: Duration = Duration::from_secs(30);

    fn reset(&mut self) {
        self.failures = 0;
        self.expired = 0;
    }

    /// A 410 is retried at once, but only twice in a row: a server answering 410 to every
    /// fresh list as well is retried with backoff like any other error.
    fn expired_at_once(&mut self) -> bool {
        self.expired += 1;
        self.expired <= 2
    }

    fn next_delay(&mut self) -> Duration {
        let exponential = Self::FIRST
            .saturating_mul(1 << self.failures.min(6))
            .min(Self::MAX);
        self.failures = self.failures.saturating_add(1);
        // Up to a quarter less, so replicas that lost the API server together do not all
        // come back in the same instant.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        exponential - exponential.mul_f64(f64::from(nanos % 1000) / 4000.0)
    }
}

/// One ADDED/MODIFIED (`deleted` false) or DELETED event from the watch: applied to the
/// catalog unless it is not newer than what the catalog holds for that object.
fn live_event<K: Resource, S: Sink<K>>(
    shared: &Shared,
    resource: &str,
    sink: &S,
    versions: &mut Versions,
    object: &K,
    deleted: bool,
) {
    let (namespace, name, rv) = identity(object);
    let verdict = if deleted {
        versions.delete(namespace, name, rv)
    } else {
        versions.apply(namespace, name, rv)
    };
    if verdict == Verdict::Apply {
        let mut catalog = write(&shared.catalog);
        if deleted {
            sink.remove(&mut catalog, object);
        } else {
            sink.put(&mut catalog, object);
        }
        drop(catalog);
        shared.bump();
    } else {
        let counter = if verdict == Verdict::OutOfOrder {
            &shared.out_of_order_events
        } else {
            &shared.repeated_events
        };
        counter.fetch_add(1, Ordering::Relaxed);
        let event = if deleted { "DELETED" } else { "ADDED/MODIFIED" };
        ignored(resource, event, object, verdict);
    }
    shared.update(resource, |w| w.recovered(resource));
}

/// Namespace, name and comparable resourceVersion of a watched object.
fn identity<K: Resource>(object: &K) -> (&str, &str, Option<u64>) {
    let meta = object.meta();
    (
        meta.namespace.as_deref().unwrap_or_default(),
        meta.name.as_deref().unwrap_or_default(),
        comparable(meta.resource_version.as_deref()),
    )
}

/// Logs a watch event the cache did not apply. A replay is routine after a resumed watch;
/// an event older than the cached state is not, and is worth a warning.
fn ignored<K: Resource>(resource: &str, event: &str, object: &K, verdict: Verdict) {
    let (namespace, name, _) = identity(object);
    let rv = object
        .meta()
        .resource_version
        .as_deref()
        .unwrap_or_default();
    if verdict == Verdict::OutOfOrder {
        tracing::warn!(resource = %resource, event, namespace, name, resource_version = rv,
            "ignored a watch event older than the cached state (out of order)");
    } else {
        tracing::debug!(resource = %resource, event, namespace, name, resource_version = rv,
            "ignored a repeated watch event");
    }
}

/// Discovers which version of a custom resource's API is served, if any.
async fn served_version(client: &Client, kind: CustomKind) -> Result<Option<String>, kube::Error> {
    for version in kind.versions() {
        let resources = if kind.group().is_empty() {
            client.list_core_api_resources(version).await
        } else {
            client
                .list_api_group_resources(&format!("{}/{version}", kind.group()))
                .await
        };
        match resources {
            Ok(list) if list.resources.iter().any(|r| r.name == kind.resource()) => {
                return Ok(Some(version.to_string()));
            }
            Ok(_) => {}
            Err(kube::Error::Api(status)) if status.code == 404 => {}
            Err(err) => return Err(err),
        }
    }
    Ok(None)
}

/// One discovery pass: start watches for custom APIs that appeared, stop those that went.
async fn discover(
    shared: &Arc<Shared>,
    client: &Client,
    page_size: u32,
    first: bool,
) -> Result<(), kube::Error> {
    for kind in CustomKind::ALL {
        let version = served_version(client, kind).await?;
        if version.is_none()
            && let CustomKind::Reader(reader) = kind
        {
            // No API, no such workloads: known to read nothing (not "unknown").
            write(&shared.catalog).clear_readings(reader);
        }
        let removed = {
            let mut tasks = shared
                .custom_tasks
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            let current = tasks.get(&kind).map(|(v, _)| v.clone());
            if current == version {
                continue;
            }
            tasks.remove(&kind)
        };
        if let Some((old, handle)) = removed {
            // Wait for the task to be gone before clearing, so a write it was about to make
            // cannot bring stale producers back.
            handle.abort();
            let _ = handle.await;
            Custom(kind).forget(&mut write(&shared.catalog));
            shared
                .watches
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&format!("{}.{}/{old}", kind.resource(), kind.group()));
            tracing::info!(kind = kind.kind(), version = %old, "API no longer served; stopped watching");
        }
        if let Some(version) = version {
            let resource = format!("{}.{}/{version}", kind.resource(), kind.group());
            let api_resource = ApiResource {
                group: kind.group().to_string(),
                version: version.clone(),
                api_version: kind.api_version(&version),
                kind: kind.kind().to_string(),
                plural: kind.resource().to_string(),
            };
            // Kinds found at start-up must sync before ready; one installed later is
            // watched without taking every replica out of service while it lists.
            shared.update(&resource, |w| {
                w.required = first && kind.required_for_readiness()
            });
            let handle = match kind {
                CustomKind::Reader(reader) => tokio::spawn(run_watch(
                    shared.clone(),
                    resource.clone(),
                    Api::<WorkloadReadings>::all_with(client.clone(), &api_resource),
                    page_size,
                    Readings(reader),
                )),
                _ => tokio::spawn(run_watch(
                    shared.clone(),
                    resource.clone(),
                    Api::<DynamicObject>::all_with(client.clone(), &api_resource),
                    page_size,
                    Custom(kind),
                )),
            };
            tracing::info!(kind = kind.kind(), %version, "API served; watching");
            shared
                .custom_tasks
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(kind, (version, handle));
        }
    }
    Ok(())
}

/// Wakes discovery whenever the CustomResourceDefinition of a producer kind is added, changed
/// (it becomes Established, a version is added) or deleted. Metadata only: a CRD's schema can be
/// megabytes and nothing in it is needed. Without RBAC for the watch (a ClusterRole from before
/// it was added) discovery keeps its periodic pass and this says so once.
async fn watch_producer_crds(
    api: Api<PartialObjectMeta<CustomResourceDefinition>>,
    rediscover: Arc<tokio::sync::Notify>,
) {
    let names: BTreeSet<String> = CustomKind::ALL.iter().map(|k| k.crd_name()).collect();
    let mut events = std::pin::pin!(watcher(api, watcher::Config::default()).default_backoff());
    let mut warned = false;
    while let Some(event) = events.next().await {
        match event {
            Ok(watcher::Event::Apply(crd) | watcher::Event::Delete(crd)) => {
                if crd
                    .metadata
                    .name
                    .as_ref()
                    .is_some_and(|n| names.contains(n))
                {
                    rediscover.notify_one();
                }
            }
            Ok(_) => {}
            Err(err) => {
                if !warned {
                    warned = true;
                    tracing::warn!(
                        error = %err,
                        "cannot watch CustomResourceDefinitions (RBAC: list and watch on \
                         apiextensions.k8s.io customresourcedefinitions); producer CRDs \
                         installed from now on are noticed by the periodic discovery pass only"
                    );
                }
            }
        }
    }
}

/// Cluster state from the API server, kept current by watches.
pub struct ClusterInventory {
    shared: Arc<Shared>,
    tasks: Vec<JoinHandle<()>>,
}

impl ClusterInventory {
    /// Builds the client for `config` and starts the watches (see `start`).
    ///
    /// kube's default client retries 429/503/504 up to 15 times with backoff growing to
    /// minutes: an API server answering 503 would keep a watch request pending for about six
    /// minutes without one error reaching us, so the cache would never be reported stale.
    /// The watcher's own backoff (capped at 30 s) is the only retry the watches need.
    pub fn connect(
        mut config: kube::Config,
        options: ClusterOptions,
    ) -> Result<ClusterInventory, kube::Error> {
        config.default_retry = false;
        Ok(ClusterInventory::start(Client::try_from(config)?, options))
    }

    /// Starts the watches and the discovery loop on an existing client. Returns at once;
    /// `readiness()` turns `Ready` once every initial list has completed.
    pub fn start(client: Client, options: ClusterOptions) -> ClusterInventory {
        let shared = Arc::new(Shared {
            stale_after: options.stale_after,
            error_gap: options.error_gap,
            ..Shared::default()
        });
        let default_namespace = client.default_namespace().to_string();
        let client = Client::new(
            Observed {
                client,
                shared: shared.clone(),
            },
            default_namespace,
        );
        for resource in ["secrets", "configmaps", "namespaces"] {
            shared.update(resource, |w| w.required = true);
        }
        let page = options.page_size;
        let mut tasks = vec![
            tokio::spawn(run_watch(
                shared.clone(),
                "secrets".into(),
                Api::<SlimSecret>::all(client.clone()),
                page,
                Secrets,
            )),
            tokio::spawn(run_watch(
                shared.clone(),
                "configmaps".into(),
                Api::<SlimConfigMap>::all(client.clone()),
                page,
                ConfigMaps,
            )),
            tokio::spawn(run_watch(
                shared.clone(),
                "namespaces".into(),
                Api::<SlimNamespace>::all(client.clone()),
                page,
                Namespaces,
            )),
        ];
        let rediscover = Arc::new(tokio::sync::Notify::new());
        tasks.push(tokio::spawn(watch_producer_crds(
            Api::all(client.clone()),
            rediscover.clone(),
        )));
        let discovery_shared = shared.clone();
        tasks.push(tokio::spawn(async move {
            let mut first = true;
            loop {
                match discover(&discovery_shared, &client, page, first).await {
                    Ok(()) => {
                        if first {
                            *discovery_shared
                                .discovered
                                .lock()
                                .unwrap_or_else(|p| p.into_inner()) = true;
                        }
                        first = false;
                        tokio::select! {
                            _ = tokio::time::sleep(options.discovery_interval) => {}
                            _ = rediscover.notified() => {}
                        }
                    }
                    Err(err) => {
                        tracing::warn!(error = %err, "discovery of custom resource APIs failed; retrying");
                        let retry = if first {
                            Duration::from_secs(1)
                        } else {
                            options.discovery_interval
                        };
                        tokio::time::sleep(retry.min(options.discovery_interval)).await;
                    }
                }
            }
        }));
        ClusterInventory { shared, tasks }
    }

    /// Object counts per resource.
    pub fn counts(&self) -> BTreeMap<&'static str, usize> {
        read(&self.shared.catalog).counts()
    }

    /// Resources being watched, and whether each has synced.
    pub fn watches(&self) -> BTreeMap<String, bool> {
        self.shared
            .watches
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(k, w)| (k.clone(), w.synced))
            .collect()
    }

    /// A debug dump of everything the cache holds (tests assert no Secret value is in it).
    pub fn dump(&self) -> String {
        format!("{:?}", *read(&self.shared.catalog))
    }
}

impl Drop for ClusterInventory {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
        for (_, (_, handle)) in self
            .shared
            .custom_tasks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain()
        {
            handle.abort();
        }
    }
}

impl Inventory for ClusterInventory {
    fn secret(&self, namespace: &str, name: &str) -> Option<SecretInfo> {
        read(&self.shared.catalog).secret(namespace, name)
    }
    fn producers(&self, namespace: &str, secret: &str) -> Vec<Producer> {
        read(&self.shared.catalog).producers(namespace, secret)
    }
    fn secret_names(&self, namespace: &str) -> Vec<String> {
        read(&self.shared.catalog).secret_names(namespace)
    }
    fn namespaces_with_secret(&self, name: &str, except: &str) -> Vec<String> {
        read(&self.shared.catalog).namespaces_with_secret(name, except)
    }
    fn config_map(&self, namespace: &str, name: &str) -> Option<ConfigMapInfo> {
        read(&self.shared.catalog).config_map(namespace, name)
    }
    fn namespace_labels(&self, name: &str) -> Option<BTreeMap<String, String>> {
        read(&self.shared.catalog).namespace_labels(name)
    }
    fn secret_store(&self, namespace: &str, store: &StoreRef) -> StoreLookup {
        read(&self.shared.catalog).secret_store(namespace, store)
    }
    fn reference_grants(&self, namespace: &str) -> Option<Vec<ReferenceGrant>> {
        read(&self.shared.catalog).reference_grants(namespace)
    }
    fn readers(&self, namespace: &str, secret: &str) -> Readers {
        read(&self.shared.catalog).readers(namespace, secret)
    }
    fn readiness(&self) -> Readiness {
        let mut pending: Vec<String> = self
            .shared
            .watches
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|(_, w)| w.required && !w.synced)
            .map(|(name, w)| match &w.last_error {
                Some(err) => format!("{name} (last error: {err})"),
                None => name.clone(),
            })
            .collect();
        if !*self
            .shared
            .discovered
            .lock()
            .unwrap_or_else(|p| p.into_inner())
        {
            pending.push("discovery of the producer, store and ReferenceGrant APIs".to_string());
        }
        if pending.is_empty() {
            Readiness::Ready
        } else {
            Readiness::NotReady(format!(
                "initial list not complete for {}",
                pending.join(", ")
            ))
        }
    }
    fn source(&self) -> &str {
        "the cluster"
    }
    fn changes(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        Some(self.shared.changed.subscribe())
    }
    fn stale(&self) -> Option<String> {
        let now = Instant::now();
        let failing: Vec<String> = self
            .shared
            .watches
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|(_, w)| w.synced)
            .filter_map(|(name, w)| {
                let since = w.failing_since?;
                let last = w.last_error_at?;
                (now.duration_since(since) >= self.shared.stale_after
                    && now.duration_since(last) < self.shared.error_gap)
                    .then(|| {
                        format!(
                            "watch of {name} failing for {}s ({})",
                            now.duration_since(since).as_secs(),
                            w.last_error.as_deref().unwrap_or("unknown error")
                        )
                    })
            })
            .collect();
        (!failing.is_empty()).then(|| format!("cache may be stale: {}", failing.join(", ")))
    }
    fn counts(&self) -> BTreeMap<&'static str, usize> {
        read(&self.shared.catalog).counts()
    }
    fn ignored_events(&self) -> (u64, u64) {
        (
            self.shared.repeated_events.load(Ordering::Relaxed),
            self.shared.out_of_order_events.load(Ordering::Relaxed),
        )
    }
}
