//! Cluster state as the rules see it: Secrets (type and key names only), what will produce a
//! Secret, ConfigMaps, namespace labels and which workloads read which Secret, behind one trait
//! with two sources (a watch cache of the cluster, or a static set loaded from manifests).

pub mod cluster;
mod custom;
pub mod manifests;
mod producers;
mod stores;
pub mod versions;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, RwLock};

pub use custom::{CustomKind, ReaderKind};
pub use producers::{ProducedKeys, Producer, ProducerKind, producer_from_object};
pub use stores::{
    ReferenceGrant, StoreInfo, StoreKind, StoreLookup, StoreRef, store_info, store_ref,
};

/// A workload that reads a Secret: one entry of the references index (the workload's kind and
/// name, the field and the key; never its pod spec).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reader {
    pub kind: ReaderKind,
    /// Shared by the workload's entries (and interned, with the key and path: see `Interner`).
    pub name: Arc<str>,
    /// The key it reads, or `None` for the whole Secret.
    pub key: Option<Arc<str>>,
    pub path: Arc<str>,
}

/// The strings the references index repeats (namespaces, Secret and workload names, keys and
/// field paths: 10k Deployments read `password` at `spec.template.spec.containers[0].env[0]...`),
/// kept once each. Strings nothing else holds any more are swept each time the set has doubled,
/// so workloads that come and go (bare Pods) cannot grow it for good.
#[derive(Debug, Default)]
struct Interner {
    strings: std::collections::HashSet<Arc<str>>,
    swept_at: usize,
}

impl Interner {
    fn intern(&mut self, text: &str) -> Arc<str> {
        if let Some(found) = self.strings.get(text) {
            return found.clone();
        }
        if self.strings.len() >= 2 * self.swept_at.max(1024) {
            self.strings.retain(|s| Arc::strong_count(s) > 1);
            self.swept_at = self.strings.len();
        }
        let new: Arc<str> = Arc::from(text);
        self.strings.insert(new.clone());
        new
    }

    fn get(&self, text: &str) -> Option<Arc<str>> {
        self.strings.get(text).cloned()
    }
}

/// Who reads one Secret, and how far the answer can be trusted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Readers {
    pub readers: Vec<Reader>,
    /// Workload kinds not (yet) indexed: a watch that has not listed them, or an API the
    /// inventory cannot read. Readers of those kinds may be missing from `readers`.
    pub unknown: Vec<&'static str>,
}

/// A Secret as applyguard keeps it: never its values.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SecretInfo {
    pub secret_type: String,
    pub keys: KeySet,
}

/// A Secret's key names, sorted, in one allocation (a `BTreeSet` node holds 11 entries whatever
/// the count: ~300 bytes for a Secret of three keys, 30 MiB with 100k Secrets cached).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct KeySet(Box<[Box<str>]>);

impl KeySet {
    pub fn contains(&self, key: &str) -> bool {
        self.0.binary_search_by(|k| k.as_ref().cmp(key)).is_ok()
    }

    /// Key names in order.
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(AsRef::as_ref)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<K: Into<Box<str>>> FromIterator<K> for KeySet {
    fn from_iter<I: IntoIterator<Item = K>>(keys: I) -> Self {
        let mut keys: Vec<Box<str>> = keys.into_iter().map(Into::into).collect();
        keys.sort();
        keys.dedup();
        KeySet(keys.into_boxed_slice())
    }
}

/// A ConfigMap's data (ConfigMaps hold configuration, not secrets; the Kafka rule reads them).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConfigMapInfo {
    pub data: ConfigData,
    /// Keys of `binaryData`; values are not kept.
    pub binary_keys: BTreeSet<String>,
}

/// A ConfigMap's `data`, sorted by key, in one allocation of entries: a `BTreeMap` node holds 11
/// entries whatever the count, so a ConfigMap of four keys took ~560 bytes of node before its
/// strings; with 100k ConfigMaps cached that was 40 MiB. Lookups are a binary search.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConfigData(Box<[(Box<str>, Box<str>)]>);

