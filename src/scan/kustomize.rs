//! A scanned directory that holds kustomizations, read as kustomize reads it: the files a
//! kustomization lists as patches are patches (partial objects, never evaluated alone), and
//! manifests no kustomization under that directory includes are not deployed by it (a notice,
//! not violations). Nothing is rendered here; `kubectl kustomize DIR | applyguard scan -`
//! evaluates the built output.
//!
//! Followed, relative to each kustomization's directory (kustomize's `api/types/kustomization.go`):
//! `resources`, `bases`, `components` and `crds` (files are included; a directory is followed
//! through its own kustomization), and as patches `patches[].path`,
//! `patchesStrategicMerge[]` (entries that name a file) and `patchesJson6902[].path`. Remote
//! resources (URLs, `github.com/...`) are left alone.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_json::Value;

/// File names kustomize recognises as a kustomization.
const KUSTOMIZATION_NAMES: [&str; 3] = ["kustomization.yaml", "kustomization.yml", "Kustomization"];

/// How the files under one scanned directory relate to its kustomizations.
#[derive(Debug, Default)]
pub struct Layout {
    /// Files some kustomization lists as a patch and none as a resource.
    pub patches: BTreeSet<PathBuf>,
    /// Manifest files no kustomization under the directory includes.
    pub unlisted: BTreeSet<PathBuf>,
    /// Directories whose kustomization no other includes (the overlays, or a lone base): what
    /// `kustomize build` is run on.
    pub tops: Vec<PathBuf>,
    /// Each project's root: files under it are what the builds are made of.
    pub roots: Vec<PathBuf>,
    /// Resource files (canonical) -> the top directories whose build includes them: two
    /// definitions of one object are duplicates only within one build.
    pub included_by: std::collections::BTreeMap<PathBuf, BTreeSet<PathBuf>>,
    /// Every resource file a kustomization lists (canonical), inside a project root or not.
    pub resources: BTreeSet<PathBuf>,
}

fn kustomization_in(dir: &Path) -> Option<PathBuf> {
    KUSTOMIZATION_NAMES
        .iter()
        .map(|name| dir.join(name))
        .find(|p| p.is_file())
}

fn is_kustomization(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| KUSTOMIZATION_NAMES.contains(&n))
}

fn is_remote(entry: &str) -> bool {
    entry.contains("://") || entry.starts_with("github.com/") || entry.starts_with("git@")
}

fn canonical(path: &Path) -> Option<PathBuf> {
    std::fs::canonicalize(path).ok()
}

fn strings(value: Option<&Value>) -> impl Iterator<Item = &str> {
    value
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
}

fn paths_of(value: Option<&Value>) -> impl Iterator<Item = &str> {
    value
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|p| p.get("path").and_then(Value::as_str))
}

/// What one kustomization names directly.
#[derive(Default)]
struct Entries {
    resources: Vec<PathBuf>,
    patches: Vec<PathBuf>,
    /// Files configMapGenerator and secretGenerator read (`files`, `envs`): inputs of the
    /// build, not manifests, and not unlisted either.
    generator_inputs: Vec<PathBuf>,
    /// Kustomizations of the directories it includes.
    children: Vec<PathBuf>,
    /// `kind: Component`: only buildable as part of a kustomization that lists it.
    component: bool,
}

fn entries(kustomization: &Path) -> Entries {
    let mut out = Entries::default();
    let Some(dir) = kustomization.parent() else {
        return out;
    };
    // An unreadable or unparsable kustomization is reported by the scan itself (it is one of
    // the scanned files).
    let Some(doc) = std::fs::read_to_string(kustomization)
        .ok()
        .and_then(|text| serde_yaml_ng::from_str::<Value>(&text).ok())
    else {
        return out;
    };
    out.component = doc.get("kind").and_then(Value::as_str) == Some("Component");
    for generator in ["configMapGenerator", "secretGenerator"] {
        for entry in doc
            .get(generator)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let files = strings(entry.get("files")).chain(strings(entry.get("envs")));
            // `files` entries may be `key=path`.
            for file in files.map(|f| f.rsplit_once('=').map_or(f, |(_, p)| p)) {
                out.generator_inputs.extend(canonical(&dir.join(file)));
            }
        }
    }
    for field in ["resources", "bases", "components", "crds"] {
        for entry in strings(doc.get(field)).filter(|e| !is_remote(e)) {
            let Some(target) = canonical(&dir.join(entry)) else {
                continue;
            };
            if target.is_dir() {
                out.children
                    .extend(kustomization_in(&target).and_then(|k| canonical(&k)));
            } else {
                out.resources.push(target);
            }
        }
    }
    let strategic = strings(doc.get("patchesStrategicMerge"));
    let listed = paths_of(doc.get("patches")).chain(paths_of(doc.get("patchesJson6902")));
    // patchesStrategicMerge entries may be inline patches rather than file names.
    for entry in strategic.chain(listed).filter(|e| !e.contains('\n')) {
        out.patches.extend(canonical(&dir.join(entry)));
    }
    out
}

