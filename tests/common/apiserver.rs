//! A fake kube-apiserver over plain HTTP for integration tests: discovery, get, list and watch.
#![allow(dead_code)]
//
// What it models, and why:
// - One global, monotonic resourceVersion shared by all resources, like etcd's revision, so a
//   watch can resume from any version a list or event handed out.
// - A history of events that watches replay from their requested resourceVersion, so clients
//   that reconnect after `drop_watches` catch up exactly like against a real apiserver.
// - A compaction point (`expire_watches`): resuming from anything older yields the same
//   `410 Expired` ERROR event inside a 200 watch stream that kube-apiserver's watch cache sends,
//   which is what makes kube-runtime's watcher fall back to a relist.
// - Paginated lists are served from a snapshot taken at the first page, so every page of one
//   list is consistent (as etcd guarantees) even if objects change in between.
// - Watch with `resourceVersion` unset or "0", and `sendInitialEvents=true` (streaming list,
//   KEP-3157), start with synthetic ADDED events for the current state; streaming lists then end
//   the initial part with a BOOKMARK annotated `k8s.io/initial-events-end: "true"`.
// - Discovery answers legacy JSON, and aggregated discovery (apidiscovery.k8s.io/v2) when the
//   Accept header asks for it: kube's `Discovery::run_aggregated` has no fallback and would
//   silently see zero groups if it got legacy JSON back.
// - Faults: `go_away`/`come_back` (listener closed and every connection cut, then the same
//   address served again with whatever changed meanwhile), `set_unavailable` (every request
//   answered 503, as an API server whose etcd is gone does), and `inject` (a raw event on open
//   watches without changing state: duplicates and out-of-order delivery).
// Not modelled: label/field selectors (ignored), writes over HTTP (405), authentication.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::Response;
use serde_json::{Map, Value, json};
use tokio::sync::{mpsc, watch};

/// Upper bound for a watch's lifetime; tests never need longer and kube asks for 290s.
const MAX_WATCH_SECONDS: u64 = 300;
const INITIAL_EVENTS_END: &str = "k8s.io/initial-events-end";

#[derive(Clone, Debug, PartialEq, Eq)]
struct Gvr {
    group: String,
    version: String,
    plural: String,
}

impl Gvr {
    fn new(group: &str, version: &str, plural: &str) -> Self {
        Gvr {
            group: group.to_string(),
            version: version.to_string(),
            plural: plural.to_string(),
        }
    }

    fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }
}

struct ResourceDef {
    gvr: Gvr,
    kind: String,
    namespaced: bool,
    /// Keyed by (namespace or "", name): etcd key order, which is the order real lists use.
    objects: BTreeMap<(String, String), Value>,
}

impl ResourceDef {
    fn singular(&self) -> String {
        self.kind.to_lowercase()
    }

    fn visible(&self, namespace: Option<&str>) -> Vec<Value> {
        self.objects
            .iter()
            .filter(|((ns, _), _)| namespace.is_none_or(|want| want == ns))
            .map(|(_, obj)| obj.clone())
            .collect()
    }
}

struct HistoryEvent {
    gvr: Gvr,
    namespace: String,
    rv: u64,
    line: Bytes,
}

enum WatchMsg {
    Line(Bytes),
    /// End the response with a body error, which makes hyper close the connection mid-chunk.
    Abort,
}

struct Watcher {
    id: u64,
    gvr: Gvr,
    namespace: Option<String>,
    bookmarks: bool,
    kind: String,
    /// Last resourceVersion this watch has been told about (for the 410 message).
    last_rv: u64,
    tx: mpsc::UnboundedSender<WatchMsg>,
}

/// All pages of one paginated list come from the same snapshot.
struct Snapshot {
    gvr: Gvr,
    namespace: Option<String>,
    rv: u64,
    items: Arc<Vec<Value>>,
}

struct Inner {
    resources: Vec<ResourceDef>,
    rv: u64,
    /// Watches and continue tokens from before this resourceVersion are gone (410).
    compacted: u64,
    history: Vec<HistoryEvent>,
    watchers: Vec<Watcher>,
    snapshots: HashMap<u64, Snapshot>,
    next_id: u64,
    requests: Vec<String>,
}

impl Inner {
    fn find(&self, gvr: &Gvr) -> Option<usize> {
        self.resources.iter().position(|r| &r.gvr == gvr)
    }

