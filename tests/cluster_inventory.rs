//! The cluster inventory against a test API server that speaks the list/watch protocol: initial
//! sync and readiness, live events, dropped watches, 410 Gone, producer CRDs appearing later,
//! failureMode, and that no Secret value is ever kept.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use applyguard::engine::{Decision, Engine, Request};
use applyguard::inventory::cluster::{ClusterInventory, ClusterOptions};
use applyguard::inventory::{Inventory, Readiness};
use applyguard::policy::Policy;
use applyguard::server::Limits;
use common::apiserver::FakeApiServer;
use common::{Http, client, fixture, start_with};
use kube::core::admission::Operation;
use serde_json::{Value, json};

const SECRET_VALUE: &str = "czNjcjN0LXZhbHVlLWRvLW5vdC1rZWVw"; // base64 of a value that must never be kept
const PLAIN_VALUE: &str = "plaintext-value-do-not-keep";

fn options() -> ClusterOptions {
    ClusterOptions {
        discovery_interval: Duration::from_millis(200),
        page_size: 500,
        ..ClusterOptions::default()
    }
}

fn secret(namespace: &str, name: &str, keys: &[&str]) -> Value {
    let data: serde_json::Map<String, Value> = keys
        .iter()
        .map(|k| (k.to_string(), json!(SECRET_VALUE)))
        .collect();
    json!({"apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace,
            // kubectl apply keeps a plaintext copy of the whole Secret here.
            "annotations": {"kubectl.kubernetes.io/last-applied-configuration":
                format!("{{\"stringData\":{{\"password\":\"{PLAIN_VALUE}\"}}}}")}},
        "type": "Opaque", "data": data, "stringData": {"extra": PLAIN_VALUE}})
}

fn external_secret(namespace: &str, name: &str, target: &str, keys: &[&str]) -> Value {
    let data: Vec<Value> = keys
        .iter()
        .map(|k| json!({"secretKey": k, "remoteRef": {"key": name}}))
        .collect();
    json!({"apiVersion": "external-secrets.io/v1", "kind": "ExternalSecret",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"target": {"name": target}, "data": data}})
}