/// The deepest directory holding every one of `dirs`.
fn common_ancestor(dirs: &[PathBuf]) -> Option<PathBuf> {
    let mut common = dirs.first()?.clone();
    for dir in &dirs[1..] {
        while !dir.starts_with(&common) {
            common = common.parent()?.to_path_buf();
        }
    }
    Some(common)
}

/// Classifies `files` (found under `root`) by the kustomizations among them. `None` when the
/// directory holds no kustomization: its files are plain manifests.
///
/// Kustomizations that include one another (a base and its overlays) form a project, rooted
/// at the deepest directory holding them all; a file under that directory that none of them
/// includes is unlisted. Files outside every project (a directory of plain manifests next to
/// a kustomize tree) are plain manifests.
pub fn layout(root: &Path, files: &[PathBuf]) -> Option<Layout> {
    let kustomizations: Vec<PathBuf> = files
        .iter()
        .filter(|f| is_kustomization(f))
        .filter_map(|f| canonical(f))
        .collect();
    if kustomizations.is_empty() || !root.is_dir() {
        return None;
    }
    let mut all: Vec<PathBuf> = kustomizations.clone();
    let mut named: std::collections::BTreeMap<PathBuf, Entries> = Default::default();
    while let Some(k) = all.pop() {
        if named.contains_key(&k) {
            continue;
        }
        let e = entries(&k);
        all.extend(e.children.iter().cloned());
        named.insert(k, e);
    }
    // Projects: kustomizations connected by inclusion (union-find over their indices).
    let keys: Vec<PathBuf> = named.keys().cloned().collect();
    let index = |p: &PathBuf| keys.iter().position(|k| k == p);
    let mut parent: Vec<usize> = (0..keys.len()).collect();
    fn find(parent: &mut [usize], i: usize) -> usize {
        let mut i = i;
        while parent[i] != i {
            parent[i] = parent[parent[i]];
            i = parent[i];
        }
        i
    }
    for (i, k) in keys.iter().enumerate() {
        for child in &named[k].children {
            if let Some(j) = index(child) {
                let (a, b) = (find(&mut parent, i), find(&mut parent, j));
                parent[a] = b;
            }
        }
    }
    let mut projects: std::collections::BTreeMap<usize, Vec<PathBuf>> = Default::default();
    for (i, k) in keys.iter().enumerate() {
        let group = find(&mut parent, i);
        projects
            .entry(group)
            .or_default()
            .extend(k.parent().map(Path::to_path_buf));
    }
    let project_roots: Vec<PathBuf> = projects
        .values()
        .filter_map(|dirs| common_ancestor(dirs))
        .collect();
    let included: BTreeSet<&PathBuf> = named.values().flat_map(|e| &e.children).collect();
    let tops: Vec<PathBuf> = keys
        .iter()
        .filter(|k| !included.contains(k) && !named[*k].component)
        .filter_map(|k| k.parent().map(Path::to_path_buf))
        .collect();
    let resources: BTreeSet<&PathBuf> = named.values().flat_map(|e| &e.resources).collect();
    let generator_inputs: BTreeSet<&PathBuf> =
        named.values().flat_map(|e| &e.generator_inputs).collect();
    let patches: BTreeSet<&PathBuf> = named.values().flat_map(|e| &e.patches).collect();
    let mut included_by: std::collections::BTreeMap<PathBuf, BTreeSet<PathBuf>> =
        Default::default();
    for top in keys.iter().filter(|k| !included.contains(k)) {
        let Some(top_dir) = top.parent().map(Path::to_path_buf) else {
            continue;
        };
        let mut stack = vec![top.clone()];
        let mut visited = BTreeSet::new();
        while let Some(k) = stack.pop() {
            if !visited.insert(k.clone()) {
                continue;
            }
            if let Some(e) = named.get(&k) {
                for file in &e.resources {
                    included_by
                        .entry(file.clone())
                        .or_default()
                        .insert(top_dir.clone());
                }
                stack.extend(e.children.iter().cloned());
            }
        }
    }
    let mut out = Layout {
        tops,
        roots: project_roots.clone(),
        included_by,
        resources: resources.iter().map(|p| (*p).clone()).collect(),
        ..Layout::default()
    };
    for file in files {
        let Some(path) = canonical(file) else {
            continue;
        };
        if is_kustomization(file) || resources.contains(&path) || generator_inputs.contains(&path) {
            continue;
        }
        if patches.contains(&path) {
            out.patches.insert(file.clone());
        } else if project_roots.iter().any(|r| path.starts_with(r)) {
            out.unlisted.insert(file.clone());
        }
    }
    Some(out)
}