    fn next_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// Records an event and fans it out; watches whose client went away are forgotten.
    fn emit(&mut self, gvr: &Gvr, namespace: &str, kind: &str, object: &Value) {
        let rv = self.rv;
        let line = event_line(kind, object);
        self.history.push(HistoryEvent {
            gvr: gvr.clone(),
            namespace: namespace.to_string(),
            rv,
            line: line.clone(),
        });
        self.watchers.retain_mut(|w| {
            if &w.gvr != gvr || w.namespace.as_deref().is_some_and(|ns| ns != namespace) {
                return !w.tx.is_closed();
            }
            w.last_rv = rv;
            w.tx.send(WatchMsg::Line(line.clone())).is_ok()
        });
    }
}

struct Shared {
    inner: Mutex<Inner>,
    /// Plurals whose list requests are currently held back.
    holds: watch::Sender<BTreeSet<String>>,
    /// Answer every request with 503 Service Unavailable.
    unavailable: AtomicBool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panicking test helper must not wedge every later request.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A running fake apiserver; dropping it ends open watches and stops accepting connections.
pub struct FakeApiServer {
    shared: Arc<Shared>,
    addr: SocketAddr,
    /// The accept loop, which owns every connection: aborting it cuts them all.
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Drop for FakeApiServer {
    fn drop(&mut self) {
        self.drop_watches();
        if let Some(task) = self.take_task() {
            task.abort();
        }
    }
}

/// Accepts connections until aborted; connections live in a JoinSet owned by this future, so
/// aborting it closes the listener and cuts every open connection, as a dead process would.
async fn serve(listener: tokio::net::TcpListener, shared: Arc<Shared>) {
    let app = Router::new().fallback(handle).with_state(shared);
    let mut connections = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let service = hyper_util::service::TowerToHyperService::new(app.clone());
                connections.spawn(async move {
                    let _ = hyper_util::server::conn::auto::Builder::new(
                        hyper_util::rt::TokioExecutor::new(),
                    )
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
                });
            }
            Some(_) = connections.join_next() => {}
        }
    }
}

/// Binds `addr` (port 0 for any), allowing a quick rebind of an address just closed.
fn bind(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(128)
}

