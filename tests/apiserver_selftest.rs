//! Proves the fake apiserver in tests/common/apiserver.rs speaks the protocol kube-rs expects.

#[path = "common/apiserver.rs"]
mod apiserver;

use std::collections::BTreeSet;
use std::fmt::Debug;
use std::future::Future;
use std::time::Duration;

use apiserver::FakeApiServer;
use futures_util::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret};
use kube::api::{Api, ApiResource, DynamicObject, ListParams, WatchEvent, WatchParams};
use kube::core::GroupVersionKind;
use kube::runtime::reflector::{self, Store, store::Writer};
use kube::runtime::watcher;
use kube::{Discovery, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(5);

fn secret(ns: &str, name: &str) -> serde_json::Value {
    json!({ "metadata": { "namespace": ns, "name": name }, "data": { "k": "dg==" } })
}

fn external_secret(ns: &str, name: &str) -> serde_json::Value {
    json!({
        "apiVersion": "external-secrets.io/v1",
        "kind": "ExternalSecret",
        "metadata": { "namespace": ns, "name": name },
        "spec": { "target": { "name": name } },
    })
}

/// Polls `check` until it holds; panics with `what` after `WAIT`.
async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !check() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(WAIT, fut)
        .await
        .unwrap_or_else(|_| panic!("timed out: {what}"))
}

/// Runs a reflector in the background the way a controller would: errors are retried by
/// polling on (after a short pause, so a broken server cannot spin the test).
fn run_reflector<K>(
    writer: Writer<K>,
    api: Api<K>,
    config: watcher::Config,
) -> tokio::task::JoinHandle<()>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    let stream = reflector::reflector(writer, watcher(api, config));
    tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        while let Some(event) = stream.next().await {
            if event.is_err() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    })
}

fn spawn_reflector<K>(
    api: Api<K>,
    config: watcher::Config,
) -> (Store<K>, tokio::task::JoinHandle<()>)
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone + Default,
{
    let (reader, writer) = reflector::store();
    (reader, run_reflector(writer, api, config))
}

/// A reflector over every Secret with default settings, its initial list done and its
/// watch open.
async fn synced_secret_reflector(
    server: &FakeApiServer,
) -> (Store<Secret>, tokio::task::JoinHandle<()>) {
    let (store, task) = spawn_reflector(
        Api::<Secret>::all(server.client()),
        watcher::Config::default(),
    );
    within("initial list", store.wait_until_ready())
        .await
        .unwrap();
    eventually("watch open", || server.open_watches() == 1).await;
    (store, task)
}

fn names<K: Resource + Clone + 'static>(store: &Store<K>) -> BTreeSet<String>
where
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    store
        .state()
        .iter()
        .map(|o| format!("{}/{}", o.namespace().unwrap_or_default(), o.name_any()))
        .collect()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

fn count(requests: &[String], needle: &str) -> usize {
    requests.iter().filter(|r| r.contains(needle)).count()
}

fn lists_of(requests: &[String], path: &str) -> usize {
    requests
        .iter()
        .filter(|r| r.starts_with(&format!("GET {path}")) && !r.contains("watch=true"))
        .count()
}