impl ConfigData {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .binary_search_by(|(k, _)| k.as_ref().cmp(key))
            .ok()
            .map(|i| self.0[i].1.as_ref())
    }

    /// Entries in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_ref(), v.as_ref()))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<K: Into<Box<str>>, V: Into<Box<str>>> FromIterator<(K, V)> for ConfigData {
    /// Sorted by key; of two entries with one key, the last one read stays (as in a map).
    fn from_iter<I: IntoIterator<Item = (K, V)>>(entries: I) -> Self {
        let mut entries: Vec<(Box<str>, Box<str>)> = entries
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
        entries.reverse();
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        entries.dedup_by(|later, earlier| later.0 == earlier.0);
        ConfigData(entries.into_boxed_slice())
    }
}

/// Whether the inventory can answer for the cluster right now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Readiness {
    Ready,
    /// Not every initial list has completed (or the cache was lost); the text says which.
    NotReady(String),
}

/// What the rules read cluster state through. Implementations never do I/O here: an admission
/// request is answered from memory.
pub trait Inventory: Send + Sync {
    fn secret(&self, namespace: &str, name: &str) -> Option<SecretInfo>;
    /// Producers (ExternalSecret, SealedSecret, Certificate) whose output is this Secret.
    fn producers(&self, namespace: &str, secret: &str) -> Vec<Producer>;
    /// Names of Secrets that exist or will be produced in a namespace (for typo suggestions).
    fn secret_names(&self, namespace: &str) -> Vec<String>;
    /// Namespaces, other than `except`, where a Secret of this name exists.
    fn namespaces_with_secret(&self, name: &str, except: &str) -> Vec<String>;
    fn config_map(&self, namespace: &str, name: &str) -> Option<ConfigMapInfo>;
    fn namespace_labels(&self, name: &str) -> Option<BTreeMap<String, String>>;
    /// The SecretStore (in `namespace`) or ClusterSecretStore an ExternalSecret names.
    fn secret_store(&self, namespace: &str, store: &StoreRef) -> StoreLookup;
    /// The ReferenceGrants of a namespace; `None` when the inventory does not see them.
    fn reference_grants(&self, namespace: &str) -> Option<Vec<ReferenceGrant>>;
    /// The workloads that read a Secret (references that are not `optional`).
    fn readers(&self, namespace: &str, secret: &str) -> Readers;
    fn readiness(&self) -> Readiness;
    /// Why the cache can no longer be trusted (its watches keep failing), if so. Unlike
    /// readiness this never takes a replica out of service: every replica would go at once.
    fn stale(&self) -> Option<String> {
        None
    }
    /// Object counts per resource (metrics).
    fn counts(&self) -> BTreeMap<&'static str, usize> {
        BTreeMap::new()
    }
    /// Watch events dropped because they were not newer than the cached state, since start:
    /// (repeats, out of order). Static inventories have none.
    fn ignored_events(&self) -> (u64, u64) {
        (0, 0)
    }
    /// A receiver that changes whenever the inventory does, for inventories that change
    /// (the cluster watch); `None` for static ones.
    fn changes(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        None
    }
    /// Where the state comes from, for "not found" messages ("in the cluster", "in the given
    /// manifests", "no --inventory was given").
    fn source(&self) -> &str;
}

type Key = (String, String);

/// A workload in the references index: kind, namespace, name (interned).
type WorkloadId = (ReaderKind, Arc<str>, Arc<str>);

fn key(namespace: &str, name: &str) -> Key {
    (namespace.to_string(), name.to_string())
}

/// The indexed state both implementations keep.
#[derive(Debug, Default)]
pub struct Catalog {
    secrets: HashMap<Key, SecretInfo>,
    secrets_by_name: HashMap<String, BTreeSet<String>>,
    /// namespace -> Secret names, so suggestions never walk every Secret of the cluster.
    secrets_by_namespace: HashMap<String, BTreeSet<String>>,
    /// (namespace, producer object name) -> producer, per producer kind.
    producers: HashMap<(ProducerKind, Key), Producer>,
    /// (namespace, target secret) -> producer keys.
    producers_by_target: HashMap<Key, BTreeSet<(ProducerKind, String)>>,
    config_maps: HashMap<Key, ConfigMapInfo>,
    namespaces: HashMap<String, BTreeMap<String, String>>,
    /// (namespace, or "" for a ClusterSecretStore, name) per store kind.
    stores: HashMap<(StoreKind, Key), StoreInfo>,
    /// (namespace, name) -> ReferenceGrant.
    grants: HashMap<Key, ReferenceGrant>,
    /// Store kinds the catalog does not see (a cluster whose store API is not watched):
    /// lookups answer Unknown rather than Missing.
    unknown_stores: BTreeSet<StoreKind>,
    grants_unknown: bool,
    /// (namespace, Secret) -> the workloads that read it: the references index.
    readers: HashMap<(Arc<str>, Arc<str>), Vec<Reader>>,
    /// (kind, namespace, workload) -> the Secrets it reads, to take its entries out again.
    /// Workloads that read no Secret are not kept at all.
    reads: HashMap<WorkloadId, Box<[Arc<str>]>>,
    strings: Interner,
    /// Workload kinds the catalog does not see (not listed yet, API not served).
    unknown_readers: BTreeSet<ReaderKind>,
    /// (kind, namespace, name) of Secrets and producers added from manifests since
    /// `begin_set`: a second definition in one set is merged, one from another set replaces.
    set_members: std::collections::HashSet<(String, String, String)>,
}