impl FakeApiServer {
    /// Starts on 127.0.0.1 on an ephemeral port, serving core/v1 secrets, configmaps and
    /// namespaces (no objects, not even the `default` namespace).
    pub async fn start() -> FakeApiServer {
        let (holds, _) = watch::channel(BTreeSet::new());
        let shared = Arc::new(Shared {
            inner: Mutex::new(Inner {
                resources: Vec::new(),
                rv: 1,
                compacted: 0,
                history: Vec::new(),
                watchers: Vec::new(),
                snapshots: HashMap::new(),
                next_id: 0,
                requests: Vec::new(),
            }),
            holds,
            unavailable: AtomicBool::new(false),
        });
        let listener = bind(SocketAddr::from(([127, 0, 0, 1], 0))).expect("bind fake apiserver");
        let addr = listener.local_addr().expect("fake apiserver address");
        let task = tokio::spawn(serve(listener, shared.clone()));
        let server = FakeApiServer {
            shared,
            addr,
            task: Mutex::new(Some(task)),
        };
        server.add_resource("", "v1", "Secret", "secrets", true);
        server.add_resource("", "v1", "ConfigMap", "configmaps", true);
        server.add_resource("", "v1", "Namespace", "namespaces", false);
        server
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Client configuration for this server, default namespace "default".
    pub fn config(&self) -> kube::Config {
        let uri: axum::http::Uri = self.url().parse().expect("fake apiserver url");
        kube::Config::new(uri)
    }

    /// A kube client for this server (with kube's default retries).
    pub fn client(&self) -> kube::Client {
        kube::Client::try_from(self.config()).expect("kube client for fake apiserver")
    }

    /// Registers a resource for discovery, get, list and watch. Registering the same
    /// group/version/plural again updates its kind and scope and keeps its objects.
    pub fn add_resource(
        &self,
        group: &str,
        version: &str,
        kind: &str,
        plural: &str,
        namespaced: bool,
    ) {
        let gvr = Gvr::new(group, version, plural);
        let mut inner = self.shared.lock();
        match inner.find(&gvr) {
            Some(i) => {
                inner.resources[i].kind = kind.to_string();
                inner.resources[i].namespaced = namespaced;
            }
            None => inner.resources.push(ResourceDef {
                gvr,
                kind: kind.to_string(),
                namespaced,
                objects: BTreeMap::new(),
            }),
        }
    }

    /// Unregisters a resource, as deleting its CRD does: its objects are gone, discovery stops
    /// listing it, open watches on it end, and later requests get 404.
    pub fn remove_resource(&self, group: &str, version: &str, plural: &str) {
        let gvr = Gvr::new(group, version, plural);
        let mut inner = self.shared.lock();
        inner.resources.retain(|r| r.gvr != gvr);
        inner.history.retain(|ev| ev.gvr != gvr);
        // Dropping the senders ends those watch responses cleanly.
        inner.watchers.retain(|w| w.gvr != gvr);
    }

    /// Creates or replaces an object, fills in apiVersion, kind, metadata.resourceVersion,
    /// metadata.uid (kept across replaces) and, for namespaced resources without one,
    /// metadata.namespace "default"; emits ADDED or MODIFIED. Every call is a change, even if
    /// the object is identical (unlike a real no-op update), so tests get the event they expect.
    ///
    /// Panics if the resource is not registered or the object has no metadata.name: both are
    /// bugs in the test, not inputs to tolerate.
    pub fn apply(&self, group: &str, version: &str, plural: &str, object: Value) {
        let gvr = Gvr::new(group, version, plural);
        let Value::Object(mut object) = object else {
            panic!("FakeApiServer::apply: {plural}: object must be a JSON object");
        };
        let mut meta = match object.remove("metadata") {
            Some(Value::Object(m)) => m,
            _ => Map::new(),
        };
        let Some(name) = meta.get("name").and_then(Value::as_str).map(str::to_string) else {
            panic!("FakeApiServer::apply: {plural}: metadata.name is required");
        };
        let mut inner = self.shared.lock();
        let Some(idx) = inner.find(&gvr) else {
            drop(inner);
            panic!(
                "FakeApiServer::apply: {} {plural} not registered; call add_resource first",
                gvr.api_version()
            );
        };
        let namespace = if inner.resources[idx].namespaced {
            let ns = meta
                .get("namespace")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .unwrap_or("default")
                .to_string();
            meta.insert("namespace".into(), json!(ns));
            ns
        } else {
            meta.remove("namespace");
            String::new()
        };
        inner.rv += 1;
        let rv = inner.rv;
        let key = (namespace.clone(), name);
        let existing_uid = inner.resources[idx]
            .objects
            .get(&key)
            .and_then(|o| o.pointer("/metadata/uid"))
            .cloned();
        let event = if existing_uid.is_some() {
            "MODIFIED"
        } else {
            "ADDED"
        };
        let uid = match existing_uid {
            Some(uid) => uid,
            None => match meta.get("uid") {
                Some(Value::String(s)) if !s.is_empty() => json!(s),
                _ => {
                    let n = inner.next_id();
                    json!(format!("00000000-0000-4000-8000-{n:012x}"))
                }
            },
        };
        meta.insert("uid".into(), uid);
        meta.insert("resourceVersion".into(), json!(rv.to_string()));
        object.insert("apiVersion".into(), json!(gvr.api_version()));
        object.insert("kind".into(), json!(inner.resources[idx].kind));
        object.insert("metadata".into(), Value::Object(meta));
        let object = Value::Object(object);
        inner.resources[idx].objects.insert(key, object.clone());
        inner.emit(&gvr, &namespace, event, &object);
    }

    /// Deletes an object and emits DELETED carrying the object with the deletion's new
    /// resourceVersion (as etcd does), so a watch resuming from it does not replay the delete.
    /// Deleting something absent does nothing. Returns the DELETED event's object.
    pub fn delete(
        &self,
        group: &str,
        version: &str,
        plural: &str,
        namespace: Option<&str>,
        name: &str,
    ) -> Option<Value> {
        let gvr = Gvr::new(group, version, plural);
        let mut inner = self.shared.lock();
        let idx = inner.find(&gvr)?;
        let ns = if inner.resources[idx].namespaced {
            namespace.unwrap_or("default").to_string()
        } else {
            String::new()
        };
        let mut object = inner.resources[idx]
            .objects
            .remove(&(ns.clone(), name.to_string()))?;
        inner.rv += 1;
        let rv = inner.rv;
        if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.insert("resourceVersion".into(), json!(rv.to_string()));
        }
        inner.emit(&gvr, &ns, "DELETED", &object);
        Some(object)
    }

    /// The API server goes away: open watches end with a connection error, every connection
    /// is cut and new ones are refused. State is kept, and may be changed meanwhile.
    pub async fn go_away(&self) {
        self.drop_watches();
        if let Some(task) = self.take_task() {
            task.abort();
            // Returns once the task, and with it the listener and connections, is dropped.
            let _ = task.await;
        }
    }

    fn take_task(&self) -> Option<tokio::task::JoinHandle<()>> {
        self.task
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }

