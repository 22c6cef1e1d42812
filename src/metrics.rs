//! Prometheus metrics (prometheus-client). Every label is bounded: rule ids, modes, decisions,
//! operations, known kinds ("other" for the rest), inventory resources; never an object name
//! or namespace.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::admission::Summary;
use crate::inventory::{Inventory, Readiness};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    kind: &'static str,
    operation: &'static str,
    decision: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ViolationLabels {
    rule: &'static str,
    mode: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResourceLabels {
    resource: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

/// Kinds applyguard evaluates keep their name as a label value; anything else is "other", so a
/// client posting made-up kinds cannot grow the series.
const KNOWN_KINDS: &[&str] = &[
    "Pod",
    "Deployment",
    "StatefulSet",
    "DaemonSet",
    "ReplicaSet",
    "ReplicationController",
    "Job",
    "CronJob",
    "ConfigMap",
    "Kafka",
];

pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    violations: Family<ViolationLabels, Counter>,
    duration: Histogram,
    inventory_objects: Family<ResourceLabels, Gauge>,
    inventory_ready: Gauge,
    inventory_stale: Gauge,
    events_ignored: Family<ReasonLabels, Counter>,
    /// Serialises catching the ignored-events counters up, so concurrent scrapes never add
    /// the same difference twice.
    events_ignored_sync: std::sync::Mutex<()>,
    certificate_expiry: Gauge<f64, AtomicU64>,
    config_reloads: Family<ResultLabels, Counter>,
    certificate_reloads: Family<ResultLabels, Counter>,
    existing_violations: Family<ViolationLabels, Gauge>,
    audit_runs: Family<ResultLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "applyguard_admission_requests",
            "Admission requests answered, by kind, operation and decision (allow, warn, deny, invalid)",
            requests.clone(),
        );
        let violations = Family::<ViolationLabels, Counter>::default();
        registry.register(
            "applyguard_violations",
            "Violations found, by rule and by what became of them (enforce, warn, exempt)",
            violations.clone(),
        );
        // 50 µs .. ~1.6 s: decisions are expected in the tens of microseconds.
        let duration = Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
            0.00005, 2.0, 16,
        ));
        registry.register(
            "applyguard_admission_duration_seconds",
            "Time from a complete request body to the encoded response",
            duration.clone(),
        );
        let inventory_objects = Family::<ResourceLabels, Gauge>::default();
        registry.register(
            "applyguard_inventory_objects",
            "Objects in the inventory, by resource",
            inventory_objects.clone(),
        );
        let inventory_ready = Gauge::default();
        registry.register(
            "applyguard_inventory_ready",
            "1 when every initial list of the inventory has completed",
            inventory_ready.clone(),
        );
        let inventory_stale = Gauge::default();
        registry.register(
            "applyguard_inventory_stale",
            "1 when the inventory's watches have kept failing long enough that its state may be stale",
            inventory_stale.clone(),
        );
        let events_ignored = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "applyguard_inventory_watch_events_ignored",
            "Watch events the inventory dropped as not newer than its state, by reason (repeat, out_of_order)",
            events_ignored.clone(),
        );
        let certificate_expiry = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "applyguard_tls_certificate_expiry_timestamp_seconds",
            "Expiry (notAfter) of the serving certificate in use, as a Unix timestamp",
            certificate_expiry.clone(),
        );
        let config_reloads = Family::<ResultLabels, Counter>::default();
        registry.register(
            "applyguard_config_reload",
            "Policy reloads, by result (success, error)",
            config_reloads.clone(),
        );
        let certificate_reloads = Family::<ResultLabels, Counter>::default();
        registry.register(
            "applyguard_tls_certificate_reload",
            "Serving certificate reloads, by result (success, error)",
            certificate_reloads.clone(),
        );
        let existing_violations = Family::<ViolationLabels, Gauge>::default();
        registry.register(
            "applyguard_existing_violations",
            "Violations in objects already in the cluster at the last background audit (serve --audit-interval), by rule and mode (enforce, warn, exempt)",
            existing_violations.clone(),
        );
        let audit_runs = Family::<ResultLabels, Counter>::default();
        registry.register(
            "applyguard_audit_runs",
            "Background audits, by result (success: every kind listed; error: some could not be)",
            audit_runs.clone(),
        );
        // Series that alerts use exist from the start, at zero.
        for result in ["success", "error"] {
            let _ = config_reloads.get_or_create(&ResultLabels { result });
            let _ = certificate_reloads.get_or_create(&ResultLabels { result });
        }
        Metrics {
            registry,
            requests,
            violations,
            duration,
            inventory_objects,
            inventory_ready,
            inventory_stale,
            events_ignored,
            events_ignored_sync: std::sync::Mutex::new(()),
            certificate_expiry,
            config_reloads,
            certificate_reloads,
            existing_violations,
            audit_runs,
        }
    }

    /// The result of one background audit: violations per (rule, mode), every rule and mode
    /// set (zero when none), so a resolved finding brings its series down rather than leaving
    /// the last count behind.
    pub fn audited(
        &self,
        counts: &std::collections::BTreeMap<(&'static str, &'static str), i64>,
        complete: bool,
    ) {
        for rule in crate::rules::RuleId::ALL {
            for mode in ["enforce", "warn", "exempt"] {
                let rule = rule.as_str();
                self.existing_violations
                    .get_or_create(&ViolationLabels { rule, mode })
                    .set(counts.get(&(rule, mode)).copied().unwrap_or(0));
            }
        }
        let result = if complete { "success" } else { "error" };
        self.audit_runs
            .get_or_create(&ResultLabels { result })
            .inc();
    }

    /// Records one answered request.
    pub fn observe(&self, summary: &Summary, seconds: f64) {
        let kind = KNOWN_KINDS
            .iter()
            .find(|k| **k == summary.kind)
            .copied()
            .unwrap_or("other");
        self.requests
            .get_or_create(&RequestLabels {
                kind,
                operation: summary.operation,
                decision: summary.decision,
            })
            .inc();
        for (rule, mode) in &summary.violations {
            self.violations
                .get_or_create(&ViolationLabels { rule, mode })
                .inc();
        }
        self.duration.observe(seconds);
    }

    pub fn set_certificate_expiry(&self, not_after: time::OffsetDateTime) {
        self.certificate_expiry
            .set(not_after.unix_timestamp() as f64);
    }

    pub fn config_reload(&self, ok: bool) {
        let result = if ok { "success" } else { "error" };
        self.config_reloads
            .get_or_create(&ResultLabels { result })
            .inc();
    }

    pub fn certificate_reload(&self, ok: bool) {
        let result = if ok { "success" } else { "error" };
        self.certificate_reloads
            .get_or_create(&ResultLabels { result })
            .inc();
    }

    /// The text exposition, with inventory gauges read at scrape time.
    pub fn render(&self, inventory: &dyn Inventory) -> String {
        for (resource, count) in inventory.counts() {
            self.inventory_objects
                .get_or_create(&ResourceLabels { resource })
                .set(i64::try_from(count).unwrap_or(i64::MAX));
        }
        self.inventory_ready
            .set(i64::from(inventory.readiness() == Readiness::Ready));
        self.inventory_stale
            .set(i64::from(inventory.stale().is_some()));
        // The inventory keeps the totals; the counters catch up to them (never backwards).
        let (repeats, out_of_order) = inventory.ignored_events();
        let _sync = self
            .events_ignored_sync
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        for (reason, total) in [("repeat", repeats), ("out_of_order", out_of_order)] {
            let counter = self.events_ignored.get_or_create(&ReasonLabels { reason });
            let seen = counter.get();
            if total > seen {
                counter.inc_by(total - seen);
            }
        }
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