impl Catalog {
    /// A catalog for the cluster watches: stores and ReferenceGrants are unknown until their
    /// watch has listed them (a manifest set, by contrast, is all there is).
    pub fn for_watches() -> Catalog {
        Catalog {
            unknown_stores: StoreKind::ALL.into_iter().collect(),
            grants_unknown: true,
            unknown_readers: ReaderKind::ALL.into_iter().collect(),
            ..Catalog::default()
        }
    }

    /// Starts a new set of manifests (the --inventory files, the scanned files, one kustomize
    /// build): definitions are merged only with others of the same set.
    pub fn begin_set(&mut self) {
        self.set_members.clear();
    }

    /// Records that the set defines this object; `true` when it already did.
    pub fn defined_again(&mut self, kind: &str, namespace: &str, name: &str) -> bool {
        !self
            .set_members
            .insert((kind.to_string(), namespace.to_string(), name.to_string()))
    }

    /// The producer object `kind` `namespace/name`, if held.
    pub fn producer(&self, kind: ProducerKind, namespace: &str, name: &str) -> Option<&Producer> {
        self.producers.get(&(kind, key(namespace, name)))
    }

    fn store_key(kind: StoreKind, namespace: &str, name: &str) -> (StoreKind, Key) {
        let namespace = if kind.namespaced() { namespace } else { "" };
        (kind, key(namespace, name))
    }

    pub fn put_store(&mut self, kind: StoreKind, namespace: &str, name: &str, info: StoreInfo) {
        self.stores
            .insert(Catalog::store_key(kind, namespace, name), info);
    }

    pub fn remove_store(&mut self, kind: StoreKind, namespace: &str, name: &str) {
        self.stores
            .remove(&Catalog::store_key(kind, namespace, name));
    }

    /// Drops every store of a kind before a (re)list; from then on the kind is known.
    pub fn clear_stores(&mut self, kind: StoreKind) {
        self.stores.retain(|(k, _), _| *k != kind);
        self.unknown_stores.remove(&kind);
    }

    /// The kind's API is no longer watched: its stores are unknown again.
    pub fn forget_stores(&mut self, kind: StoreKind) {
        self.clear_stores(kind);
        self.unknown_stores.insert(kind);
    }

    pub fn put_grant(&mut self, namespace: &str, grant: ReferenceGrant) {
        self.grants.insert(key(namespace, &grant.name), grant);
    }

    pub fn remove_grant(&mut self, namespace: &str, name: &str) {
        self.grants.remove(&key(namespace, name));
    }

    pub fn clear_grants(&mut self) {
        self.grants.clear();
        self.grants_unknown = false;
    }

    pub fn forget_grants(&mut self) {
        self.grants.clear();
        self.grants_unknown = true;
    }

    pub fn secret_store(&self, namespace: &str, store: &StoreRef) -> StoreLookup {
        if self.unknown_stores.contains(&store.kind) {
            return StoreLookup::Unknown;
        }
        match self
            .stores
            .get(&Catalog::store_key(store.kind, namespace, &store.name))
        {
            Some(info) => StoreLookup::Found(info.clone()),
            None => StoreLookup::Missing,
        }
    }

