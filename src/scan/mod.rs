//! `applyguard scan`: the webhook's rules over manifests before they reach a cluster. The
//! scanned objects are also the inventory, so a Secret defined elsewhere in the set (or by an
//! ExternalSecret, SealedSecret or Certificate in it) counts as existing.

mod kustomize;
mod locate;
pub mod report;
mod yaml;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Read;
use std::path::{Path, PathBuf};

use kube::core::admission::Operation;
use serde_json::Value;

use crate::engine::{Engine, Request};
use crate::inventory::manifests::{ManifestInventory, add_object, manifest_files};
use crate::policy::{Policy, PolicyError};

pub use yaml::{Document, ParseError, documents};

/// What to scan.
#[derive(Debug, Clone)]
pub struct ScanOptions {
    /// Files, directories, or `-` for standard input.
    pub paths: Vec<String>,
    /// Extra cluster state (objects that exist elsewhere).
    pub inventory: Vec<PathBuf>,
    /// Namespace for objects that name none.
    pub namespace: String,
    /// Build each kustomize project's top kustomizations (`kubectl kustomize`) and scan the
    /// output, placing findings in the source files, instead of reading the files.
    pub kustomize: bool,
}

/// How a finding counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// A violation of a rule in enforce mode: the webhook would deny the apply.
    Enforce,
    /// A violation of a rule in warn mode: the webhook would allow it with a warning.
    Warn,
    /// Information the webhook would return as a warning (e.g. a Secret an ExternalSecret makes).
    Notice,
    /// A violation an exemption turned into a warning.
    Exempt,
}

/// One finding, located.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Finding {
    pub file: String,
    /// Where the field at fault is written (the document's first line for findings about the
    /// whole object or file).
    pub line: usize,
    pub column: usize,
    pub api_version: String,
    pub kind: String,
    pub namespace: String,
    pub name: String,
    pub rule: &'static str,
    pub level: Level,
    pub path: String,
    pub value: String,
    pub message: String,
    pub fix: String,
    /// The ConfigMap key (in `namespace`) the offending setting is read from, for findings on
    /// the objects that read it: the scan reports it there when it holds that ConfigMap.
    #[serde(skip)]
    pub read_from: Option<crate::rules::ConfigMapKey>,
}

/// Input that could not be used: unreadable files, documents that do not parse, duplicate
/// keys, objects whose pod spec is malformed.
#[derive(Debug, Clone, serde::Serialize)]
pub struct InputError {
    pub file: String,
    pub line: Option<usize>,
    pub message: String,
}

/// The result of a scan.
#[derive(Debug, Clone, Default, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub files: usize,
    pub documents: usize,
    /// Kubernetes objects found (List items counted one by one).
    pub objects: usize,
    pub skipped_empty: usize,
    /// Documents that are not Kubernetes objects (Kustomization, Helm values, ...).
    pub skipped_not_kubernetes: usize,
    /// Files a kustomization lists as patches: partial objects, never evaluated alone.
    pub skipped_patches: usize,
    pub findings: Vec<Finding>,
    pub errors: Vec<InputError>,
    /// Set by `applyguard audit`: the objects came from this cluster (its API server URL), not
    /// from files, and their findings have no file or line.
    pub cluster: Option<String>,
    /// Audit: objects owned by a controller that is itself audited (a Deployment's ReplicaSets
    /// and Pods, a CronJob's Jobs), evaluated through that controller rather than again.
    pub controlled: usize,
}

impl Report {
    pub fn enforced(&self) -> usize {
        self.count(Level::Enforce)
    }

    pub fn count(&self, level: Level) -> usize {
        self.findings.iter().filter(|f| f.level == level).count()
    }