    /// The API server is back on the same address, with its history: watches resume from
    /// their resourceVersion (or get 410 Gone if `expire_watches` compacted it meanwhile).
    pub async fn come_back(&self) {
        let mut tries = 0;
        let listener = loop {
            match bind(self.addr) {
                Ok(listener) => break listener,
                Err(err) => {
                    tries += 1;
                    assert!(tries < 100, "rebinding {}: {err}", self.addr);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        };
        let task = tokio::spawn(serve(listener, self.shared.clone()));
        let old = self
            .task
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .replace(task);
        if let Some(old) = old {
            old.abort();
        }
    }

    /// While on, every request is answered 503 with a Status body; turning it on also ends the
    /// open watches, as an API server that lost etcd does.
    pub fn set_unavailable(&self, on: bool) {
        self.shared.unavailable.store(on, Ordering::SeqCst);
        if on {
            self.drop_watches();
        }
    }

    /// Sends a raw watch event on every open watch of the resource without changing any state
    /// or history: a duplicate or out-of-order delivery, as a test builds it.
    pub fn inject(&self, group: &str, version: &str, plural: &str, event: &str, object: &Value) {
        let gvr = Gvr::new(group, version, plural);
        let line = event_line(event, object);
        let mut inner = self.shared.lock();
        inner.watchers.retain(|w| {
            if w.gvr != gvr {
                return !w.tx.is_closed();
            }
            w.tx.send(WatchMsg::Line(line.clone())).is_ok()
        });
    }

    /// The stored object, as a get would return it.
    pub fn object(
        &self,
        group: &str,
        version: &str,
        plural: &str,
        namespace: Option<&str>,
        name: &str,
    ) -> Option<Value> {
        let gvr = Gvr::new(group, version, plural);
        let inner = self.shared.lock();
        let def = &inner.resources[inner.find(&gvr)?];
        let ns = if def.namespaced {
            namespace.unwrap_or("default")
        } else {
            ""
        };
        def.objects
            .get(&(ns.to_string(), name.to_string()))
            .cloned()
    }

    /// Ends every open watch response with a connection-level error, as if the apiserver died.
    pub fn drop_watches(&self) {
        let watchers = std::mem::take(&mut self.shared.lock().watchers);
        for w in watchers {
            let _ = w.tx.send(WatchMsg::Abort);
        }
    }

    /// Compacts history at the current resourceVersion: open watches get a 410 Expired ERROR
    /// event and end; later watches and continue tokens from older versions get the same.
    pub fn expire_watches(&self) {
        let mut inner = self.shared.lock();
        inner.compacted = inner.rv;
        inner.history.clear();
        inner.snapshots.clear();
        let compacted = inner.compacted;
        for w in std::mem::take(&mut inner.watchers) {
            let _ =
                w.tx.send(WatchMsg::Line(too_old_line(w.last_rv, compacted)));
        }
    }

    /// Sends a BOOKMARK at the current resourceVersion on every open watch that allowed them.
    pub fn send_bookmarks(&self) {
        let mut inner = self.shared.lock();
        let rv = inner.rv;
        inner.watchers.retain_mut(|w| {
            if !w.bookmarks {
                return !w.tx.is_closed();
            }
            w.last_rv = rv;
            let line = event_line("BOOKMARK", &bookmark_object(&w.gvr, &w.kind, rv, false));
            w.tx.send(WatchMsg::Line(line)).is_ok()
        });
    }

    /// While held, list requests (not watches) for `plural`, in any group, wait; releasing
    /// lets them proceed with the state at that moment.
    pub fn hold_lists(&self, plural: &str, hold: bool) {
        self.shared.holds.send_modify(|held| {
            if hold {
                held.insert(plural.to_string());
            } else {
                held.remove(plural);
            }
        });
    }

    /// Every request received so far, as "METHOD path?query" (query exactly as sent).
    pub fn requests(&self) -> Vec<String> {
        self.shared.lock().requests.clone()
    }

    pub fn clear_requests(&self) {
        self.shared.lock().requests.clear();
    }

    /// Number of watch responses currently streaming (lets tests wait for a reconnect).
    pub fn open_watches(&self) -> usize {
        let mut inner = self.shared.lock();
        inner.watchers.retain(|w| !w.tx.is_closed());
        inner.watchers.len()
    }

    /// The current global resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.shared.lock().rv
    }
}

// ---------------------------------------------------------------------------------------------
// HTTP

async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let target = uri
        .path_and_query()
        .map_or_else(|| uri.path().to_string(), |pq| pq.as_str().to_string());
    shared.lock().requests.push(format!("{method} {target}"));
    if shared.unavailable.load(Ordering::SeqCst) {
        return status_response(
            StatusCode::SERVICE_UNAVAILABLE,
            "ServiceUnavailable",
            "the fake apiserver is unavailable (etcd is gone)",
        );
    }
    if method != Method::GET {
        return status_response(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            &format!("the fake apiserver only serves GET, not {method}"),
        );
    }
    let query = parse_query(uri.query().unwrap_or(""));
    let aggregated = aggregated_discovery_version(&headers);
    let segments: Vec<&str> = uri.path().split('/').filter(|s| !s.is_empty()).collect();
    match segments.as_slice() {
        ["version"] => json_response(StatusCode::OK, &version_info()),
        ["api"] => core_versions(&shared, aggregated),
        ["api", "v1"] => resource_list(&shared, "", "v1"),
        ["apis"] => group_list(&shared, aggregated),
        ["apis", group] => api_group(&shared, group),
        ["apis", group, version] => resource_list(&shared, group, version),
        ["api", "v1", rest @ ..] => resource_request(&shared, "", "v1", rest, &query).await,
        ["apis", group, version, rest @ ..] => {
            resource_request(&shared, group, version, rest, &query).await
        }
        _ => not_found(),
    }
}