    pub fn reference_grants(&self, namespace: &str) -> Option<Vec<ReferenceGrant>> {
        if self.grants_unknown {
            return None;
        }
        let mut grants: Vec<ReferenceGrant> = self
            .grants
            .iter()
            .filter(|((ns, _), _)| ns == namespace)
            .map(|(_, g)| g.clone())
            .collect();
        grants.sort_by(|a, b| a.name.cmp(&b.name));
        Some(grants)
    }

    /// Indexes what one workload reads, replacing what it read before.
    pub fn put_readings(
        &mut self,
        kind: ReaderKind,
        namespace: &str,
        name: &str,
        readings: Vec<crate::references::Reading>,
    ) {
        self.remove_readings(kind, namespace, name);
        if readings.is_empty() {
            return;
        }
        let namespace = self.strings.intern(namespace);
        let name = self.strings.intern(name);
        let mut secrets: Vec<Arc<str>> = Vec::new();
        for reading in readings {
            let secret = self.strings.intern(&reading.secret);
            if !secrets.contains(&secret) {
                secrets.push(secret.clone());
            }
            let reader = Reader {
                kind,
                name: name.clone(),
                key: reading.key.map(|k| self.strings.intern(&k)),
                path: self.strings.intern(&reading.path),
            };
            self.readers
                .entry((namespace.clone(), secret))
                .or_default()
                .push(reader);
        }
        self.reads
            .insert((kind, namespace, name), secrets.into_boxed_slice());
    }

    pub fn remove_readings(&mut self, kind: ReaderKind, namespace: &str, name: &str) {
        let (Some(namespace), Some(name)) = (self.strings.get(namespace), self.strings.get(name))
        else {
            return;
        };
        let Some(secrets) = self.reads.remove(&(kind, namespace.clone(), name.clone())) else {
            return;
        };
        for secret in secrets.iter() {
            let secret_key = (namespace.clone(), secret.clone());
            if let Some(readers) = self.readers.get_mut(&secret_key) {
                readers.retain(|r| !(r.kind == kind && r.name == name));
                if readers.is_empty() {
                    self.readers.remove(&secret_key);
                } else {
                    readers.shrink_to_fit();
                }
            }
        }
    }

    /// Drops every workload of a kind before a (re)list; from then on the kind is known.
    pub fn clear_readings(&mut self, kind: ReaderKind) {
        self.reads.retain(|(k, _, _), _| *k != kind);
        for readers in self.readers.values_mut() {
            readers.retain(|r| r.kind != kind);
        }
        self.readers.retain(|_, readers| !readers.is_empty());
        self.unknown_readers.remove(&kind);
    }

    /// The kind's API is no longer watched: its readers are unknown again.
    pub fn forget_readings(&mut self, kind: ReaderKind) {
        self.clear_readings(kind);
        self.unknown_readers.insert(kind);
    }

    pub fn readers(&self, namespace: &str, secret: &str) -> Readers {
        let mut readers = match (self.strings.get(namespace), self.strings.get(secret)) {
            (Some(namespace), Some(secret)) => self
                .readers
                .get(&(namespace, secret))
                .cloned()
                .unwrap_or_default(),
            _ => Vec::new(),
        };
        readers.sort_by(|a, b| (a.kind, &a.name, &a.path).cmp(&(b.kind, &b.name, &b.path)));
        Readers {
            readers,
            unknown: self.unknown_readers.iter().map(|k| k.kind()).collect(),
        }
    }

    pub fn put_secret(&mut self, namespace: &str, name: &str, info: SecretInfo) {
        self.secrets_by_name
            .entry(name.to_string())
            .or_default()
            .insert(namespace.to_string());
        self.secrets_by_namespace
            .entry(namespace.to_string())
            .or_default()
            .insert(name.to_string());
        self.secrets.insert(key(namespace, name), info);
    }

    pub fn remove_secret(&mut self, namespace: &str, name: &str) {
        self.secrets.remove(&key(namespace, name));
        if let Some(namespaces) = self.secrets_by_name.get_mut(name) {
            namespaces.remove(namespace);
            if namespaces.is_empty() {
                self.secrets_by_name.remove(name);
            }
        }
        if let Some(names) = self.secrets_by_namespace.get_mut(namespace) {
            names.remove(name);
            if names.is_empty() {
                self.secrets_by_namespace.remove(namespace);
            }
        }
    }

    pub fn clear_secrets(&mut self) {
        self.secrets.clear();
        self.secrets_by_name.clear();
        self.secrets_by_namespace.clear();
    }