/// `kustomize build` of `dir` with `config.kubernetes.io/origin` annotations, through a wrapper
/// kustomization in a scratch directory (so the user's files are never touched): kubectl's
/// built-in kustomize, or a `kustomize` binary. The annotations' paths are made absolute.
pub fn build(dir: &Path) -> Result<String, String> {
    let scratch =
        tempfile::tempdir().map_err(|e| format!("cannot create a scratch directory: {e}"))?;
    let target = canonical(dir).ok_or_else(|| format!("cannot resolve {}", dir.display()))?;
    let base = canonical(scratch.path()).unwrap_or_else(|| scratch.path().to_path_buf());
    let relative = relative_path(&base, &target);
    std::fs::write(
        base.join("kustomization.yaml"),
        format!(
            "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n  - {}\nbuildMetadata: [originAnnotations]\n",
            // Quoted: a path may hold `#`, `: ` or start with a YAML indicator.
            serde_json::Value::String(relative.display().to_string())
        ),
    )
    .map_err(|e| format!("cannot write the wrapper kustomization: {e}"))?;
    let attempts: [(&str, &[&str]); 2] = [
        (
            "kubectl",
            &["kustomize", "--load-restrictor", "LoadRestrictionsNone"],
        ),
        (
            "kustomize",
            &["build", "--load-restrictor", "LoadRestrictionsNone"],
        ),
    ];
    let mut tried = Vec::new();
    for (program, args) in attempts {
        match std::process::Command::new(program)
            .args(args)
            .arg(&base)
            .output()
        {
            Ok(out) if out.status.success() => {
                let text = String::from_utf8_lossy(&out.stdout).into_owned();
                return Ok(absolute_origins(&text, &base));
            }
            Ok(out) => {
                return Err(format!(
                    "{program} {} {}: {}",
                    args.join(" "),
                    dir.display(),
                    String::from_utf8_lossy(&out.stderr).trim()
                ));
            }
            Err(e) => tried.push(format!("{program}: {e}")),
        }
    }
    Err(format!(
        "--kustomize needs kubectl or kustomize on PATH ({})",
        tried.join("; ")
    ))
}

/// `to` relative to `from` (both absolute).
fn relative_path(from: &Path, to: &Path) -> PathBuf {
    let from: Vec<_> = from.components().collect();
    let to: Vec<_> = to.components().collect();
    let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
    let mut out = PathBuf::new();
    for _ in common..from.len() {
        out.push("..");
    }
    for part in &to[common..] {
        out.push(part);
    }
    out
}