async fn resource_request(
    shared: &Arc<Shared>,
    group: &str,
    version: &str,
    rest: &[&str],
    query: &HashMap<String, String>,
) -> Response {
    // `/api/v1/namespaces/{ns}` (one namespace) vs `/api/v1/namespaces/{ns}/{plural}`
    // (a namespaced collection) is decided by the segment count alone.
    let (plural, namespace, name) = match rest {
        [plural] => (*plural, None, None),
        [plural, name] => (*plural, None, Some(*name)),
        ["namespaces", ns, plural] => (*plural, Some(*ns), None),
        ["namespaces", ns, plural, name] => (*plural, Some(*ns), Some(*name)),
        _ => return not_found(),
    };
    let gvr = Gvr::new(group, version, plural);
    {
        let inner = shared.lock();
        let Some(idx) = inner.find(&gvr) else {
            return not_found();
        };
        let def = &inner.resources[idx];
        // Cluster-scoped resources have no namespaced path, and a namespaced object cannot be
        // addressed without its namespace.
        if (namespace.is_some() && !def.namespaced)
            || (namespace.is_none() && name.is_some() && def.namespaced)
        {
            return not_found();
        }
        if let Some(name) = name {
            let key = (namespace.unwrap_or("").to_string(), name.to_string());
            return match def.objects.get(&key) {
                Some(obj) => json_response(StatusCode::OK, obj),
                None => object_not_found(&gvr, name),
            };
        }
    }
    let namespace = namespace.map(str::to_string);
    if matches!(query.get("watch").map(String::as_str), Some("true" | "1")) {
        watch_response(shared, gvr, namespace, query)
    } else {
        list_response(shared, gvr, namespace, query).await
    }
}

async fn list_response(
    shared: &Arc<Shared>,
    gvr: Gvr,
    namespace: Option<String>,
    query: &HashMap<String, String>,
) -> Response {
    let mut holds = shared.holds.subscribe();
    let _ = holds.wait_for(|held| !held.contains(&gvr.plural)).await;

    let limit = query
        .get("limit")
        .and_then(|l| l.parse::<usize>().ok())
        .filter(|l| *l > 0);
    let mut inner = shared.lock();
    let Some(idx) = inner.find(&gvr) else {
        return not_found();
    };
    let kind = inner.resources[idx].kind.clone();

    let (snapshot_id, rv, items, offset) = match query.get("continue").filter(|c| !c.is_empty()) {
        Some(token) => {
            let Some((id, offset)) = parse_continue(token) else {
                return status_response(
                    StatusCode::BAD_REQUEST,
                    "BadRequest",
                    &format!("continue key is not valid: {token}"),
                );
            };
            let Some(snap) = inner.snapshots.get(&id) else {
                return status_response(
                    StatusCode::GONE,
                    "Expired",
                    "The provided continue parameter is too old to display a consistent list result. \
                     You can start a new list without the continue parameter.",
                );
            };
            if snap.gvr != gvr || snap.namespace != namespace || offset > snap.items.len() {
                return status_response(
                    StatusCode::BAD_REQUEST,
                    "BadRequest",
                    &format!("continue key is not valid for this request: {token}"),
                );
            }
            (Some(id), snap.rv, snap.items.clone(), offset)
        }
        // resourceVersion / resourceVersionMatch on lists: the current state satisfies both
        // "0"/NotOlderThan and unset (most recent), which is all kube's watcher sends.
        None => {
            let items = Arc::new(inner.resources[idx].visible(namespace.as_deref()));
            (None, inner.rv, items, 0)
        }
    };

    let end = limit.map_or(items.len(), |l| offset.saturating_add(l).min(items.len()));
    let mut metadata = json!({ "resourceVersion": rv.to_string() });
    if end < items.len() {
        let id = match snapshot_id {
            Some(id) => id,
            None => {
                let id = inner.next_id();
                inner.snapshots.insert(
                    id,
                    Snapshot {
                        gvr: gvr.clone(),
                        namespace,
                        rv,
                        items: items.clone(),
                    },
                );
                id
            }
        };
        metadata["continue"] = json!(format!("{id}.{end}"));
        metadata["remainingItemCount"] = json!(items.len() - end);
    }
    drop(inner);
    let body = json!({
        "kind": format!("{kind}List"),
        "apiVersion": gvr.api_version(),
        "metadata": metadata,
        "items": items[offset..end],
    });
    json_response(StatusCode::OK, &body)
}