    pub fn put_producer(&mut self, producer: Producer) {
        let id = (producer.kind, key(&producer.namespace, &producer.name));
        self.remove_producer(producer.kind, &producer.namespace, &producer.name);
        self.producers_by_target
            .entry(key(&producer.namespace, &producer.target))
            .or_default()
            .insert((producer.kind, producer.name.clone()));
        self.producers.insert(id, producer);
    }

    pub fn remove_producer(&mut self, kind: ProducerKind, namespace: &str, name: &str) {
        if let Some(old) = self.producers.remove(&(kind, key(namespace, name))) {
            let target = key(&old.namespace, &old.target);
            if let Some(set) = self.producers_by_target.get_mut(&target) {
                set.remove(&(kind, name.to_string()));
                if set.is_empty() {
                    self.producers_by_target.remove(&target);
                }
            }
        }
    }

    pub fn clear_producers(&mut self, kind: ProducerKind) {
        let ids: Vec<_> = self
            .producers
            .keys()
            .filter(|(k, _)| *k == kind)
            .cloned()
            .collect();
        for (k, (ns, name)) in ids {
            self.remove_producer(k, &ns, &name);
        }
    }

    pub fn put_config_map(&mut self, namespace: &str, name: &str, info: ConfigMapInfo) {
        self.config_maps.insert(key(namespace, name), info);
    }

    pub fn remove_config_map(&mut self, namespace: &str, name: &str) {
        self.config_maps.remove(&key(namespace, name));
    }

    pub fn clear_config_maps(&mut self) {
        self.config_maps.clear();
    }

    pub fn put_namespace(&mut self, name: &str, labels: BTreeMap<String, String>) {
        self.namespaces.insert(name.to_string(), labels);
    }

    pub fn remove_namespace(&mut self, name: &str) {
        self.namespaces.remove(name);
    }

    pub fn clear_namespaces(&mut self) {
        self.namespaces.clear();
    }

    /// Object counts per resource, for logs and metrics.
    pub fn counts(&self) -> BTreeMap<&'static str, usize> {
        let mut counts = BTreeMap::from([
            ("secrets", self.secrets.len()),
            ("configmaps", self.config_maps.len()),
            ("namespaces", self.namespaces.len()),
        ]);
        for kind in ProducerKind::ALL {
            counts.insert(
                kind.resource(),
                self.producers.keys().filter(|(k, _)| *k == kind).count(),
            );
        }
        for kind in StoreKind::ALL {
            counts.insert(
                kind.resource(),
                self.stores.keys().filter(|(k, _)| *k == kind).count(),
            );
        }
        counts.insert("referencegrants", self.grants.len());
        for kind in ReaderKind::ALL {
            counts.insert(
                CustomKind::Reader(kind).resource(),
                self.reads.keys().filter(|(k, _, _)| *k == kind).count(),
            );
        }
        counts
    }

    pub fn secret(&self, namespace: &str, name: &str) -> Option<SecretInfo> {
        self.secrets.get(&key(namespace, name)).cloned()
    }

    pub fn producers(&self, namespace: &str, secret: &str) -> Vec<Producer> {
        self.producers_by_target
            .get(&key(namespace, secret))
            .into_iter()
            .flatten()
            .filter_map(|(kind, name)| self.producers.get(&(*kind, key(namespace, name))))
            .cloned()
            .collect()
    }

    pub fn secret_names(&self, namespace: &str) -> Vec<String> {
        let mut names: BTreeSet<String> = self
            .secrets_by_namespace
            .get(namespace)
            .cloned()
            .unwrap_or_default();
        names.extend(
            self.producers_by_target
                .keys()
                .filter(|(ns, _)| ns == namespace)
                .map(|(_, name)| name.clone()),
        );
        names.into_iter().collect()
    }

    pub fn namespaces_with_secret(&self, name: &str, except: &str) -> Vec<String> {
        self.secrets_by_name
            .get(name)
            .into_iter()
            .flatten()
            .filter(|ns| ns.as_str() != except)
            .cloned()
            .collect()
    }

    pub fn config_map(&self, namespace: &str, name: &str) -> Option<ConfigMapInfo> {
        self.config_maps.get(&key(namespace, name)).cloned()
    }

    pub fn namespace_labels(&self, name: &str) -> Option<BTreeMap<String, String>> {
        self.namespaces.get(name).cloned()
    }
}