fn pod_referencing(secret: &str, key: &str) -> Value {
    json!({"spec": {"securityContext": {"runAsNonRoot": true, "runAsUser": 1000},
        "containers": [{"name": "app", "image": "ghcr.io/acme/app:1",
            "env": [{"name": "X", "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}]}]}})
}

fn decide(engine: &Engine, object: &Value) -> Decision {
    engine
        .decide(&Request {
            group: "",
            kind: "Pod",
            operation: &Operation::Create,
            name: "",
            namespace: "shop",
            object: Some(object),
            old_object: None,
            sub_resource: None,
        })
        .unwrap()
}

async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn started(api: &FakeApiServer, policy: &str) -> (Arc<ClusterInventory>, Engine) {
    let inventory = Arc::new(ClusterInventory::connect(api.config(), options()).unwrap());
    let engine = Engine::with_inventory(
        Policy::from_yaml(policy, "test").unwrap(),
        inventory.clone(),
    )
    .unwrap();
    let inv = inventory.clone();
    eventually("initial sync", || inv.readiness() == Readiness::Ready).await;
    (inventory, engine)
}

#[tokio::test]
async fn readiness_waits_for_every_initial_list() {
    let api = FakeApiServer::start().await;
    api.apply("", "v1", "secrets", secret("shop", "db", &["password"]));
    api.hold_lists("secrets", true);
    let inventory = Arc::new(ClusterInventory::connect(api.config(), options()).unwrap());
    // Configmaps and namespaces sync; secrets are held.
    let inv = inventory.clone();
    eventually("configmaps synced", || {
        inv.watches().get("configmaps") == Some(&true)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    match inventory.readiness() {
        Readiness::NotReady(reason) => assert!(reason.contains("secrets"), "{reason}"),
        Readiness::Ready => panic!("ready before the secrets list completed"),
    }
    // The webhook answers with failureMode while not ready, and says so.
    let engine = Engine::with_inventory(Policy::default(), inventory.clone()).unwrap();
    let d = decide(&engine, &pod_referencing("db", "password"));
    assert!(!d.allowed());
    assert!(
        d.denied_by[0].message.contains("inventory is not ready"),
        "{}",
        d.denied_by[0].message
    );
    assert!(d.denied_by[0].message.contains("failureMode is deny"));
    let warn = Engine::with_inventory(
        Policy::from_yaml("failureMode: warn", "t").unwrap(),
        inventory.clone(),
    )
    .unwrap();
    let d = decide(&warn, &pod_referencing("db", "password"));
    assert!(d.allowed());
    assert!(d.notices[0].message.contains("failureMode is warn"));
    api.hold_lists("secrets", false);
    eventually("ready after release", || {
        inventory.readiness() == Readiness::Ready
    })
    .await;
    assert!(decide(&engine, &pod_referencing("db", "password")).allowed());
}

#[tokio::test]
async fn readyz_reports_the_inventory_over_https() {
    let api = FakeApiServer::start().await;
    api.hold_lists("namespaces", true);
    let inventory: Arc<dyn Inventory> =
        Arc::new(ClusterInventory::connect(api.config(), options()).unwrap());
    let server = start_with(None, Limits::default(), inventory).await;
    let c = client(&server.certs.ca_cert, Http::Two);
    let response = c.get(server.url("/readyz")).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 503);
    assert!(response.text().await.unwrap().contains("namespaces"));
    // Health is not readiness: the process is alive.
    assert_eq!(
        c.get(server.url("/healthz"))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        200
    );
    api.hold_lists("namespaces", false);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if c.get(server.url("/readyz"))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
            == 200
        {
            break;
        }
        assert!(Instant::now() < deadline, "never became ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server.stop().await;
}

#[tokio::test]
async fn secrets_created_and_deleted_after_start_are_seen_within_a_second() {
    let api = FakeApiServer::start().await;
    let (inventory, engine) = started(&api, "").await;
    assert!(!decide(&engine, &pod_referencing("late", "token")).allowed());
    api.apply("", "v1", "secrets", secret("shop", "late", &["token"]));
    let t = Instant::now();
    let inv = inventory.clone();
    eventually("late secret seen", || inv.secret("shop", "late").is_some()).await;
    assert!(
        t.elapsed() < Duration::from_secs(1),
        "took {:?}",
        t.elapsed()
    );
    assert!(decide(&engine, &pod_referencing("late", "token")).allowed());
    // A key added later is seen too.
    assert!(!decide(&engine, &pod_referencing("late", "cert")).allowed());
    api.apply(
        "",
        "v1",
        "secrets",
        secret("shop", "late", &["token", "cert"]),
    );
    eventually("new key seen", || {
        decide(&engine, &pod_referencing("late", "cert")).allowed()
    })
    .await;
    api.delete("", "v1", "secrets", Some("shop"), "late");
    let t = Instant::now();
    eventually("deleted secret forgotten", || {
        inventory.secret("shop", "late").is_none()
    })
    .await;
    assert!(t.elapsed() < Duration::from_secs(1));
    assert!(!decide(&engine, &pod_referencing("late", "token")).allowed());
}

#[tokio::test]
async fn dropped_watches_and_410_gone_recover_without_a_wrong_verdict() {
    let api = FakeApiServer::start().await;
    api.apply("", "v1", "secrets", secret("shop", "db", &["password"]));
    let (inventory, engine) = started(&api, "").await;
    let pod = pod_referencing("db", "password");
    assert!(decide(&engine, &pod).allowed());

    // 1. Connections drop; while the watches reconnect, the cache keeps answering.
    api.drop_watches();
    for _ in 0..20 {
        assert!(
            decide(&engine, &pod).allowed(),
            "wrong verdict during reconnect"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    api.apply("", "v1", "secrets", secret("shop", "after-drop", &["k"]));
    let inv = inventory.clone();
    eventually("event after reconnect", || {
        inv.secret("shop", "after-drop").is_some()
    })
    .await;

    // 2. History is compacted: watches get 410 Gone and relist. Changes made meanwhile appear,
    // the deleted Secret disappears, and an unchanged one never flickers out.
    // The relist is held, so the window in which a cache that cleared first would answer
    // from nothing is long and certain, not a race the test might miss.
    // Changes made after the 410 reach the cache only through that relist.
    api.hold_lists("secrets", true);
    api.expire_watches();
    api.apply("", "v1", "secrets", secret("shop", "during-410", &["k"]));
    api.delete("", "v1", "secrets", Some("shop"), "after-drop");
    for _ in 0..40 {
        assert!(
            decide(&engine, &pod).allowed(),
            "wrong verdict during relist"
        );
        assert!(
            inv.secret("shop", "after-drop").is_some(),
            "the cache changed before the relist completed"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    api.hold_lists("secrets", false);
    eventually("relist after 410", || {
        inv.secret("shop", "during-410").is_some() && inv.secret("shop", "after-drop").is_none()
    })
    .await;
    assert!(decide(&engine, &pod).allowed());
    assert_eq!(inventory.readiness(), Readiness::Ready);

    // 3. Bookmarks change nothing.
    api.send_bookmarks();
    api.apply(
        "",
        "v1",
        "secrets",
        secret("shop", "after-bookmark", &["k"]),
    );
    eventually("event after bookmark", || {
        inv.secret("shop", "after-bookmark").is_some()
    })
    .await;
}

#[tokio::test]
async fn a_producer_crd_installed_after_start_is_watched() {
    let api = FakeApiServer::start().await;
    let (inventory, engine) = started(&api, "").await;
    let pod = pod_referencing("payments-credentials", "api-key");
    assert!(!decide(&engine, &pod).allowed());
    // external-secrets is installed, then an ExternalSecret is created.
    api.add_resource(
        "external-secrets.io",
        "v1",
        "ExternalSecret",
        "externalsecrets",
        true,
    );
    api.apply(
        "external-secrets.io",
        "v1",
        "externalsecrets",
        external_secret("shop", "payments", "payments-credentials", &["api-key"]),
    );
    let inv = inventory.clone();
    eventually("ExternalSecret watched", || {
        !inv.producers("shop", "payments-credentials").is_empty()
    })
    .await;
    let d = decide(&engine, &pod);
    assert!(d.allowed());
    assert!(d.notices[0].message.contains("ExternalSecret payments"));
    // A key the ExternalSecret does not declare is still a violation.
    assert!(
        !decide(
            &engine,
            &pod_referencing("payments-credentials", "username")
        )
        .allowed()
    );
    assert_eq!(
        inventory.readiness(),
        Readiness::Ready,
        "a later CRD never makes the webhook unready"
    );

    // external-secrets is uninstalled (its CRD and every ExternalSecret go): the watch stops
    // and what it produced is forgotten, so the reference is missing again.
    api.remove_resource("external-secrets.io", "v1", "externalsecrets");
    eventually("ExternalSecret producers forgotten", || {
        inv.producers("shop", "payments-credentials").is_empty()
    })
    .await;
    eventually("ExternalSecret watch stopped", || {
        !inv.watches()
            .keys()
            .any(|k| k.contains("external-secrets.io"))
    })
    .await;
    assert!(!decide(&engine, &pod).allowed());
    assert_eq!(inventory.readiness(), Readiness::Ready);
}

#[tokio::test]
async fn producers_present_at_start_are_synced_before_ready() {
    let api = FakeApiServer::start().await;
    api.add_resource(
        "external-secrets.io",
        "v1beta1",
        "ExternalSecret",
        "externalsecrets",
        true,
    );
    api.add_resource(
        "bitnami.com",
        "v1alpha1",
        "SealedSecret",
        "sealedsecrets",
        true,
    );
    api.add_resource("cert-manager.io", "v1", "Certificate", "certificates", true);
    let mut legacy = external_secret("shop", "legacy-db", "legacy-db", &["password"]);
    legacy["apiVersion"] = json!("external-secrets.io/v1beta1");
    api.apply("external-secrets.io", "v1beta1", "externalsecrets", legacy);
    api.apply("bitnami.com", "v1alpha1", "sealedsecrets", json!({"apiVersion": "bitnami.com/v1alpha1", "kind": "SealedSecret",
        "metadata": {"name": "smtp", "namespace": "shop"}, "spec": {"encryptedData": {"user": "AgB_ciphertext"}}}));
    api.apply(
        "cert-manager.io",
        "v1",
        "certificates",
        json!({"apiVersion": "cert-manager.io/v1", "kind": "Certificate",
        "metadata": {"name": "web", "namespace": "shop"}, "spec": {"secretName": "web-tls"}}),
    );
    api.hold_lists("sealedsecrets", true);
    let inventory = Arc::new(ClusterInventory::connect(api.config(), options()).unwrap());
    let inv = inventory.clone();
    eventually("core synced", || {
        inv.watches().get("secrets") == Some(&true)
    })
    .await;
    eventually("sealedsecrets watch registered", || {
        inv.watches().keys().any(|k| k.starts_with("sealedsecrets"))
    })
    .await;
    assert!(matches!(inventory.readiness(), Readiness::NotReady(r) if r.contains("sealedsecrets")));
    api.hold_lists("sealedsecrets", false);
    eventually("ready", || inv.readiness() == Readiness::Ready).await;
    let engine = Engine::with_inventory(Policy::default(), inventory.clone()).unwrap();
    assert!(!decide(&engine, &pod_referencing("legacy-db", "username")).allowed());
    assert!(decide(&engine, &pod_referencing("legacy-db", "password")).allowed());
    assert!(decide(&engine, &pod_referencing("smtp", "user")).allowed());
    assert!(decide(&engine, &pod_referencing("web-tls", "tls.crt")).allowed());
    assert!(
        !inventory.dump().contains("AgB_ciphertext"),
        "sealed values are not kept either"
    );
}

#[tokio::test]
async fn no_secret_value_is_ever_stored() {
    let api = FakeApiServer::start().await;
    api.apply(
        "",
        "v1",
        "secrets",
        secret("shop", "initial", &["password", "token"]),
    );
    let (inventory, _engine) = started(&api, "").await;
    api.apply("", "v1", "secrets", secret("shop", "live", &["password"]));
    let inv = inventory.clone();
    eventually("live secret", || inv.secret("shop", "live").is_some()).await;
    let dump = inventory.dump();
    assert!(
        dump.contains("initial") && dump.contains("password"),
        "key names are kept: {dump}"
    );
    for value in [SECRET_VALUE, PLAIN_VALUE, "last-applied-configuration"] {
        assert!(!dump.contains(value), "{value} found in the cache: {dump}");
    }
    let info = inventory.secret("shop", "initial").unwrap();
    assert_eq!(
        info.keys.iter().collect::<Vec<_>>(),
        ["extra", "password", "token"]
    );
}

#[tokio::test]
async fn admission_requests_make_no_api_calls() {
    let api = FakeApiServer::start().await;
    api.apply(
        "",
        "v1",
        "secrets",
        secret("shop", "db-credentials", &["username", "password"]),
    );
    let inventory: Arc<dyn Inventory> = Arc::new(
        ClusterInventory::connect(
            api.config(),
            ClusterOptions {
                discovery_interval: Duration::from_secs(3600),
                ..ClusterOptions::default()
            },
        )
        .unwrap(),
    );
    let inv = inventory.clone();
    eventually("sync", || inv.readiness() == Readiness::Ready).await;
    // These requests are denied for a missing Secret: do not wait for it to appear.
    let limits = Limits {
        missing_secret_grace: Duration::ZERO,
        ..Limits::default()
    };
    let server = start_with(None, limits, inventory).await;
    // Let the initial discovery and watch requests settle, then count.
    tokio::time::sleep(Duration::from_millis(200)).await;
    api.clear_requests();
    let c = client(&server.certs.ca_cert, Http::Two);
    for _ in 0..50 {
        let body = common::post_text(
            &c,
            server.url("/validate"),
            fixture("admission/deployment-secrets-denied.json"),
        )
        .await;
        assert!(body.contains("\"allowed\":false"));
    }
    assert_eq!(
        api.requests(),
        Vec::<String>::new(),
        "admission requests reached the API server"
    );
    server.stop().await;
}

fn review_for(secret: &str) -> Vec<u8> {
    let mut review: Value =
        serde_json::from_slice(&fixture("admission/pod-create-allowed.json")).unwrap();
    review["request"]["object"]["spec"]["containers"][0]["env"] =
        json!([{"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": secret, "key": "token"}}}]);
    serde_json::to_vec(&review).unwrap()
}

#[tokio::test]
async fn a_secret_applied_together_with_the_workload_is_waited_for() {
    let api = Arc::new(FakeApiServer::start().await);
    let inventory: Arc<dyn Inventory> =
        Arc::new(ClusterInventory::connect(api.config(), options()).unwrap());
    let inv = inventory.clone();
    eventually("sync", || inv.readiness() == Readiness::Ready).await;
    let server = start_with(None, Limits::default(), inventory).await;
    let c = client(&server.certs.ca_cert, Http::Two);
    // `kubectl apply -f dir/`: the Secret lands 200 ms after the Pod's admission request starts.
    let later = api.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        later.apply(
            "",
            "v1",
            "secrets",
            secret("shop", "just-applied", &["token"]),
        );
    });
    let body = common::post_text(&c, server.url("/validate"), review_for("just-applied")).await;
    assert!(body.contains("\"allowed\":true"), "{body}");
    // A Secret that never comes is still denied, after the bounded wait.
    let t = Instant::now();
    let body = common::post_text(&c, server.url("/validate"), review_for("never-applied")).await;
    assert!(body.contains("\"allowed\":false"), "{body}");
    assert!(t.elapsed() < Duration::from_secs(5));
    server.stop().await;
}

/// Reads `applyguard_inventory_stale` from the server's /metrics.
async fn stale_metric(server: &common::TestServer) -> String {
    let text = common::scrape_metrics(server).await;
    text.lines()
        .find_map(|l| l.strip_prefix("applyguard_inventory_stale "))
        .unwrap_or_else(|| panic!("no applyguard_inventory_stale in:\n{text}"))
        .trim()
        .to_string()
}

/// Options for the outage tests: stale quickly, and an error_gap far longer than the test, so
/// that only a successful response from the API server can end an outage.
fn outage_options() -> ClusterOptions {
    ClusterOptions {
        stale_after: Duration::from_millis(500),
        error_gap: Duration::from_secs(600),
        ..options()
    }
}

async fn eventually_within(what: &str, limit: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Secrets shop/db and shop/old, and a synced inventory with `outage_options`.
async fn outage_started(api: &FakeApiServer) -> Arc<ClusterInventory> {
    api.apply("", "v1", "secrets", secret("shop", "db", &["password"]));
    api.apply("", "v1", "secrets", secret("shop", "old", &["token"]));
    let inventory = Arc::new(ClusterInventory::connect(api.config(), outage_options()).unwrap());
    let inv = inventory.clone();
    eventually("sync", || inv.readiness() == Readiness::Ready).await;
    inventory
}

fn list_requests(api: &FakeApiServer, path: &str) -> usize {
    let prefix = format!("GET {path}");
    api.requests()
        .iter()
        .filter(|r| r.starts_with(&prefix) && !r.contains("watch="))
        .count()
}

#[tokio::test]
async fn the_api_server_going_away_and_coming_back() {
    let api = FakeApiServer::start().await;
    let inventory = outage_started(&api).await;
    let inv = inventory.clone();
    let server = start_with(None, Limits::default(), inventory.clone()).await;
    let engine = Engine::with_inventory(Policy::default(), inventory.clone()).unwrap();
    assert!(decide(&engine, &pod_referencing("db", "password")).allowed());
    assert_eq!(stale_metric(&server).await, "0");

    // The API server goes away (connections cut, new ones refused); the cluster changes
    // meanwhile. The cache keeps answering from its last state at first...
    api.go_away().await;
    api.delete("", "v1", "secrets", Some("shop"), "old");
    api.apply("", "v1", "secrets", secret("shop", "new", &["token"]));
    assert!(decide(&engine, &pod_referencing("db", "password")).allowed());
    assert!(decide(&engine, &pod_referencing("old", "token")).allowed());
    assert_eq!(inventory.readiness(), Readiness::Ready);

    // ...until the watches have failed for stale_after: then the metric says so and
    // failureMode (deny by default) applies, naming the reason.
    eventually("stale", || inv.stale().is_some()).await;
    assert_eq!(stale_metric(&server).await, "1");
    let d = decide(&engine, &pod_referencing("db", "password"));
    assert!(!d.allowed());
    assert!(
        d.denied_by[0].message.contains("inventory is stale"),
        "{}",
        d.denied_by[0].message
    );
    // Readiness is not touched: a lost API server must not take every replica out of service.
    assert_eq!(inventory.readiness(), Readiness::Ready);

    // The API server returns. The first successful response ends the outage (error_gap is
    // 10 minutes here, so nothing else could), and the resumed watches replay what changed.
    let back = Instant::now();
    api.come_back().await;
    eventually_within("recovered", Duration::from_secs(40), || {
        inv.stale().is_none()
            && inv.secret("shop", "new").is_some()
            && inv.secret("shop", "old").is_none()
    })
    .await;
    let recovery = back.elapsed();
    assert_eq!(stale_metric(&server).await, "0");
    assert!(decide(&engine, &pod_referencing("db", "password")).allowed());
    assert!(decide(&engine, &pod_referencing("new", "token")).allowed());
    assert!(!decide(&engine, &pod_referencing("old", "token")).allowed());
    // Resumed from the last resourceVersion: the one list is the initial one.
    assert_eq!(
        list_requests(&api, "/api/v1/secrets"),
        1,
        "{:#?}",
        api.requests()
    );
    assert!(recovery < Duration::from_secs(40), "{recovery:?}");
    server.stop().await;
}

#[tokio::test]
async fn an_outage_longer_than_the_watch_history_relists_on_return() {
    let api = FakeApiServer::start().await;
    let inventory = outage_started(&api).await;
    let inv = inventory.clone();

    api.go_away().await;
    api.delete("", "v1", "secrets", Some("shop"), "old");
    api.apply("", "v1", "secrets", secret("shop", "new", &["token"]));
    // etcd compacts while the API server is away: resuming gets 410 Gone.
    api.expire_watches();
    eventually("stale", || inv.stale().is_some()).await;
    api.come_back().await;
    eventually_within("relisted", Duration::from_secs(40), || {
        inv.stale().is_none()
            && inv.secret("shop", "new").is_some()
            && inv.secret("shop", "old").is_none()
            && inv.secret("shop", "db").is_some()
    })
    .await;
    assert_eq!(
        list_requests(&api, "/api/v1/secrets"),
        2,
        "{:#?}",
        api.requests()
    );
    assert_eq!(inventory.readiness(), Readiness::Ready);
}

#[tokio::test]
async fn an_api_server_answering_503_is_reported_stale_and_recovers() {
    let api = FakeApiServer::start().await;
    api.apply("", "v1", "secrets", secret("shop", "db", &["password"]));
    let inventory = Arc::new(ClusterInventory::connect(api.config(), outage_options()).unwrap());
    let inv = inventory.clone();
    eventually("sync", || inv.readiness() == Readiness::Ready).await;
    let engine = Engine::with_inventory(Policy::default(), inventory.clone()).unwrap();

    // 503 for everything (kube's client would retry each request for minutes; `connect`
    // turns that off so the failure is seen within the watcher's own backoff).
    api.set_unavailable(true);
    eventually("stale while 503", || inv.stale().is_some()).await;
    assert!(
        inv.stale().unwrap().contains("503") || inv.stale().unwrap().contains("Unavailable"),
        "{:?}",
        inv.stale()
    );
    assert!(!decide(&engine, &pod_referencing("db", "password")).allowed());
    api.apply("", "v1", "secrets", secret("shop", "later", &["k"]));

    api.set_unavailable(false);
    eventually_within("recovered", Duration::from_secs(40), || {
        inv.stale().is_none() && inv.secret("shop", "later").is_some()
    })
    .await;
    assert!(decide(&engine, &pod_referencing("db", "password")).allowed());
}

/// Waits until every event sent before this call has been applied: events on one watch are
/// handled in order, so once a fresh sentinel Secret is visible, so is everything before it.
async fn flush(api: &FakeApiServer, inventory: &ClusterInventory, n: &mut u32) {
    *n += 1;
    let name = format!("sentinel-{n}");
    api.apply("", "v1", "secrets", secret("shop", &name, &["k"]));
    eventually("sentinel", || inventory.secret("shop", &name).is_some()).await;
}

#[tokio::test]
async fn duplicated_and_out_of_order_watch_events_never_undo_newer_state() {
    let api = FakeApiServer::start().await;
    let object = |name: &str| api.object("", "v1", "secrets", Some("shop"), name).unwrap();
    api.apply("", "v1", "secrets", secret("shop", "db", &["username"]));
    let db_old = object("db");
    api.apply(
        "",
        "v1",
        "secrets",
        secret("shop", "db", &["username", "password"]),
    );
    let db_new = object("db");
    let (inventory, engine) = started(&api, "").await;
    let keys = |inv: &ClusterInventory, name: &str| inv.secret("shop", name).map(|s| s.keys);
    // `secret()` always adds a stringData key "extra".
    let both = Some(["extra", "password", "username"].into_iter().collect());
    assert_eq!(keys(&inventory, "db"), both);
    eventually("watch open", || api.open_watches() >= 3).await;
    let mut n = 0;

    // An older version delivered after the newer one, and the newer one twice.
    api.inject("", "v1", "secrets", "MODIFIED", &db_old);
    api.inject("", "v1", "secrets", "ADDED", &db_new);
    api.inject("", "v1", "secrets", "MODIFIED", &db_old);
    flush(&api, &inventory, &mut n).await;
    assert_eq!(
        keys(&inventory, "db"),
        both,
        "an old event undid a newer state"
    );
    assert!(decide(&engine, &pod_referencing("db", "password")).allowed());

    // A deletion delivered after the object was re-created.
    api.apply("", "v1", "secrets", secret("shop", "phoenix", &["k"]));
    let deleted = api
        .delete("", "v1", "secrets", Some("shop"), "phoenix")
        .unwrap();
    api.apply("", "v1", "secrets", secret("shop", "phoenix", &["k"]));
    flush(&api, &inventory, &mut n).await;
    api.inject("", "v1", "secrets", "DELETED", &deleted);
    flush(&api, &inventory, &mut n).await;
    assert!(
        inventory.secret("shop", "phoenix").is_some(),
        "a late DELETED removed a live Secret"
    );

    // An ADDED delivered after the object's deletion, and the deletion twice.
    api.apply("", "v1", "secrets", secret("shop", "ghost", &["k"]));
    let ghost = object("ghost");
    let ghost_deleted = api
        .delete("", "v1", "secrets", Some("shop"), "ghost")
        .unwrap();
    flush(&api, &inventory, &mut n).await;
    api.inject("", "v1", "secrets", "ADDED", &ghost);
    api.inject("", "v1", "secrets", "DELETED", &ghost_deleted);
    flush(&api, &inventory, &mut n).await;
    assert!(
        inventory.secret("shop", "ghost").is_none(),
        "a late ADDED revived a deleted Secret"
    );
    assert!(!decide(&engine, &pod_referencing("ghost", "k")).allowed());

    // Events about objects the cache never saw: a deletion changes nothing, a modification
    // (its ADDED lost) is taken as the object's state.
    let unseen = |name: &str, rv: u64| {
        let mut o = object("db");
        o["metadata"]["name"] = json!(name);
        o["metadata"]["resourceVersion"] = json!(rv.to_string());
        o
    };
    let rv = api.resource_version();
    api.inject(
        "",
        "v1",
        "secrets",
        "DELETED",
        &unseen("never-seen", rv + 50),
    );
    api.inject("", "v1", "secrets", "MODIFIED", &unseen("orphan", rv + 60));
    flush(&api, &inventory, &mut n).await;
    assert!(inventory.secret("shop", "never-seen").is_none());
    assert!(inventory.secret("shop", "orphan").is_some());

    // Every dropped event is counted, by reason, and exported as a counter: the older
    // MODIFIED twice, the late DELETED, the late ADDED (out of order); the repeated ADDED and
    // the repeated DELETED (repeats).
    assert_eq!(inventory.ignored_events(), (2, 4));
    let text = applyguard::metrics::Metrics::new().render(&*inventory);
    for line in [
        "applyguard_inventory_watch_events_ignored_total{reason=\"repeat\"} 2",
        "applyguard_inventory_watch_events_ignored_total{reason=\"out_of_order\"} 4",
    ] {
        assert!(text.lines().any(|l| l == line), "{line} not in:\n{text}");
    }

    // Normal traffic still flows: a real update of db applies.
    api.apply("", "v1", "secrets", secret("shop", "db", &["token"]));
    let inv = inventory.clone();
    eventually("real update", || {
        keys(&inv, "db") == Some(["extra", "token"].into_iter().collect())
    })
    .await;
}

/// SecretStores, ClusterSecretStores and ReferenceGrants are watched where their API is served:
/// unknown (never "missing") before, known once listed, unknown again when the API goes.
#[tokio::test]
async fn stores_and_reference_grants_are_watched_where_served() {
    use applyguard::inventory::{StoreKind, StoreLookup, StoreRef};
    let api = FakeApiServer::start().await;
    api.add_resource(
        "external-secrets.io",
        "v1",
        "ExternalSecret",
        "externalsecrets",
        true,
    );
    api.apply(
        "external-secrets.io",
        "v1",
        "externalsecrets",
        json!({"apiVersion": "external-secrets.io/v1", "kind": "ExternalSecret",
            "metadata": {"name": "risk-db", "namespace": "shop", "resourceVersion": "1"},
            "spec": {"secretStoreRef": {"kind": "ClusterSecretStore", "name": "aether-vault"},
                "data": [{"secretKey": "password", "remoteRef": {"key": "risk"}}]}}),
    );
    let (inventory, engine) = started(&api, "").await;
    let store = StoreRef {
        kind: StoreKind::ClusterSecretStore,
        name: "aether-vault".to_string(),
    };
    assert_eq!(inventory.secret_store("shop", &store), StoreLookup::Unknown);
    assert_eq!(inventory.reference_grants("certs"), None);
    // Without the store API the ExternalSecret counts as a producer (nothing says otherwise).
    let pod = pod_referencing("risk-db", "password");
    assert!(decide(&engine, &pod).allowed());

    api.add_resource(
        "external-secrets.io",
        "v1",
        "SecretStore",
        "secretstores",
        true,
    );
    api.add_resource(
        "external-secrets.io",
        "v1",
        "ClusterSecretStore",
        "clustersecretstores",
        false,
    );
    api.add_resource(
        "gateway.networking.k8s.io",
        "v1beta1",
        "ReferenceGrant",
        "referencegrants",
        true,
    );
    let inv = inventory.clone();
    let wanted = store.clone();
    eventually("stores listed", move || {
        inv.secret_store("shop", &wanted) == StoreLookup::Missing
    })
    .await;
    let d = decide(&engine, &pod);
    assert!(!d.allowed());
    assert!(
        d.denied_by[0]
            .message
            .contains("its ClusterSecretStore aether-vault does not exist"),
        "{}",
        d.denied_by[0].message
    );

    api.apply(
        "external-secrets.io",
        "v1",
        "clustersecretstores",
        json!({"apiVersion": "external-secrets.io/v1", "kind": "ClusterSecretStore",
            "metadata": {"name": "aether-vault", "resourceVersion": "2"},
            "spec": {"provider": {"fake": {}}},
            "status": {"conditions": [{"type": "Ready", "status": "False",
                "reason": "InvalidProviderConfig", "message": "unable to log in"}]}}),
    );
    let inv = inventory.clone();
    let wanted = store.clone();
    eventually("ClusterSecretStore watched", move || {
        matches!(
            inv.secret_store("any-namespace", &wanted),
            StoreLookup::Found(_)
        )
    })
    .await;
    let d = decide(&engine, &pod);
    assert!(d.allowed(), "{:?}", d.denied_by);
    assert!(
        d.notices[0]
            .message
            .contains("is not Ready (InvalidProviderConfig: unable to log in)"),
        "{:?}",
        d.notices
    );

    api.apply(
        "gateway.networking.k8s.io",
        "v1beta1",
        "referencegrants",
        json!({"apiVersion": "gateway.networking.k8s.io/v1beta1", "kind": "ReferenceGrant",
            "metadata": {"name": "edge", "namespace": "certs", "resourceVersion": "3"},
            "spec": {"from": [{"group": "gateway.networking.k8s.io", "kind": "Gateway", "namespace": "edge"}],
                "to": [{"group": "", "kind": "Secret"}]}}),
    );
    let inv = inventory.clone();
    eventually("ReferenceGrant watched", move || {
        inv.reference_grants("certs").is_some_and(|g| g.len() == 1)
    })
    .await;
    assert!(
        inventory.reference_grants("certs").unwrap()[0].allows_secret(
            "gateway.networking.k8s.io",
            "Gateway",
            "edge",
            "wildcard-tls"
        )
    );

    // The store API goes: stores are unknown again, not "missing".
    api.remove_resource("external-secrets.io", "v1", "clustersecretstores");
    let inv = inventory.clone();
    eventually("ClusterSecretStores forgotten", move || {
        inv.secret_store("shop", &store) == StoreLookup::Unknown
    })
    .await;
    assert_eq!(inventory.readiness(), Readiness::Ready);
}

/// The references index from the watches: bare Pods and top-level workloads are indexed, a
/// ReplicaSet's Pod and a CronJob's Job are not, updates replace entries and deletes remove
/// them; a DELETE of the Secret then names each reader and field.
#[tokio::test]
async fn workloads_are_indexed_by_the_secrets_they_read() {
    let api = FakeApiServer::start().await;
    api.add_resource("", "v1", "Pod", "pods", true);
    api.add_resource("apps", "v1", "Deployment", "deployments", true);
    api.add_resource("batch", "v1", "Job", "jobs", true);
    api.add_resource("batch", "v1beta1", "CronJob", "cronjobs", true);
    let env = |secret: &str, key: &str| {
        json!([{"name": "app", "image": "app:1",
            "env": [{"name": "X", "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}]}])
    };
    api.apply(
        "",
        "v1",
        "pods",
        json!({"metadata": {"name": "debug-shell", "namespace": "shop"},
            "spec": {"containers": env("db", "password")}}),
    );
    let controller = json!([{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "checkout-5d8",
        "uid": "1", "controller": true}]);
    api.apply(
        "",
        "v1",
        "pods",
        json!({"metadata": {"name": "checkout-5d8-x", "namespace": "shop", "ownerReferences": controller},
            "spec": {"containers": env("db", "password")}}),
    );
    api.apply(
        "apps",
        "v1",
        "deployments",
        json!({"metadata": {"name": "checkout", "namespace": "shop"},
            "spec": {"template": {"spec": {"containers": env("db", "username")}}}}),
    );
    api.apply(
        "batch",
        "v1beta1",
        "cronjobs",
        json!({"metadata": {"name": "nightly", "namespace": "shop"},
            "spec": {"jobTemplate": {"spec": {"template": {"spec": {"containers": env("db", "password")}}}}}}),
    );
    let (inventory, engine) = started(&api, "").await;
    let inv = inventory.clone();
    eventually("workloads listed", move || {
        let found = inv.readers("shop", "db");
        found.unknown.is_empty() && found.readers.len() == 3
    })
    .await;
    let found = inventory.readers("shop", "db");
    let seen: Vec<(&str, &str, Option<&str>, &str)> = found
        .readers
        .iter()
        .map(|r| (r.kind.kind(), &*r.name, r.key.as_deref(), &*r.path))
        .collect();
    assert_eq!(
        seen,
        [
            (
                "Pod",
                "debug-shell",
                Some("password"),
                "spec.containers[0].env[0].valueFrom.secretKeyRef"
            ),
            (
                "Deployment",
                "checkout",
                Some("username"),
                "spec.template.spec.containers[0].env[0].valueFrom.secretKeyRef"
            ),
            (
                "CronJob",
                "nightly",
                Some("password"),
                "spec.jobTemplate.spec.template.spec.containers[0].env[0].valueFrom.secretKeyRef"
            ),
        ]
    );
    let delete = engine
        .decide(&Request {
            group: "",
            kind: "Secret",
            operation: &Operation::Delete,
            name: "db",
            namespace: "shop",
            object: None,
            old_object: Some(&json!({"data": {"password": SECRET_VALUE}})),
            sub_resource: None,
        })
        .unwrap();
    assert!(delete.allowed(), "the deletion guard warns by default");
    assert_eq!(delete.warnings.len(), 3, "{:?}", delete.warnings);
    assert!(
        delete.warnings[1]
            .message
            .contains("Deployment shop/checkout reads key \"username\" of secret \"db\""),
        "{}",
        delete.warnings[1].message
    );
    // The Deployment stops reading it; the Pod goes.
    api.apply(
        "apps",
        "v1",
        "deployments",
        json!({"metadata": {"name": "checkout", "namespace": "shop"},
            "spec": {"template": {"spec": {"containers": env("other", "username")}}}}),
    );
    api.delete("", "v1", "pods", Some("shop"), "debug-shell");
    let inv = inventory.clone();
    eventually("index follows updates and deletes", move || {
        inv.readers("shop", "db").readers.len() == 1
            && inv.readers("shop", "other").readers.len() == 1
    })
    .await;
    assert!(
        !inventory.dump().contains(SECRET_VALUE),
        "the index holds no pod spec, and no value"
    );
}