fn watch_response(
    shared: &Arc<Shared>,
    gvr: Gvr,
    namespace: Option<String>,
    query: &HashMap<String, String>,
) -> Response {
    let requested = query.get("resourceVersion").map_or("", String::as_str);
    let send_initial = query.get("sendInitialEvents").is_some_and(|v| v == "true");
    let bookmarks = query
        .get("allowWatchBookmarks")
        .is_some_and(|v| v == "true");
    let seconds = query
        .get("timeoutSeconds")
        .and_then(|t| t.parse::<u64>().ok())
        .filter(|t| *t > 0)
        .map_or(MAX_WATCH_SECONDS, |t| t.min(MAX_WATCH_SECONDS));
    let from = match requested {
        "" | "0" => None,
        rv => match rv.parse::<u64>() {
            Ok(rv) => Some(rv),
            Err(_) => {
                return status_response(
                    StatusCode::BAD_REQUEST,
                    "BadRequest",
                    &format!("invalid resource version: {rv}"),
                );
            }
        },
    };

    let (tx, rx) = mpsc::unbounded_channel();
    let mut inner = shared.lock();
    let Some(idx) = inner.find(&gvr) else {
        return not_found();
    };
    let kind = inner.resources[idx].kind.clone();
    let current = inner.rv;
    let mut last_rv = from.unwrap_or(current);
    let register = match from {
        // Resuming from a compacted version: kube-apiserver answers 200 and an ERROR event.
        Some(rv) if rv < inner.compacted && !send_initial => {
            let _ = tx.send(WatchMsg::Line(too_old_line(rv, inner.compacted)));
            false
        }
        Some(rv) if !send_initial => {
            for ev in inner.history.iter().filter(|ev| {
                ev.rv > rv
                    && ev.gvr == gvr
                    && namespace.as_deref().is_none_or(|ns| ns == ev.namespace)
            }) {
                let _ = tx.send(WatchMsg::Line(ev.line.clone()));
                last_rv = ev.rv;
            }
            true
        }
        // Unset or "0" (or a streaming list): synthetic ADDED for the current state first.
        _ => {
            last_rv = current;
            for obj in inner.resources[idx].visible(namespace.as_deref()) {
                let _ = tx.send(WatchMsg::Line(event_line("ADDED", &obj)));
            }
            if send_initial {
                let end = bookmark_object(&gvr, &kind, current, true);
                let _ = tx.send(WatchMsg::Line(event_line("BOOKMARK", &end)));
            }
            true
        }
    };
    let guard = if register {
        let id = inner.next_id();
        inner.watchers.push(Watcher {
            id,
            gvr,
            namespace,
            bookmarks,
            kind,
            last_rv,
            tx,
        });
        Some(WatchGuard {
            shared: shared.clone(),
            id,
        })
    } else {
        drop(tx);
        None
    };
    drop(inner);

    let stream = WatchStream {
        rx,
        _guard: guard,
        deadline: tokio::time::Instant::now() + Duration::from_secs(seconds),
    };
    let body = futures_util::stream::unfold(Some(stream), |state| async move {
        let mut s = state?;
        let msg = tokio::select! {
            msg = s.rx.recv() => msg,
            () = tokio::time::sleep_until(s.deadline) => None,
        };
        match msg {
            Some(WatchMsg::Line(line)) => Some((Ok::<Bytes, std::io::Error>(line), Some(s))),
            Some(WatchMsg::Abort) => Some((
                Err(std::io::Error::new(
                    std::io::ErrorKind::ConnectionAborted,
                    "fake apiserver dropped the watch",
                )),
                None,
            )),
            // timeoutSeconds elapsed or the server closed the watch: a clean end of the stream.
            None => None,
        }
    });
    let mut resp = Response::new(Body::from_stream(body));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

struct WatchStream {
    rx: mpsc::UnboundedReceiver<WatchMsg>,
    _guard: Option<WatchGuard>,
    deadline: tokio::time::Instant,
}

/// Unregisters a watch when its response body is dropped (finished or client gone).
struct WatchGuard {
    shared: Arc<Shared>,
    id: u64,
}

impl Drop for WatchGuard {
    fn drop(&mut self) {
        let id = self.id;
        self.shared.lock().watchers.retain(|w| w.id != id);
    }
}

// ---------------------------------------------------------------------------------------------
// Discovery

fn core_versions(shared: &Shared, aggregated: Option<&'static str>) -> Response {
    if let Some(v) = aggregated {
        let inner = shared.lock();
        let versions = discovery_versions(&inner, "");
        let item = json!({ "metadata": { "creationTimestamp": null }, "versions": versions });
        return aggregated_response(v, vec![item]);
    }
    json_response(
        StatusCode::OK,
        &json!({
            "kind": "APIVersions",
            "versions": ["v1"],
            "serverAddressByClientCIDRs": [{ "clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1:6443" }],
        }),
    )
}

/// Groups (other than core) in registration order, each with its versions in registration order.
fn groups(inner: &Inner) -> Vec<(String, Vec<String>)> {
    let mut out: Vec<(String, Vec<String>)> = Vec::new();
    for r in inner.resources.iter().filter(|r| !r.gvr.group.is_empty()) {
        match out.iter_mut().find(|(g, _)| *g == r.gvr.group) {
            Some((_, versions)) => {
                if !versions.contains(&r.gvr.version) {
                    versions.push(r.gvr.version.clone());
                }
            }
            None => out.push((r.gvr.group.clone(), vec![r.gvr.version.clone()])),
        }
    }
    out
}

fn api_group_json(group: &str, versions: &[String]) -> Value {
    let gvs: Vec<Value> = versions
        .iter()
        .map(|v| json!({ "groupVersion": format!("{group}/{v}"), "version": v }))
        .collect();
    json!({
        "name": group,
        "versions": gvs,
        "preferredVersion": gvs.first().cloned().unwrap_or(Value::Null),
    })
}

fn group_list(shared: &Shared, aggregated: Option<&'static str>) -> Response {
    let inner = shared.lock();
    let groups = groups(&inner);
    if let Some(v) = aggregated {
        let items = groups
            .iter()
            .map(|(g, _)| json!({ "metadata": { "name": g }, "versions": discovery_versions(&inner, g) }))
            .collect();
        return aggregated_response(v, items);
    }
    let groups: Vec<Value> = groups.iter().map(|(g, vs)| api_group_json(g, vs)).collect();
    json_response(
        StatusCode::OK,
        &json!({ "kind": "APIGroupList", "apiVersion": "v1", "groups": groups }),
    )
}

fn api_group(shared: &Shared, group: &str) -> Response {
    let inner = shared.lock();
    match groups(&inner).into_iter().find(|(g, _)| g == group) {
        Some((g, versions)) => {
            let mut body = api_group_json(&g, &versions);
            body["kind"] = json!("APIGroup");
            body["apiVersion"] = json!("v1");
            json_response(StatusCode::OK, &body)
        }
        None => not_found(),
    }
}

fn resource_list(shared: &Shared, group: &str, version: &str) -> Response {
    let inner = shared.lock();
    let resources: Vec<Value> = inner
        .resources
        .iter()
        .filter(|r| r.gvr.group == group && r.gvr.version == version)
        .map(|r| {
            json!({
                "name": r.gvr.plural,
                "singularName": r.singular(),
                "namespaced": r.namespaced,
                "kind": r.kind,
                "verbs": ["get", "list", "watch"],
            })
        })
        .collect();
    if resources.is_empty() {
        return not_found();
    }
    let group_version = Gvr::new(group, version, "").api_version();
    json_response(
        StatusCode::OK,
        &json!({
            "kind": "APIResourceList",
            "apiVersion": "v1",
            "groupVersion": group_version,
            "resources": resources,
        }),
    )
}

/// apidiscovery.k8s.io/v2 `versions` of one group, preferred (first registered) first.
fn discovery_versions(inner: &Inner, group: &str) -> Vec<Value> {
    let mut versions: Vec<String> = Vec::new();
    for r in inner.resources.iter().filter(|r| r.gvr.group == group) {
        if !versions.contains(&r.gvr.version) {
            versions.push(r.gvr.version.clone());
        }
    }
    versions
        .iter()
        .map(|v| {
            let resources: Vec<Value> = inner
                .resources
                .iter()
                .filter(|r| r.gvr.group == group && &r.gvr.version == v)
                .map(|r| {
                    json!({
                        "resource": r.gvr.plural,
                        "responseKind": { "group": group, "version": v, "kind": r.kind },
                        "scope": if r.namespaced { "Namespaced" } else { "Cluster" },
                        "singularResource": r.singular(),
                        "verbs": ["get", "list", "watch"],
                    })
                })
                .collect();
            json!({ "version": v, "resources": resources, "freshness": "Current" })
        })
        .collect()
}

/// The aggregated-discovery version the client asked for first (`v2` or `v2beta1`), if any.
fn aggregated_discovery_version(headers: &HeaderMap) -> Option<&'static str> {
    let accept = headers.get(header::ACCEPT)?.to_str().ok()?;
    accept.split(',').find_map(|range| {
        let params: Vec<&str> = range.split(';').map(str::trim).collect();
        let has = |p: &str| params.contains(&p);
        if !has("g=apidiscovery.k8s.io") || !has("as=APIGroupDiscoveryList") {
            return None;
        }
        if has("v=v2") {
            Some("v2")
        } else if has("v=v2beta1") {
            Some("v2beta1")
        } else {
            None
        }
    })
}

