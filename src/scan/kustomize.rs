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
    /// Kustomizations of the directories it includes.
    children: Vec<PathBuf>,
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
    let resources: BTreeSet<&PathBuf> = named.values().flat_map(|e| &e.resources).collect();
    let patches: BTreeSet<&PathBuf> = named.values().flat_map(|e| &e.patches).collect();
    let mut out = Layout::default();
    for file in files {
        let Some(path) = canonical(file) else {
            continue;
        };
        if is_kustomization(file) || resources.contains(&path) {
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
    fn a_directory_without_kustomizations_is_plain_manifests() {
        let dir = tempfile::tempdir().unwrap();
        let files = vec![write(dir.path(), "a.yaml", "kind: Pod\n")];
        assert!(layout(dir.path(), &files).is_none());
    }
}