/// `base` joined with `relative`, `..` resolved without touching the file system.
fn lexical_join(base: &Path, relative: &str) -> PathBuf {
    let mut out = base.to_path_buf();
    for part in Path::new(relative).components() {
        match part {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// Rewrites `path: X` of each origin annotation to an absolute path.
fn absolute_origins(text: &str, base: &Path) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_origin = false;
    for line in text.split_inclusive('\n') {
        let trimmed = line.trim_start();
        if trimmed.starts_with("config.kubernetes.io/origin:") {
            in_origin = true;
        } else if in_origin && let Some(path) = trimmed.strip_prefix("path: ") {
            let indent = &line[..line.len() - trimmed.len()];
            let resolved = lexical_join(base, path.trim_end());
            out.push_str(&format!("{indent}path: {}\n", resolved.display()));
            in_origin = false;
            continue;
        } else if !trimmed.starts_with(|c: char| c.is_ascii_lowercase()) {
            in_origin = false;
        }
        out.push_str(line);
    }
    out
}

/// The file an object of a build came from, read from its origin annotation.
pub fn origin(object: &Value) -> Option<PathBuf> {
    let text = object
        .get("metadata")?
        .get("annotations")?
        .get("config.kubernetes.io/origin")?
        .as_str()?;
    text.lines()
        .find_map(|l| l.trim().strip_prefix("path: "))
        .map(|p| PathBuf::from(p.trim()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(root: &Path, file: &str, text: &str) -> PathBuf {
        let path = root.join(file);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn patches_resources_and_unlisted_files() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let mut files = vec![
            write(
                root,
                "base/kustomization.yaml",
                "resources: [deployment.yaml, ../shared/]\n",
            ),
            write(root, "base/deployment.yaml", "kind: Deployment\n"),
            write(
                root,
                "shared/kustomization.yml",
                "resources: [secret.yaml]\n",
            ),
            write(root, "shared/secret.yaml", "kind: Secret\n"),
            write(
                root,
                "overlays/prod/kustomization.yaml",
                "resources: [../../base, https://github.com/x/y//z]\npatches:\n  - path: replicas-patch.yaml\npatchesStrategicMerge: [image-patch.yaml, \"kind: Deployment\\nmetadata: {name: x}\\n\"]\npatchesJson6902:\n  - path: json-patch.yaml\n    target: {kind: Deployment, name: web}\n",
            ),
            write(
                root,
                "overlays/prod/replicas-patch.yaml",
                "kind: Deployment\n",
            ),
            write(root, "overlays/prod/image-patch.yaml", "kind: Deployment\n"),
            write(root, "overlays/prod/json-patch.yaml", "- op: add\n"),
            write(root, "legacy/old-deployment.yaml", "kind: Deployment\n"),
        ];
        files.sort();
        let layout = layout(root, &files).unwrap();
        let names = |set: &BTreeSet<PathBuf>| -> Vec<String> {
            set.iter()
                .map(|p| p.strip_prefix(root).unwrap().display().to_string())
                .collect()
        };
        assert_eq!(
            names(&layout.patches),
            [
                "overlays/prod/image-patch.yaml",
                "overlays/prod/json-patch.yaml",
                "overlays/prod/replicas-patch.yaml"
            ]
        );
        assert_eq!(names(&layout.unlisted), ["legacy/old-deployment.yaml"]);
    }

    #[test]
    fn plain_manifests_beside_a_kustomize_project_are_evaluated() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let files = vec![
            write(
                root,
                "k8s/base/kustomization.yaml",
                "resources: [pod.yaml]\n",
            ),
            write(root, "k8s/base/pod.yaml", "kind: Pod\n"),
            write(
                root,
                "k8s/overlays/dev/kustomization.yaml",
                "resources: [../../base]\n",
            ),
            write(root, "k8s/unused/pod.yaml", "kind: Pod\n"),
            write(root, "raw/pod.yaml", "kind: Pod\n"),
        ];
        let layout = layout(root, &files).unwrap();
        assert!(layout.patches.is_empty());
        let unlisted: Vec<_> = layout
            .unlisted
            .iter()
            .map(|p| p.strip_prefix(root).unwrap())
            .collect();
        assert_eq!(unlisted, [Path::new("k8s/unused/pod.yaml")]);
    }

    #[test]
    fn components_are_not_built_alone_and_generator_inputs_are_not_unlisted() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let files = vec![
            write(
                root,
                "base/kustomization.yaml",
                "resources: [pod.yaml]\nconfigMapGenerator:\n  - name: c\n    files: [config.yaml=policy.yaml]\n    envs: [settings.env.yaml]\n",
            ),
            write(root, "base/pod.yaml", "kind: Pod\n"),
            write(root, "base/policy.yaml", "mode: warn\n"),
            write(root, "base/settings.env.yaml", "A=1\n"),
            write(
                root,
                "components/warn/kustomization.yaml",
                "apiVersion: kustomize.config.k8s.io/v1alpha1\nkind: Component\n",
            ),
            write(
                root,
                "overlays/warn/kustomization.yaml",
                "resources: [../../base]\ncomponents: [../../components/warn]\n",
            ),
        ];
        let layout = layout(root, &files).unwrap();
        assert!(layout.unlisted.is_empty(), "{:?}", layout.unlisted);
        let tops: Vec<_> = layout
            .tops
            .iter()
            .map(|t| {
                t.strip_prefix(std::fs::canonicalize(root).unwrap())
                    .unwrap()
                    .to_path_buf()
            })
            .collect();
        assert_eq!(tops, [Path::new("overlays/warn")]);
    }

    #[test]
    fn a_directory_without_kustomizations_is_plain_manifests() {
        let dir = tempfile::tempdir().unwrap();
        let files = vec![write(dir.path(), "a.yaml", "kind: Pod\n")];
        assert!(layout(dir.path(), &files).is_none());
    }
}