/// A catalog shared between its writers (watch tasks) and readers (admission requests).
pub type SharedCatalog = Arc<RwLock<Catalog>>;

/// Reads a shared catalog, tolerating a writer that panicked (the data is still consistent
/// per operation: every update is a single insert or remove).
pub(crate) fn read(catalog: &SharedCatalog) -> std::sync::RwLockReadGuard<'_, Catalog> {
    catalog
        .read()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

pub(crate) fn write(catalog: &SharedCatalog) -> std::sync::RwLockWriteGuard<'_, Catalog> {
    catalog
        .write()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// An inventory with nothing in it: `review` without `--inventory`.
pub struct EmptyInventory;

impl Inventory for EmptyInventory {
    fn secret(&self, _: &str, _: &str) -> Option<SecretInfo> {
        None
    }
    fn producers(&self, _: &str, _: &str) -> Vec<Producer> {
        Vec::new()
    }
    fn secret_names(&self, _: &str) -> Vec<String> {
        Vec::new()
    }
    fn namespaces_with_secret(&self, _: &str, _: &str) -> Vec<String> {
        Vec::new()
    }
    fn config_map(&self, _: &str, _: &str) -> Option<ConfigMapInfo> {
        None
    }
    fn namespace_labels(&self, _: &str) -> Option<BTreeMap<String, String>> {
        None
    }
    fn secret_store(&self, _: &str, _: &StoreRef) -> StoreLookup {
        StoreLookup::Missing
    }
    fn reference_grants(&self, _: &str) -> Option<Vec<ReferenceGrant>> {
        Some(Vec::new())
    }
    fn readers(&self, _: &str, _: &str) -> Readers {
        Readers::default()
    }
    fn readiness(&self) -> Readiness {
        Readiness::Ready
    }
    fn source(&self) -> &str {
        "no cluster state (offline, no --inventory given)"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workloads_that_come_and_go_do_not_grow_the_index() {
        let reading = |secret: &str| crate::references::Reading {
            secret: secret.into(),
            key: Some("token".into()),
            path: "spec.containers[0].env[0].valueFrom.secretKeyRef".into(),
        };
        let mut catalog = Catalog::for_watches();
        catalog.clear_readings(ReaderKind::Pod);
        catalog.put_readings(
            ReaderKind::Pod,
            "ops",
            "resident",
            vec![reading("ops-token")],
        );
        // Bare Pods with names never seen again, each reading a Secret of its own.
        for i in 0..20_000 {
            let name = format!("run-{i}");
            catalog.put_readings(
                ReaderKind::Pod,
                "ops",
                &name,
                vec![reading(&format!("s-{i}"))],
            );
            catalog.remove_readings(ReaderKind::Pod, "ops", &name);
        }
        assert!(
            catalog.strings.strings.len() < 3_000,
            "{}",
            catalog.strings.strings.len()
        );
        assert_eq!(catalog.readers.len(), 1);
        assert_eq!(catalog.reads.len(), 1);
        let found = catalog.readers("ops", "ops-token");
        assert_eq!(found.readers.len(), 1);
        assert_eq!(&*found.readers[0].name, "resident");
        assert_eq!(found.readers[0].key.as_deref(), Some("token"));
    }

    #[test]
    fn config_data_is_sorted_and_the_last_definition_of_a_key_stays() {
        let data: ConfigData = [("b", "1"), ("a", "2"), ("b", "3"), ("c", "")]
            .into_iter()
            .collect();
        assert_eq!(
            data.iter().collect::<Vec<_>>(),
            [("a", "2"), ("b", "3"), ("c", "")]
        );
        assert_eq!(data.get("b"), Some("3"));
        assert_eq!(data.get("c"), Some(""));
        assert_eq!(data.get("d"), None);
        assert_eq!(data.len(), 3);
        assert!(ConfigData::default().is_empty());
    }

    #[test]
    fn key_sets_are_sorted_without_repeats() {
        let keys: KeySet = ["b", "a", "b"].into_iter().collect();
        assert_eq!(keys.iter().collect::<Vec<_>>(), ["a", "b"]);
        assert!(keys.contains("a") && !keys.contains("c"));
        assert_eq!(keys.len(), 2);
        assert!(KeySet::default().is_empty());
    }
}