fn aggregated_response(version: &'static str, items: Vec<Value>) -> Response {
    let body = json!({
        "kind": "APIGroupDiscoveryList",
        "apiVersion": format!("apidiscovery.k8s.io/{version}"),
        "metadata": {},
        "items": items,
    });
    let content_type =
        format!("application/json;g=apidiscovery.k8s.io;v={version};as=APIGroupDiscoveryList");
    let mut resp = json_response(StatusCode::OK, &body);
    if let Ok(v) = HeaderValue::from_str(&content_type) {
        resp.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    resp
}

fn version_info() -> Value {
    json!({
        "major": "1",
        "minor": "34",
        "emulationMajor": "1",
        "emulationMinor": "34",
        "minCompatibilityMajor": "1",
        "minCompatibilityMinor": "33",
        "gitVersion": "v1.34.0-fake",
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2025-08-27T00:00:00Z",
        "goVersion": "go1.24.6",
        "compiler": "gc",
        "platform": "linux/amd64",
    })
}

// ---------------------------------------------------------------------------------------------
// Helpers

fn event_line(kind: &str, object: &Value) -> Bytes {
    let mut line =
        serde_json::to_vec(&json!({ "type": kind, "object": object })).unwrap_or_default();
    line.push(b'\n');
    Bytes::from(line)
}

fn bookmark_object(gvr: &Gvr, kind: &str, rv: u64, initial_events_end: bool) -> Value {
    let mut metadata = json!({ "resourceVersion": rv.to_string() });
    if initial_events_end {
        metadata["annotations"] = json!({ INITIAL_EVENTS_END: "true" });
    }
    json!({ "kind": kind, "apiVersion": gvr.api_version(), "metadata": metadata })
}

fn status_json(code: StatusCode, reason: &str, message: &str) -> Value {
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code.as_u16(),
    })
}