fn watches_of(requests: &[String], path: &str) -> Vec<String> {
    requests
        .iter()
        .filter(|r| r.starts_with(&format!("GET {path}?")) && r.contains("watch=true"))
        .cloned()
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reflector_lists_then_follows_adds_updates_and_deletes() {
    let server = FakeApiServer::start().await;
    server.apply("", "v1", "secrets", secret("ns1", "a"));
    server.apply("", "v1", "secrets", secret("ns2", "b"));
    let list_rv = server.resource_version();

    let (store, task) = spawn_reflector(
        Api::<Secret>::all(server.client()),
        watcher::Config::default(),
    );
    within("initial list", store.wait_until_ready())
        .await
        .unwrap();
    assert_eq!(names(&store), set(&["ns1/a", "ns2/b"]));
    eventually("watch open", || server.open_watches() == 1).await;

    server.apply("", "v1", "secrets", secret("ns1", "c"));
    eventually("c appears", || {
        names(&store) == set(&["ns1/a", "ns1/c", "ns2/b"])
    })
    .await;

    let mut b = secret("ns2", "b");
    b["metadata"]["labels"] = json!({ "changed": "yes" });
    server.apply("", "v1", "secrets", b);
    eventually("b updated", || {
        store
            .state()
            .iter()
            .any(|s| s.name_any() == "b" && s.labels().get("changed").is_some_and(|v| v == "yes"))
    })
    .await;

    server.delete("", "v1", "secrets", Some("ns1"), "a");
    eventually("a forgotten", || names(&store) == set(&["ns1/c", "ns2/b"])).await;

    // uid is kept across a replace; resourceVersion moved on.
    let b = store
        .state()
        .into_iter()
        .find(|s| s.name_any() == "b")
        .unwrap();
    assert!(b.uid().is_some());
    assert!(b.resource_version().unwrap().parse::<u64>().unwrap() > list_rv);

    // Exactly the request pattern of kube-runtime's default watcher.
    let requests = server.requests();
    assert_eq!(
        requests[0], "GET /api/v1/secrets?&limit=500",
        "{requests:#?}"
    );
    assert_eq!(
        requests[1],
        format!(
            "GET /api/v1/secrets?&watch=true&timeoutSeconds=290&allowWatchBookmarks=true&resourceVersion={list_rv}"
        ),
        "{requests:#?}"
    );
    task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reflector_resumes_after_dropped_watch_without_relisting() {
    let server = FakeApiServer::start().await;
    server.apply("", "v1", "secrets", secret("ns1", "a"));
    server.apply("", "v1", "secrets", secret("ns1", "b"));
    let (store, task) = synced_secret_reflector(&server).await;
    let rv_before = server.resource_version();

    // Changes race the reconnect: whether they arrive live or replayed from history,
    // the store must converge, and without a second list.
    server.drop_watches();
    server.apply("", "v1", "secrets", secret("ns1", "d"));
    server.delete("", "v1", "secrets", Some("ns1"), "b");
    eventually("converged after drop", || {
        names(&store) == set(&["ns1/a", "ns1/d"])
    })
    .await;
    eventually("watch reopened", || server.open_watches() == 1).await;

    let requests = server.requests();
    assert_eq!(lists_of(&requests, "/api/v1/secrets"), 1, "{requests:#?}");
    let watches = watches_of(&requests, "/api/v1/secrets");
    assert!(watches.len() >= 2, "{requests:#?}");
    assert!(
        watches[1].ends_with(&format!("resourceVersion={rv_before}")),
        "resume from the last seen version: {requests:#?}"
    );
    task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reflector_relists_after_expired_watch() {
    let server = FakeApiServer::start().await;
    server.apply("", "v1", "secrets", secret("ns1", "a"));
    server.apply("", "v1", "secrets", secret("ns1", "b"));
    let (store, task) = synced_secret_reflector(&server).await;

    // Outage: connections drop, history is compacted and objects change meanwhile. The resume
    // gets 410 (on the open watch or on the new request), so only a relist can converge.
    server.drop_watches();
    server.apply("", "v1", "secrets", secret("ns1", "e"));
    server.delete("", "v1", "secrets", Some("ns1"), "a");
    server.expire_watches();
    server.apply("", "v1", "secrets", secret("ns2", "f"));
    eventually("converged after expiry", || {
        names(&store) == set(&["ns1/b", "ns1/e", "ns2/f"])
    })
    .await;

    // And an expiry on a healthy open watch.
    eventually("watch open again", || server.open_watches() == 1).await;
    server.expire_watches();
    server.apply("", "v1", "secrets", secret("ns1", "g"));
    eventually("converged after second expiry", || {
        names(&store) == set(&["ns1/b", "ns1/e", "ns1/g", "ns2/f"])
    })
    .await;
    let requests = server.requests();
    assert!(lists_of(&requests, "/api/v1/secrets") >= 2, "{requests:#?}");
    task.abort();

    // The raw protocol: 200 + one ERROR event carrying a 410 Expired Status, then end of stream.
    let api = Api::<Secret>::all(server.client());
    let events: Vec<_> = within("expired watch", async {
        api.watch(&WatchParams::default(), "1")
            .await
            .unwrap()
            .collect::<Vec<_>>()
            .await
    })
    .await;
    assert_eq!(events.len(), 1);
    match &events[0] {
        Ok(WatchEvent::Error(status)) => {
            assert_eq!(status.code, 410);
            assert_eq!(status.reason, "Expired");
            assert!(
                status.message.starts_with("too old resource version: 1 ("),
                "{}",
                status.message
            );
        }
        other => panic!("expected a 410 ERROR event, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bookmarks_advance_the_resume_version() {
    let server = FakeApiServer::start().await;
    server.apply("", "v1", "secrets", secret("ns1", "a"));
    let (store, task) = synced_secret_reflector(&server).await;

    // A change to another resource moves the global version without a Secret event; only the
    // bookmark can tell the Secret watch about it.
    server.apply(
        "",
        "v1",
        "configmaps",
        json!({ "metadata": { "namespace": "ns1", "name": "x" } }),
    );
    let bookmark_rv = server.resource_version();
    server.send_bookmarks();
    server.apply("", "v1", "secrets", secret("ns1", "b"));
    eventually("b after bookmark", || {
        names(&store) == set(&["ns1/a", "ns1/b"])
    })
    .await;
    let after_b = server.resource_version();

    server.send_bookmarks();
    server.apply(
        "",
        "v1",
        "configmaps",
        json!({ "metadata": { "namespace": "ns1", "name": "y" } }),
    );
    let last_bookmark = server.resource_version();
    server.send_bookmarks();
    tokio::time::sleep(Duration::from_millis(50)).await;
    server.drop_watches();
    eventually("watch reopened", || server.open_watches() == 1).await;
    assert!(bookmark_rv < after_b && after_b < last_bookmark);
    let watches = watches_of(&server.requests(), "/api/v1/secrets");
    assert!(
        watches
            .last()
            .unwrap()
            .ends_with(&format!("resourceVersion={last_bookmark}")),
        "{watches:#?}"
    );
    assert_eq!(names(&store), set(&["ns1/a", "ns1/b"]));
    task.abort();

    // The raw protocol: BOOKMARK events reach clients that asked for them.
    let api = Api::<Secret>::all(server.client());
    let rv = server.resource_version().to_string();
    let mut stream = api
        .watch(&WatchParams::default(), &rv)
        .await
        .unwrap()
        .boxed();
    eventually("raw watch open", || server.open_watches() == 1).await;
    server.send_bookmarks();
    match within("bookmark", stream.try_next()).await.unwrap() {
        Some(WatchEvent::Bookmark(bm)) => assert_eq!(bm.metadata.resource_version, rv),
        other => panic!("expected a bookmark, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paginated_lists_return_everything_from_one_snapshot() {
    let server = FakeApiServer::start().await;
    for i in 0..650 {
        let ns = if i % 2 == 0 { "even" } else { "odd" };
        server.apply(
            "",
            "v1",
            "configmaps",
            json!({ "metadata": { "namespace": ns, "name": format!("cm-{i:03}") } }),
        );
    }

    let (store, task) = spawn_reflector(
        Api::<ConfigMap>::all(server.client()),
        watcher::Config::default().page_size(100),
    );
    within("paged initial list", store.wait_until_ready())
        .await
        .unwrap();
    assert_eq!(store.len(), 650);
    let requests = server.requests();
    assert_eq!(
        lists_of(&requests, "/api/v1/configmaps"),
        7,
        "{requests:#?}"
    );
    assert_eq!(count(&requests, "continue="), 6, "{requests:#?}");
    task.abort();

    // Pages after the first come from the first page's snapshot, even if objects change.
    let api = Api::<ConfigMap>::namespaced(server.client(), "even");
    let first = api.list(&ListParams::default().limit(200)).await.unwrap();
    assert_eq!(first.items.len(), 200);
    assert_eq!(first.metadata.remaining_item_count, Some(125));
    let snapshot_rv = first.metadata.resource_version.clone();
    server.apply(
        "",
        "v1",
        "configmaps",
        json!({ "metadata": { "namespace": "even", "name": "zzz-late" } }),
    );
    let mut all: Vec<String> = first.items.iter().map(|c| c.name_any()).collect();
    let mut token = first.metadata.continue_;
    while let Some(t) = token.filter(|t| !t.is_empty()) {
        let page = api
            .list(&ListParams::default().limit(200).continue_token(&t))
            .await
            .unwrap();
        assert_eq!(page.metadata.resource_version, snapshot_rv);
        all.extend(page.items.iter().map(|c| c.name_any()));
        token = page.metadata.continue_;
    }
    assert_eq!(all.len(), 325);
    assert!(all.windows(2).all(|w| w[0] < w[1]), "key order");
    assert!(!all.contains(&"zzz-late".to_string()));

    // A fresh list sees the late object; a stale continue token after compaction is 410.
    let fresh = api.list(&ListParams::default().limit(1000)).await.unwrap();
    assert_eq!(fresh.items.len(), 326);
    let paged = api.list(&ListParams::default().limit(10)).await.unwrap();
    server.expire_watches();
    let err = api
        .list(
            &ListParams::default()
                .limit(10)
                .continue_token(paged.metadata.continue_.as_deref().unwrap()),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, kube::Error::Api(ref s) if s.code == 410),
        "{err:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_lists_wait_and_then_see_current_state() {
    let server = FakeApiServer::start().await;
    server.hold_lists("secrets", true);
    let api = Api::<Secret>::all(server.client());
    let list = tokio::spawn(async move { api.list(&ListParams::default()).await });
    eventually("list arrived", || {
        count(&server.requests(), "GET /api/v1/secrets") == 1
    })
    .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!list.is_finished());
    // Other resources are not held.
    let cms = Api::<ConfigMap>::all(server.client())
        .list(&ListParams::default())
        .await
        .unwrap();
    assert!(cms.items.is_empty());

    server.apply("", "v1", "secrets", secret("ns1", "late"));
    server.hold_lists("secrets", false);
    let list = within("released list", list).await.unwrap().unwrap();
    assert_eq!(list.items.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_finds_registered_groups_only() {
    let server = FakeApiServer::start().await;
    let client = server.client();

    let before = Discovery::new(client.clone())
        .filter(&["external-secrets.io"])
        .run()
        .await
        .unwrap();
    assert!(!before.has_group("external-secrets.io"));
    let before = Discovery::new(client.clone())
        .filter(&["external-secrets.io"])
        .run_aggregated()
        .await
        .unwrap();
    assert!(!before.has_group("external-secrets.io"));
    let err = client
        .list_api_group_resources("external-secrets.io/v1")
        .await
        .unwrap_err();
    assert!(
        matches!(err, kube::Error::Api(ref s) if s.code == 404),
        "{err:?}"
    );

    server.add_resource(
        "external-secrets.io",
        "v1",
        "ExternalSecret",
        "externalsecrets",
        true,
    );
    server.add_resource(
        "external-secrets.io",
        "v1",
        "ClusterExternalSecret",
        "clusterexternalsecrets",
        false,
    );
    server.add_resource(
        "external-secrets.io",
        "v1beta1",
        "ExternalSecret",
        "externalsecrets",
        true,
    );

    let legacy = Discovery::new(client.clone())
        .filter(&["external-secrets.io"])
        .run()
        .await
        .unwrap();
    let aggregated = Discovery::new(client.clone())
        .filter(&["external-secrets.io"])
        .run_aggregated()
        .await
        .unwrap();
    for discovery in [&legacy, &aggregated] {
        let group = discovery
            .get("external-secrets.io")
            .expect("group discovered");
        assert_eq!(group.preferred_version(), Some("v1"));
        assert_eq!(group.versions().collect::<Vec<_>>(), vec!["v1", "v1beta1"]);
        let (ar, caps) = group.recommended_kind("ExternalSecret").unwrap();
        assert_eq!(ar.plural, "externalsecrets");
        assert_eq!(ar.api_version, "external-secrets.io/v1");
        assert_eq!(caps.scope, kube::discovery::Scope::Namespaced);
        let (_, caps) = group.recommended_kind("ClusterExternalSecret").unwrap();
        assert_eq!(caps.scope, kube::discovery::Scope::Cluster);
    }

    // The whole tree, core included, in both dialects.
    for discovery in [
        Discovery::new(client.clone()).run().await.unwrap(),
        Discovery::new(client.clone())
            .run_aggregated()
            .await
            .unwrap(),
    ] {
        let core = discovery.get("").expect("core group");
        let kinds: BTreeSet<String> = core
            .recommended_resources()
            .into_iter()
            .map(|(ar, _)| ar.kind)
            .collect();
        assert_eq!(kinds, set(&["ConfigMap", "Namespace", "Secret"]));
        let gvk = GroupVersionKind::gvk("external-secrets.io", "v1beta1", "ExternalSecret");
        assert!(discovery.resolve_gvk(&gvk).is_some());
    }

    let version = client.apiserver_version().await.unwrap();
    assert_eq!(version.major, "1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamic_object_watcher_over_a_custom_resource() {
    let server = FakeApiServer::start().await;
    server.add_resource(
        "external-secrets.io",
        "v1",
        "ExternalSecret",
        "externalsecrets",
        true,
    );
    server.apply(
        "external-secrets.io",
        "v1",
        "externalsecrets",
        external_secret("ns1", "db"),
    );

    let gvk = GroupVersionKind::gvk("external-secrets.io", "v1", "ExternalSecret");
    let ar = ApiResource::from_gvk_with_plural(&gvk, "externalsecrets");
    let writer = Writer::new(ar.clone());
    let store = writer.as_reader();
    let task = run_reflector(
        writer,
        Api::<DynamicObject>::all_with(server.client(), &ar),
        watcher::Config::default(),
    );
    within("initial list", store.wait_until_ready())
        .await
        .unwrap();
    assert_eq!(names(&store), set(&["ns1/db"]));
    let db = store.state().into_iter().next().unwrap();
    assert_eq!(db.data["spec"]["target"]["name"], "db");
    assert_eq!(db.types.as_ref().unwrap().kind, "ExternalSecret");

    server.apply(
        "external-secrets.io",
        "v1",
        "externalsecrets",
        external_secret("ns2", "api"),
    );
    eventually("api appears", || {
        names(&store) == set(&["ns1/db", "ns2/api"])
    })
    .await;
    server.delete(
        "external-secrets.io",
        "v1",
        "externalsecrets",
        Some("ns1"),
        "db",
    );
    eventually("db forgotten", || names(&store) == set(&["ns2/api"])).await;
    let requests = server.requests();
    assert_eq!(
        requests[0],
        "GET /apis/external-secrets.io/v1/externalsecrets?&limit=500"
    );
    task.abort();

    // Namespaced paths see only their namespace, for lists, gets and watches.
    let api = Api::<DynamicObject>::namespaced_with(server.client(), "ns2", &ar);
    assert_eq!(
        api.list(&ListParams::default()).await.unwrap().items.len(),
        1
    );
    assert_eq!(api.get("api").await.unwrap().name_any(), "api");
    let err = Api::<DynamicObject>::namespaced_with(server.client(), "ns1", &ar)
        .get("api")
        .await
        .unwrap_err();
    assert!(
        matches!(err, kube::Error::Api(ref s) if s.code == 404),
        "{err:?}"
    );
    let mut stream = api
        .watch(&WatchParams::default(), "0")
        .await
        .unwrap()
        .boxed();
    match within("synthetic add", stream.try_next()).await.unwrap() {
        Some(WatchEvent::Added(o)) => assert_eq!(o.name_any(), "api"),
        other => panic!("expected ADDED, got {other:?}"),
    }
    server.apply(
        "external-secrets.io",
        "v1",
        "externalsecrets",
        external_secret("ns1", "other"),
    );
    server.apply(
        "external-secrets.io",
        "v1",
        "externalsecrets",
        external_secret("ns2", "mine"),
    );
    match within("live add", stream.try_next()).await.unwrap() {
        Some(WatchEvent::Added(o)) => assert_eq!(o.name_any(), "mine"),
        other => panic!("expected ADDED for ns2/mine, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streaming_list_watcher_gets_initial_events_then_bookmark() {
    let server = FakeApiServer::start().await;
    server.apply("", "v1", "secrets", secret("ns1", "a"));
    server.apply("", "v1", "secrets", secret("ns1", "b"));
    let (store, task) = spawn_reflector(
        Api::<Secret>::all(server.client()),
        watcher::Config::default().streaming_lists(),
    );
    within("streaming initial list", store.wait_until_ready())
        .await
        .unwrap();
    assert_eq!(names(&store), set(&["ns1/a", "ns1/b"]));
    server.apply("", "v1", "secrets", secret("ns1", "c"));
    eventually("c appears", || names(&store).len() == 3).await;
    let requests = server.requests();
    assert_eq!(lists_of(&requests, "/api/v1/secrets"), 0, "{requests:#?}");
    assert!(
        requests[0].contains("sendInitialEvents=true"),
        "{requests:#?}"
    );
    task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paths_scopes_and_errors() {
    let server = FakeApiServer::start().await;
    server.apply(
        "",
        "v1",
        "namespaces",
        json!({ "metadata": { "name": "ns1" } }),
    );
    server.apply("", "v1", "secrets", secret("ns1", "a"));
    let client = server.client();

    // Cluster-scoped namespaces vs namespaced collections under /api/v1/namespaces/{ns}/.
    let namespaces = Api::<Namespace>::all(client.clone())
        .list(&ListParams::default())
        .await
        .unwrap();
    assert_eq!(namespaces.items.len(), 1);
    assert!(namespaces.items[0].metadata.namespace.is_none());
    assert_eq!(
        Api::<Namespace>::all(client.clone())
            .get("ns1")
            .await
            .unwrap()
            .name_any(),
        "ns1"
    );
    let secrets = Api::<Secret>::namespaced(client.clone(), "ns1");
    assert_eq!(
        secrets
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .len(),
        1
    );
    assert_eq!(secrets.get("a").await.unwrap().name_any(), "a");
    assert!(
        Api::<Secret>::default_namespaced(client.clone())
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .is_empty()
    );
    let err = secrets.get("missing").await.unwrap_err();
    assert!(
        matches!(err, kube::Error::Api(ref s) if s.code == 404 && s.reason == "NotFound"),
        "{err:?}"
    );

    // Raw HTTP for what kube would never send.
    let http = reqwest::Client::new();
    for (path, code) in [
        ("/api/v1/widgets", 404),
        ("/apis/nope.io/v1/things", 404),
        ("/apis/nope.io", 404),
        ("/api/v1/namespaces/ns1/namespaces", 404),
        ("/api/v1/secrets/a", 404),
        ("/api/v1/secrets?watch=true&resourceVersion=abc", 400),
        ("/api/v1/secrets?limit=1&continue=garbage%ZZ", 400),
        ("/version", 200),
        ("/api", 200),
    ] {
        let resp = http
            .get(format!("{}{path}", server.url()))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), code, "{path}");
        let body: serde_json::Value = resp.json().await.unwrap();
        if code != 200 {
            assert_eq!(body["kind"], "Status", "{path}");
            assert_eq!(body["code"], code, "{path}");
        }
    }
    let resp = http
        .delete(format!("{}/api/v1/namespaces/ns1/secrets/a", server.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 405);
    assert!(
        server
            .requests()
            .contains(&"DELETE /api/v1/namespaces/ns1/secrets/a".to_string())
    );
    server.clear_requests();
    assert!(server.requests().is_empty());

    // drop_watches is a broken connection (the chunked body never terminates), not a clean end.
    let watch_url = format!("{}/api/v1/secrets?watch=1&resourceVersion=0", server.url());
    let resp = http.get(&watch_url).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    eventually("raw watch open", || server.open_watches() == 1).await;
    server.drop_watches();
    let body = within("dropped body", resp.bytes()).await;
    assert!(body.is_err(), "expected a broken body, got {body:?}");
    eventually("dropped watch unregistered", || server.open_watches() == 0).await;

    // A short timeoutSeconds ends the watch cleanly.
    let api = Api::<Secret>::all(client);
    let events: Vec<_> = within("timed-out watch", async {
        api.watch(
            &WatchParams::default().timeout(1),
            &server.resource_version().to_string(),
        )
        .await
        .unwrap()
        .collect::<Vec<_>>()
        .await
    })
    .await;
    assert!(events.is_empty());
    eventually("timed-out watch unregistered", || {
        server.open_watches() == 0
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn going_away_refuses_connections_and_coming_back_resumes_the_watch() {
    let server = FakeApiServer::start().await;
    server.apply("", "v1", "secrets", secret("ns1", "a"));
    let (store, task) = synced_secret_reflector(&server).await;

    server.go_away().await;
    // Nothing listens now: a new connection is refused, not left hanging.
    let refused = tokio::net::TcpStream::connect(server.url().trim_start_matches("http://")).await;
    assert!(refused.is_err(), "connection accepted while gone");
    // State changes while gone are what the resumed watch replays.
    server.apply("", "v1", "secrets", secret("ns1", "b"));
    server.delete("", "v1", "secrets", Some("ns1"), "a");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        names(&store),
        set(&["ns1/a"]),
        "the store keeps its last state"
    );

    server.come_back().await;
    eventually("caught up after coming back", || {
        names(&store) == set(&["ns1/b"])
    })
    .await;
    let requests = server.requests();
    assert_eq!(lists_of(&requests, "/api/v1/secrets"), 1, "{requests:#?}");
    task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unavailable_answers_503_with_a_status_and_ends_watches() {
    let server = FakeApiServer::start().await;
    // Without kube's default retries, which would retry the 503 for minutes.
    let mut config = server.config();
    config.default_retry = false;
    let api = Api::<Secret>::all(kube::Client::try_from(config).unwrap());
    let stream = api
        .watch(
            &WatchParams::default(),
            &server.resource_version().to_string(),
        )
        .await
        .unwrap();
    eventually("watch open", || server.open_watches() == 1).await;
    server.set_unavailable(true);
    let events: Vec<_> = within("watch ended", stream.collect::<Vec<_>>()).await;
    assert!(events.iter().all(Result::is_err), "{events:?}");
    match api.list(&ListParams::default()).await {
        Err(kube::Error::Api(status)) => {
            assert_eq!(status.code, 503);
            assert_eq!(status.reason, "ServiceUnavailable");
        }
        other => panic!("expected a 503 Status, got {other:?}"),
    }
    server.set_unavailable(false);
    assert!(api.list(&ListParams::default()).await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injected_events_reach_open_watches_without_changing_state() {
    let server = FakeApiServer::start().await;
    server.apply("", "v1", "secrets", secret("ns1", "a"));
    let stale = server
        .object("", "v1", "secrets", Some("ns1"), "a")
        .unwrap();
    let api = Api::<Secret>::all(server.client());
    let mut stream = api
        .watch(
            &WatchParams::default(),
            &server.resource_version().to_string(),
        )
        .await
        .unwrap()
        .boxed();
    eventually("watch open", || server.open_watches() == 1).await;
    server.inject("", "v1", "secrets", "MODIFIED", &stale);
    match within("injected event", stream.try_next()).await.unwrap() {
        Some(WatchEvent::Modified(s)) => {
            assert_eq!(
                s.metadata.resource_version,
                stale["metadata"]["resourceVersion"]
                    .as_str()
                    .map(String::from)
            );
        }
        other => panic!("expected the injected MODIFIED, got {other:?}"),
    }
    // Not recorded: a new watch from the same version replays nothing.
    let rv = stale["metadata"]["resourceVersion"].as_str().unwrap();
    let replay: Vec<_> = within("replay", async {
        api.watch(&WatchParams::default().timeout(1), rv)
            .await
            .unwrap()
            .collect::<Vec<_>>()
            .await
    })
    .await;
    assert!(replay.is_empty(), "{replay:?}");
    assert_eq!(server.resource_version().to_string(), rv);
}