    /// 2 when some input was unusable, else 1 when something in enforce mode is violated, else 0.
    pub fn exit_code(&self) -> u8 {
        if !self.errors.is_empty() {
            2
        } else if self.enforced() > 0 {
            1
        } else {
            0
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    #[error(transparent)]
    Policy(#[from] PolicyError),
    #[error("inventory: {0}")]
    Inventory(#[from] crate::inventory::manifests::ManifestError),
    #[error("nothing to scan: give files, directories or - for standard input")]
    NoInput,
}

/// One object from the input, located.
struct Located {
    file: String,
    line: usize,
    object: Value,
    /// The document it came from, and where in it the object sits (`items[3]` of a List).
    source: std::sync::Arc<(String, usize)>,
    base: Vec<locate::Segment>,
    /// The kustomize build it came from ("" for files): each build is a set of its own for
    /// duplicates, as each overlay is applied on its own.
    set: String,
}

impl Located {
    /// Where the object's field `path` is written, as (line, column), in `locations` of its
    /// document; the object's own line when the field cannot be found.
    fn place(&self, locations: &locate::Locations, path: &str) -> (usize, usize) {
        if self.file.is_empty() {
            // From the cluster: no file to point into.
            return (0, 0);
        }
        locations.locate(&self.base, path).unwrap_or((self.line, 1))
    }

    fn locations(&self) -> locate::Locations {
        locate::locations(&self.source.0, self.source.1)
    }
}

/// Kinds that live outside namespaces, so reports do not invent a namespace for them.
const CLUSTER_SCOPED: &[&str] = &[
    "Namespace",
    "Node",
    "PersistentVolume",
    "StorageClass",
    "PriorityClass",
    "RuntimeClass",
    "IngressClass",
    "ClusterRole",
    "ClusterRoleBinding",
    "CustomResourceDefinition",
    "APIService",
    "ValidatingWebhookConfiguration",
    "MutatingWebhookConfiguration",
    "ValidatingAdmissionPolicy",
    "ValidatingAdmissionPolicyBinding",
    "ClusterIssuer",
    "ClusterSecretStore",
    "ClusterExternalSecret",
];

/// Documents that are configuration for tools, not objects for the API server.
fn is_tool_config(api_version: &str) -> bool {
    api_version.starts_with("kustomize.config.k8s.io/")
        || api_version.starts_with("config.kubernetes.io/")
}

fn str_at<'a>(value: &'a Value, path: &[&str]) -> &'a str {
    path.iter()
        .try_fold(value, |v, s| v.get(s))
        .and_then(Value::as_str)
        .unwrap_or("")
}

/// Expands `List` kinds into their items.
fn push_objects(
    value: Value,
    file: &str,
    document: &Document,
    base: Vec<locate::Segment>,
    out: &mut Vec<Located>,
    report: &mut Report,
) {
    let kind = value.get("kind").and_then(Value::as_str).unwrap_or("");
    if kind.ends_with("List") && value.get("items").is_some_and(Value::is_array) {
        if let Value::Object(mut map) = value
            && let Some(Value::Array(items)) = map.remove("items")
        {
            for (i, item) in items.into_iter().enumerate() {
                let mut at = base.clone();
                at.extend([
                    locate::Segment::Key("items".into()),
                    locate::Segment::Index(i),
                ]);
                push_objects(item, file, document, at, out, report);
            }
        }
        return;
    }
    let api_version = value
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or("");
    if !value.is_object()
        || api_version.is_empty()
        || kind.is_empty()
        || is_tool_config(api_version)
    {
        report.skipped_not_kubernetes += 1;
        return;
    }
    report.objects += 1;
    let mut value = value;
    if file.starts_with(KUSTOMIZE_BUILD)
        && let Some((origin_file, origin_doc)) = traced(&mut value)
    {
        out.push(Located {
            file: origin_file,
            line: origin_doc.line,
            object: value,
            source: origin_doc.source.clone(),
            base: Vec::new(),
            set: file.to_string(),
        });
        return;
    }
    let source = document.source.clone();
    // A List item starts where it is written; a document's object where the document does.
    let line = if base.is_empty() {
        document.line
    } else {
        locate::locations(&source.0, source.1)
            .locate(&base, "")
            .map_or(document.line, |(line, _)| line)
    };
    out.push(Located {
        file: file.to_string(),
        line,
        object: value,
        source,
        base,
        set: if file.starts_with(KUSTOMIZE_BUILD) {
            file.to_string()
        } else {
            String::new()
        },
    });
}

/// Per file label, the kustomize builds that deploy it (duplicates count within one build).
type DeployedBy = std::collections::HashMap<String, Vec<String>>;

fn read_inputs(
    options: &ScanOptions,
    stdin: &mut dyn Read,
    report: &mut Report,
    deployed_by: &mut DeployedBy,
) -> Vec<(String, String)> {
    let mut sources = Vec::new();
    let mut seen = BTreeSet::new();
    for path in &options.paths {
        if path == "-" {
            let mut text = String::new();
            match stdin.read_to_string(&mut text) {
                Ok(_) => sources.push(("<stdin>".to_string(), text)),
                Err(e) => report.errors.push(InputError {
                    file: "<stdin>".into(),
                    line: None,
                    message: format!("cannot read standard input: {e}"),
                }),
            }
            continue;
        }
        let files = match manifest_files(Path::new(path)) {
            Ok(files) => files,
            Err(e) => {
                report.errors.push(InputError {
                    file: path.clone(),
                    line: None,
                    message: e.to_string(),
                });
                continue;
            }
        };
        // A directory with kustomizations is read as kustomize reads it.
        let layout = kustomize::layout(Path::new(path), &files).unwrap_or_default();
        let building = options.kustomize && !layout.tops.is_empty();
        if building {
            for top in &layout.tops {
                let cwd = std::env::current_dir().unwrap_or_default();
                let shown = top.strip_prefix(&cwd).unwrap_or(top).display().to_string();
                match kustomize::build(top) {
                    Ok(text) => sources.push((format!("{KUSTOMIZE_BUILD}{shown}"), text)),
                    Err(message) => report.errors.push(InputError {
                        file: shown,
                        line: None,
                        message,
                    }),
                }
            }
        }
        let files: Vec<PathBuf> = files
            .into_iter()
            .filter(|file| {
                if layout.unlisted.contains(file) {
                    if seen.insert(file.clone()) {
                        report.findings.push(not_in_kustomization(file, path));
                    }
                    return false;
                }
                if layout.patches.contains(file) {
                    if !building {
                        report.skipped_patches += 1;
                    }
                    return false;
                }
                // What the builds are made of (the project's files, and resources listed from
                // outside its root) is not read again as files.
                !(building
                    && std::fs::canonicalize(file).is_ok_and(|f| {
                        layout.roots.iter().any(|r| f.starts_with(r))
                            || layout.resources.contains(&f)
                    }))
            })
            .collect();
        for file in &files {
            if let Some(tops) = std::fs::canonicalize(file)
                .ok()
                .and_then(|f| layout.included_by.get(&f))
            {
                deployed_by.insert(
                    file.display().to_string(),
                    tops.iter().map(|t| t.display().to_string()).collect(),
                );
            }
        }
        for file in files {
            if !seen.insert(file.clone()) {
                continue;
            }
            let label = file.display().to_string();
            match std::fs::read_to_string(&file) {
                Ok(text) => sources.push((label, text)),
                Err(e) => report.errors.push(InputError {
                    file: label,
                    line: None,
                    message: format!("cannot read: {e}"),
                }),
            }
        }
    }
    sources
}

/// Scans the inputs with the policy. Only configuration problems are `Err`; problems with the
/// manifests are in the report.
pub fn scan(
    options: &ScanOptions,
    mut policy: Policy,
    stdin: &mut dyn Read,
) -> Result<Report, ScanError> {
    // systemNamespaces stands in for the webhook's namespaceSelector, which keeps those
    // namespaces away from admission; manifests for them are scanned like any others.
    policy.exemptions.system_namespaces.clear();
    if options.paths.is_empty() {
        return Err(ScanError::NoInput);
    }
    let mut report = Report::default();
    let mut deployed_by = DeployedBy::new();
    let sources = read_inputs(options, stdin, &mut report, &mut deployed_by);
    report.files = sources.len();
    let mut objects = Vec::new();
    // Files parse independently: across files in parallel (order kept), and each text is
    // dropped as soon as it is parsed.
    use rayon::prelude::*;
    let parsed: Vec<(String, Vec<Document>)> = sources
        .into_par_iter()
        .map(|(file, text)| {
            let docs = documents(&text);
            (file, docs)
        })
        .collect();
    for (file, docs) in parsed {
        for mut document in docs {
            report.documents += 1;
            let content = std::mem::replace(&mut document.content, Ok(Value::Null));
            match content {
                Ok(Value::Null) => report.skipped_empty += 1,
                Ok(value) => push_objects(
                    value,
                    &file,
                    &document,
                    Vec::new(),
                    &mut objects,
                    &mut report,
                ),
                Err(e) => report.errors.push(InputError {
                    file: file.clone(),
                    line: Some(e.line),
                    message: e.message,
                }),
            }
        }
    }
    // An empty file, or the empty stdin of a `kubectl kustomize ... |` that failed, must not
    // pass as "nothing wrong".
    if report.objects == 0 && report.skipped_not_kubernetes == 0 && report.errors.is_empty() {
        report.errors.push(InputError {
            file: options
                .paths
                .iter()
                .map(|p| if p == "-" { "<stdin>" } else { p.as_str() })
                .collect::<Vec<_>>()
                .join(", "),
            line: None,
            message: format!(
                "no documents to scan ({} file(s), {} empty document(s)): the input is empty; if it comes from `kubectl kustomize` or `helm template` through a pipe, that command failed",
                report.files, report.skipped_empty
            ),
        });
    }
    let mut inventory = if options.inventory.is_empty() {
        ManifestInventory::from_objects(std::iter::empty(), &options.namespace, String::new())
    } else {
        ManifestInventory::load(&options.inventory, &options.namespace)?
    };
    // The scanned files are one set, each kustomize build another: a Secret defined twice in
    // one set keeps the keys both definitions have; one from another set (--inventory, another
    // overlay) replaces it.
    let mut current_set = None;
    for located in &objects {
        if current_set != Some(&located.set) {
            inventory.catalog_mut().begin_set();
            current_set = Some(&located.set);
        }
        add_object(inventory.catalog_mut(), &located.object, &options.namespace);
    }
    inventory.set_source(if options.inventory.is_empty() {
        "the scanned manifests".to_string()
    } else {
        "the scanned manifests and --inventory".to_string()
    });
    let engine = Engine::with_inventory(policy, std::sync::Arc::new(inventory))?;
    // Objects are evaluated independently (the engine is shared read-only); order is kept.
    let mut results: Vec<Report> = objects
        .par_iter()
        .map(|located| {
            let mut partial = Report::default();
            evaluate(&engine, located, &options.namespace, &mut partial);
            partial
        })
        .collect();
    report_where_fixed(&objects, &options.namespace, &mut results);
    report
        .findings
        .extend(duplicates(&objects, &options.namespace, &deployed_by));
    for partial in results {
        report.findings.extend(partial.findings);
        report.errors.extend(partial.errors);
    }
    Ok(report)
}

/// Objects read from a live cluster (`applyguard audit`), evaluated exactly as scanned
/// manifests are, into the same report. They have no file: findings name the object, and a
/// Kafka setting read from a ConfigMap key is reported at that ConfigMap, as in a scan.
pub fn evaluate_live(engine: &Engine, objects: Vec<Value>, report: &mut Report) {
    use rayon::prelude::*;
    let nowhere = std::sync::Arc::new((String::new(), 0));
    let objects: Vec<Located> = objects
        .into_iter()
        .map(|object| Located {
            file: String::new(),
            line: 0,
            object,
            source: nowhere.clone(),
            base: Vec::new(),
            set: String::new(),
        })
        .collect();
    report.objects += objects.len();
    let mut results: Vec<Report> = objects
        .par_iter()
        .map(|located| {
            let mut partial = Report::default();
            evaluate(
                engine,
                located,
                crate::commands::DEFAULT_NAMESPACE,
                &mut partial,
            );
            partial
        })
        .collect();
    report_where_fixed(&objects, crate::commands::DEFAULT_NAMESPACE, &mut results);
    for partial in results {
        report.findings.extend(partial.findings);
        report.errors.extend(partial.errors);
    }
}

/// How the source of a kustomize build is labelled until its objects are traced to their files.
const KUSTOMIZE_BUILD: &str = "kustomize build ";

/// An object of a kustomize build, traced to the file and document it came from (its origin
/// annotation, which is removed: it is not part of what is applied).
fn traced(value: &mut Value) -> Option<(String, Document)> {
    let origin = kustomize::origin(value)?;
    if let Some(annotations) = value
        .get_mut("metadata")
        .and_then(|m| m.get_mut("annotations"))
        .and_then(Value::as_object_mut)
    {
        annotations.remove("config.kubernetes.io/origin");
        if annotations.is_empty()
            && let Some(meta) = value.get_mut("metadata").and_then(Value::as_object_mut)
        {
            meta.remove("annotations");
        }
    }
    let text = std::fs::read_to_string(&origin).ok()?;
    let kind = str_at(value, &["kind"]).to_string();
    let name = str_at(value, &["metadata", "name"]).to_string();
    // namePrefix and nameSuffix change the name; the source's name is inside the built one.
    // The exact name first, then the longest contained one (`web-worker` is not `web`).
    let mut candidates: Vec<(usize, Document)> = documents(&text)
        .into_iter()
        .filter_map(|d| {
            let c = d.content.as_ref().ok()?;
            let own = str_at(c, &["metadata", "name"]);
            let score = if own == name {
                usize::MAX
            } else if !own.is_empty() && name.contains(own) {
                own.len()
            } else {
                return None;
            };
            (str_at(c, &["kind"]) == kind).then_some((score, d))
        })
        .collect();
    candidates.sort_by_key(|(score, _)| std::cmp::Reverse(*score));
    let document = candidates.into_iter().next()?.1;
    let cwd = std::env::current_dir().unwrap_or_default();
    let label = origin.strip_prefix(&cwd).map_or_else(
        |_| origin.display().to_string(),
        |p| p.display().to_string(),
    );
    Some((label, document))
}

/// The rule id of the notice for a manifest no kustomization includes.
pub const NOT_IN_KUSTOMIZATION: &str = "not-in-kustomization";

fn not_in_kustomization(file: &Path, root: &str) -> Finding {
    Finding {
        file: file.display().to_string(),
        line: 1,
        api_version: String::new(),
        kind: String::new(),
        namespace: String::new(),
        name: String::new(),
        column: 1,
        rule: NOT_IN_KUSTOMIZATION,
        level: Level::Notice,
        path: String::new(),
        value: String::new(),
        message: format!(
            "not evaluated: no kustomization under {root} includes this file, so kustomize does not deploy it"
        ),
        fix: "list it in a kustomization's resources if it is deployed, or remove it; scan it on its own (applyguard scan FILE) to check it anyway.".to_string(),
        read_from: None,
    }
}

/// The rule id of a duplicated object: a scan-only check, as only a set of files can hold one
/// object twice (the API server holds each name once).
pub const DUPLICATE_OBJECT: &str = "duplicate-object";

/// Objects defined more than once in the set (same group, kind, namespace after defaulting,
/// and name): kustomize refuses such a set, and `kubectl apply -f dir/` keeps whichever file
/// it reads last, so what is deployed depends on file order. One finding per definition, each
/// naming every place the object is defined.
fn duplicates(
    objects: &[Located],
    default_namespace: &str,
    deployed_by: &DeployedBy,
) -> Vec<Finding> {
    type Identity = (String, String, String, String, String);
    let mut definitions: std::collections::BTreeMap<Identity, Vec<usize>> =
        std::collections::BTreeMap::new();
    for (i, located) in objects.iter().enumerate() {
        let object = &located.object;
        let name = str_at(object, &["metadata", "name"]);
        if name.is_empty() {
            continue;
        }
        let api_version = str_at(object, &["apiVersion"]);
        let group = api_version.rsplit_once('/').map_or("", |(g, _)| g);
        let kind = str_at(object, &["kind"]);
        let namespace = match str_at(object, &["metadata", "namespace"]) {
            "" if CLUSTER_SCOPED.contains(&kind) => "",
            "" => default_namespace,
            ns => ns,
        };
        // A file of a kustomize project counts in each build that includes it; a plain file,
        // or a build's output, in its own set.
        let sets = deployed_by
            .get(&located.file)
            .cloned()
            .unwrap_or_else(|| vec![located.set.clone()]);
        for set in sets {
            definitions
                .entry((
                    set,
                    group.to_string(),
                    kind.to_string(),
                    namespace.to_string(),
                    name.to_string(),
                ))
                .or_default()
                .push(i);
        }
    }
    let mut findings = Vec::new();
    let mut reported = BTreeSet::new();
    for ((_, _, kind, namespace, name), places) in definitions {
        // The same pair seen again through another build that includes both files.
        if places.len() < 2 || !reported.insert(places.clone()) {
            continue;
        }
        let at: Vec<(usize, usize)> = places
            .iter()
            .map(|&i| objects[i].place(&objects[i].locations(), "metadata.name"))
            .collect();
        let listed: Vec<String> = places
            .iter()
            .zip(&at)
            .map(|(&i, (line, _))| format!("{}:{line}", objects[i].file))
            .collect();
        let last = &listed[listed.len() - 1];
        for (&i, &(line, column)) in places.iter().zip(&at) {
            let located = &objects[i];
            findings.push(Finding {
                file: located.file.clone(),
                line,
                column,
                api_version: str_at(&located.object, &["apiVersion"]).to_string(),
                kind: kind.clone(),
                namespace: namespace.clone(),
                name: name.clone(),
                rule: DUPLICATE_OBJECT,
                level: Level::Enforce,
                path: "metadata.name".to_string(),
                value: name.clone(),
                message: format!(
                    "{kind} {} is defined {} times ({}): kustomize refuses this set; kubectl apply keeps the last one it reads ({last}){}",
                    if namespace.is_empty() { name.clone() } else { format!("{namespace}/{name}") },
                    places.len(),
                    listed.join(", "),
                    if kind == "Secret" || crate::inventory::CustomKind::from_type(str_at(&located.object, &["apiVersion"]), &kind).is_some() {
                        "; a Secret key counts as produced only if every definition declares it"
                    } else {
                        ""
                    }
                ),
                fix: "keep one definition (merge the two), or give them different names.".to_string(),
                read_from: None,
            });
        }
    }
    findings
}

/// A setting a workload reads from a ConfigMap is fixed in the ConfigMap: when the same set holds
/// that ConfigMap, the finding is reported once, at the ConfigMap's key, instead of at the reader
/// and again at the ConfigMap. The reader's finding is the one kept: it judged the setting with
/// the whole environment (a listener the ConfigMap declares may be plaintext only through the
/// reader's protocol map), so the ConfigMap's findings and its readers' agree. Of several, the
/// most severe stands (the ConfigMap's own included), so a scan never passes what the webhook
/// would deny.
fn report_where_fixed(objects: &[Located], default_namespace: &str, results: &mut [Report]) {
    type Place<'a> = (&'a str, &'a str, &'a str);
    let mut config_maps: HashMap<Place<'_>, usize> = HashMap::new();
    for (i, located) in objects.iter().enumerate() {
        let object = &located.object;
        if str_at(object, &["apiVersion"]) == "v1" && str_at(object, &["kind"]) == "ConfigMap" {
            let namespace = match str_at(object, &["metadata", "namespace"]) {
                "" => default_namespace,
                namespace => namespace,
            };
            let name = str_at(object, &["metadata", "name"]);
            // The last definition, as the inventory keeps it.
            config_maps.insert((&objects[i].set, namespace, name), i);
        }
    }
    if config_maps.is_empty() {
        return;
    }
    let mut moved: BTreeMap<(usize, &'static str, String), Finding> = BTreeMap::new();
    for (i, partial) in results.iter_mut().enumerate() {
        let mut kept = Vec::with_capacity(partial.findings.len());
        for finding in std::mem::take(&mut partial.findings) {
            let target = finding.read_from.as_ref().and_then(|key| {
                let at = config_maps.get(&(
                    objects[i].set.as_str(),
                    finding.namespace.as_str(),
                    key.name.as_str(),
                ))?;
                Some((*at, key))
            });
            let Some((at, key)) = target.filter(|(at, _)| *at != i) else {
                kept.push(finding);
                continue;
            };
            let config_map = &objects[at];
            let path = format!("data.{}", key.key);
            let (line, column) = config_map.place(&config_map.locations(), &path);
            let relocated = Finding {
                file: config_map.file.clone(),
                line,
                column,
                api_version: "v1".to_string(),
                kind: "ConfigMap".to_string(),
                name: key.name.clone(),
                // At the ConfigMap itself, "(from ConfigMap ... key ...)" would say it twice.
                message: format!(
                    "read by {} {}, {}",
                    finding.kind,
                    finding.name,
                    finding.message.replacen(
                        &format!(
                            " (from {})",
                            crate::env::config_map_origin(&key.name, &key.key)
                        ),
                        "",
                        1
                    )
                ),
                read_from: None,
                path: path.clone(),
                ..finding
            };
            // Several readers of one key: the most severe finding says it (an exempt reader must
            // not hide one the webhook would deny), the first one read among equals.
            match moved.entry((at, relocated.rule, path)) {
                std::collections::btree_map::Entry::Vacant(slot) => {
                    slot.insert(relocated);
                }
                std::collections::btree_map::Entry::Occupied(mut slot) => {
                    if severity(relocated.level) > severity(slot.get().level) {
                        slot.insert(relocated);
                    }
                }
            }
        }
        partial.findings = kept;
    }
    for ((at, rule, path), finding) in moved {
        let own = &mut results[at].findings;
        // The ConfigMap's own finding stays only when it is more severe (its namespace mode or
        // exemptions differ from the readers'); its message then matches its level.
        let own_worst = own
            .iter()
            .filter(|f| f.rule == rule && f.path == path)
            .map(|f| severity(f.level))
            .max();
        if own_worst.is_some_and(|worst| worst > severity(finding.level)) {
            continue;
        }
        own.retain(|f| !(f.rule == rule && f.path == path));
        own.push(finding);
        own.sort_by_key(|f| (f.line, f.column));
    }
}

/// How much a finding weighs when two say the same thing: what the webhook would deny first.
fn severity(level: Level) -> u8 {
    match level {
        Level::Enforce => 3,
        Level::Warn => 2,
        Level::Exempt => 1,
        Level::Notice => 0,
    }
}

fn evaluate(engine: &Engine, located: &Located, default_namespace: &str, report: &mut Report) {
    let object = &located.object;
    let api_version = str_at(object, &["apiVersion"]);
    let kind = str_at(object, &["kind"]);
    let group = api_version.rsplit_once('/').map_or("", |(g, _)| g);
    let own_namespace = str_at(object, &["metadata", "namespace"]);
    let namespace = if !own_namespace.is_empty() {
        own_namespace
    } else if CLUSTER_SCOPED.contains(&kind) {
        ""
    } else {
        default_namespace
    };
    let name = str_at(object, &["metadata", "name"]);
    let name = if name.is_empty() {
        str_at(object, &["metadata", "generateName"])
    } else {
        name
    };
    // Per-object exemptions apply in scan as in the webhook; there is no requesting user.
    let annotations: Option<std::collections::BTreeMap<String, String>> = object
        .get("metadata")
        .and_then(|m| m.get("annotations"))
        .and_then(|a| serde_json::from_value(a.clone()).ok());
    let caller = crate::exemptions::Caller {
        annotations: annotations.as_ref(),
        ..Default::default()
    };
    let decision = match engine.decide_with(
        &Request {
            group,
            kind,
            operation: &Operation::Create,
            name,
            namespace: if namespace.is_empty() {
                default_namespace
            } else {
                namespace
            },
            object: Some(object),
            old_object: None,
            sub_resource: None,
        },
        &caller,
    ) {
        Ok(d) => d,
        Err(e) => {
            report.errors.push(InputError {
                file: located.file.clone(),
                line: Some(located.line),
                message: format!("{kind} {name}: {e}"),
            });
            return;
        }
    };
    // The document is read again only when something is to be placed in it.
    let locations = std::cell::OnceCell::new();
    let place = |path: &str| located.place(locations.get_or_init(|| located.locations()), path);
    // A built object is placed in its source file, but a patch may have changed the field:
    // say which build it is, so the value shown is not mistaken for the file's.
    let built = located.set.strip_prefix(KUSTOMIZE_BUILD);
    let finding =
        |level: Level, rule: &'static str, path: &str, value: &str, message: &str, fix: &str| {
            let (line, column) = place(path);
            let message = match built {
                Some(build) => format!("{message} [as built by kustomize from {build}]"),
                None => message.to_string(),
            };
            let message = message.as_str();
            Finding {
                file: located.file.clone(),
                line,
                column,
                api_version: api_version.to_string(),
                kind: kind.to_string(),
                namespace: namespace.to_string(),
                name: name.to_string(),
                rule,
                level,
                path: path.to_string(),
                value: value.to_string(),
                message: message.to_string(),
                fix: fix.to_string(),
                read_from: None,
            }
        };
    for (level, violations) in [
        (Level::Enforce, &decision.denied_by),
        (Level::Warn, &decision.warnings),
    ] {
        for v in violations {
            let mut found = finding(
                level,
                v.rule.as_str(),
                &v.path,
                &v.value,
                &v.message,
                &v.fix,
            );
            found.read_from = v.source.clone();
            report.findings.push(found);
        }
    }
    for e in &decision.exempted {
        let v = &e.violation;
        let message = format!("{} (exempt: {})", v.message, e.exemption);
        let mut found = finding(
            Level::Exempt,
            v.rule.as_str(),
            &v.path,
            &v.value,
            &message,
            &v.fix,
        );
        found.read_from = v.source.clone();
        report.findings.push(found);
    }
    for note in &decision.policy_notes {
        report.findings.push(finding(
            Level::Notice,
            "applyguard",
            "metadata",
            "",
            note,
            "",
        ));
    }
    for n in &decision.notices {
        report.findings.push(finding(
            Level::Notice,
            n.rule.as_str(),
            &n.path,
            "",
            &n.message,
            "",
        ));
    }
}