fn too_old_line(requested: u64, oldest: u64) -> Bytes {
    let status = status_json(
        StatusCode::GONE,
        "Expired",
        &format!("too old resource version: {requested} ({oldest})"),
    );
    event_line("ERROR", &status)
}

fn json_response(code: StatusCode, body: &Value) -> Response {
    let mut resp = Response::new(Body::from(serde_json::to_vec(body).unwrap_or_default()));
    *resp.status_mut() = code;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

fn status_response(code: StatusCode, reason: &str, message: &str) -> Response {
    json_response(code, &status_json(code, reason, message))
}

fn not_found() -> Response {
    status_response(
        StatusCode::NOT_FOUND,
        "NotFound",
        "the server could not find the requested resource",
    )
}

fn object_not_found(gvr: &Gvr, name: &str) -> Response {
    let resource = if gvr.group.is_empty() {
        gvr.plural.clone()
    } else {
        format!("{}.{}", gvr.plural, gvr.group)
    };
    let mut body = status_json(
        StatusCode::NOT_FOUND,
        "NotFound",
        &format!("{resource} \"{name}\" not found"),
    );
    body["details"] = json!({ "name": name, "group": gvr.group, "kind": gvr.plural });
    json_response(StatusCode::NOT_FOUND, &body)
}

/// Continue tokens are "{snapshot id}.{offset}"; opaque to clients, like the real ones.
fn parse_continue(token: &str) -> Option<(u64, usize)> {
    let (id, offset) = token.split_once('.')?;
    Some((id.parse().ok()?, offset.parse().ok()?))
}

fn parse_query(query: &str) -> HashMap<String, String> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    fn hex(b: u8) -> Option<u8> {
        match b {
            b'0'..=b'9' => Some(b - b'0'),
            b'a'..=b'f' => Some(b - b'a' + 10),
            b'A'..=b'F' => Some(b - b'A' + 10),
            _ => None,
        }
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hi = bytes.get(i + 1).copied().and_then(hex);
                let lo = bytes.get(i + 2).copied().and_then(hex);
                match (hi, lo) {
                    (Some(hi), Some(lo)) => {
                        out.push(hi << 4 | lo);
                        i += 2;
                    }
                    // A stray '%' stays literal rather than failing the request.
                    _ => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
