//! Rule `placeholder-image`: an image that names a placeholder registry or organisation, carries a
//! template leftover, or is not an image reference the kubelet can pull at all.
//!
//! References are parsed with the distribution reference grammar (the one the container runtimes
//! use), including Docker Hub defaulting (`nginx` is `docker.io/library/nginx`), so every check
//! below looks at a registry host or a whole path segment, never at a substring of the raw string.
//!
//! The parse is our own copy of `oci-spec`'s (same pattern, same registry split, same checks and
//! errors) with the tag written in ASCII classes: oci-spec 0.10 compiles the tag's `\w` as Unicode,
//! a regex that keeps ~13 MB of memory and was ~12 % of decide time (scripts/bench/findings.md).

use std::sync::OnceLock;

use globset::{Glob, GlobSet, GlobSetBuilder};
use oci_spec::distribution::{ParseError, Reference};
use regex::Regex;

use super::{Findings, Rule, RuleId, Subject, Violation};
use crate::policy::{PlaceholderImageConfig, PolicyError};

/// Why an image is a placeholder, or `Ok` with the parsed reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageVerdict {
    Fine,
    Empty,
    TemplateLeftover(&'static str),
    Invalid(String),
    ReservedHost(String),
    PlaceholderSegment(String),
    DeniedPattern(String),
    OutsideAllowed,
}

/// Reserved domains (RFC 2606 / RFC 6761) that never host a real registry.
const RESERVED_DOMAINS: &[&str] = &["example.com", "example.org", "example.net"];
const RESERVED_TLDS: &[&str] = &["example", "invalid"];

/// Segments that are placeholders when they are the whole segment.
const PLACEHOLDER_WORDS: &[&str] = &[
    "changeme",
    "change-me",
    "change_me",
    "replaceme",
    "replace-me",
    "replace_me",
    "placeholder",
    "todo",
    "fixme",
];

/// Nouns that follow `your` in placeholder names (`yourorg`, `yourusername`). `your-`, `your_`
/// and `your.` followed by anything are placeholders too. A bare `your` prefix is not enough:
/// `yourls` is a real Docker Hub official image.
const YOUR_NOUNS: &[&str] = &[
    "org",
    "organization",
    "organisation",
    "company",
    "registry",
    "repo",
    "repository",
    "user",
    "username",
    "name",
    "team",
    "project",
    "app",
    "image",
    "domain",
    "account",
    "namespace",
    "id",
    "dockerhub",
    "docker",
    "host",
    "tag",
    "version",
];

fn is_placeholder_segment(segment: &str) -> bool {
    let s = segment.to_ascii_lowercase();
    if PLACEHOLDER_WORDS.contains(&s.as_str()) {
        return true;
    }
    let Some(rest) = s.strip_prefix("your") else {
        return false;
    };
    rest.is_empty()
        || rest.starts_with(['-', '_', '.'])
        || YOUR_NOUNS.iter().any(|noun| {
            rest == *noun
                || (rest.starts_with(noun) && rest[noun.len()..].starts_with(['-', '_', '.']))
                || rest == format!("{noun}s")
        })
}

fn is_reserved_host(host: &str) -> bool {
    let host = host.to_ascii_lowercase();
    let host = host.trim_end_matches('.');
    RESERVED_DOMAINS
        .iter()
        .any(|d| host == *d || host.ends_with(&format!(".{d}")))
        || RESERVED_TLDS
            .iter()
            .any(|tld| host == *tld || host.ends_with(&format!(".{tld}")))
}

/// Template syntax that no tool expanded. The kubelet expands `$(VAR)` only in command, args and
/// env values, never in `image`, so any of these in an image is a leftover.
fn template_leftover(image: &str) -> Option<&'static str> {
    if image.contains('<') || image.contains('>') {
        Some("<...>")
    } else if image.contains("${") {
        Some("${...}")
    } else if image.contains("$(") {
        Some("$(...)")
    } else if image.contains("{{") || image.contains("}}") {
        Some("{{...}}")
    } else {
        None
    }
}

/// oci-spec's `REFERENCE_REGEXP` (docker/distribution's grammar) character for character, except
/// the tag: `[\w][\w.-]{0,127}` there, ASCII here. Go's `\w` is ASCII, so this is what the grammar
/// means and what the kubelet accepts; Rust's Unicode `\w` is what made oci-spec's regex huge.
/// Groups: 1 the name (optional `host[:port]/` then path), 2 the tag, 3 the digest.
const REFERENCE_PATTERN: &str = r"^((?:(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])(?:(?:\.(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]))+)?(?::[0-9]+)?/)?[a-z0-9]+(?:(?:(?:[._]|__|[-]*)[a-z0-9]+)+)?(?:(?:/[a-z0-9]+(?:(?:(?:[._]|__|[-]*)[a-z0-9]+)+)?)+)?)(?::([A-Za-z0-9_][A-Za-z0-9_.-]{0,127}))?(?:@([A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*[:][[:xdigit:]]{32,}))?$";

/// Longest repository (after Docker Hub's `library/` is added), as in oci-spec and distribution.
const NAME_TOTAL_LENGTH_MAX: usize = 255;
const DOCKER_HUB: &str = "docker.io";

/// The compiled grammar. The pattern is a constant that `reference_pattern_compiles` proves
/// builds; were it ever not to, every image would be reported invalid rather than the process
/// panicking.
fn reference_regex() -> Option<&'static Regex> {
    static RE: OnceLock<Option<Regex>> = OnceLock::new();
    RE.get_or_init(|| Regex::new(REFERENCE_PATTERN).ok())
        .as_ref()
}

/// Parses an image reference exactly as `oci_spec::distribution::Reference::from_str` does (same
/// errors, same defaulting), except that a non-ASCII tag is `ReferenceInvalidFormat`.
pub fn parse_reference(image: &str) -> Result<Reference, ParseError> {
    if image.is_empty() {
        return Err(ParseError::NameEmpty);
    }
    let captures = reference_regex()
        .and_then(|re| re.captures(image))
        .ok_or(ParseError::ReferenceInvalidFormat)?;
    let name = captures.get(1).map_or("", |m| m.as_str());
    let tag = captures.get(2).map(|m| m.as_str().to_string());
    let digest = captures.get(3).map(|m| m.as_str().to_string());
    let (registry, repository) = split_domain(name);
    if repository.len() > NAME_TOTAL_LENGTH_MAX {
        return Err(ParseError::NameTooLong);
    }
    if let Some(digest) = &digest {
        check_digest(digest)?;
    }
    Ok(match (tag, digest) {
        (Some(tag), Some(digest)) => {
            Reference::with_tag_and_digest(registry, repository, tag, digest)
        }
        (None, Some(digest)) => Reference::with_digest(registry, repository, digest),
        // No tag and no digest means `latest`, as the runtimes pull it.
        (tag, None) => Reference::with_tag(
            registry,
            repository,
            tag.unwrap_or_else(|| "latest".to_string()),
        ),
    })
}

/// Splits a name into registry and repository as oci-spec's `split_domain` (and distribution's
/// `splitDomain`) does: the first component is a registry only if it holds a `.` or a `:` or is
/// `localhost`; otherwise the registry is Docker Hub, where a one-component name is `library/`'s.
fn split_domain(name: &str) -> (String, String) {
    let (registry, rest) = match name.split_once('/') {
        Some((first, rest)) if first.contains(['.', ':']) || first == "localhost" => (first, rest),
        _ => (DOCKER_HUB, name),
    };
    let registry = if registry == "index.docker.io" {
        DOCKER_HUB
    } else {
        registry
    };
    let repository = if registry == DOCKER_HUB && !rest.contains('/') {
        format!("library/{rest}")
    } else {
        rest.to_string()
    };
    (registry.to_string(), repository)
}

/// The pattern only checks a digest's shape; its length must match its algorithm (hex, so twice
/// the hash size), and only the algorithms oci-spec knows are accepted.
fn check_digest(digest: &str) -> Result<(), ParseError> {
    let (algorithm, hex) = digest
        .split_once(':')
        .ok_or(ParseError::DigestInvalidFormat)?;
    let want = match algorithm {
        "sha256" => 64,
        "sha384" => 96,
        "sha512" => 128,
        _ => return Err(ParseError::DigestUnsupported),
    };
    if hex.len() == want {
        Ok(())
    } else {
        Err(ParseError::DigestInvalidLength)
    }
}

/// The registry host without its port.
fn host_of(registry: &str) -> &str {
    registry.split(':').next().unwrap_or(registry)
}

/// Classifies an image by the built-in checks and the configured deny and allow lists.
pub fn classify_image(image: &str, deny: &GlobSet, allow: &[String]) -> ImageVerdict {
    if image.trim().is_empty() {
        return ImageVerdict::Empty;
    }
    if let Some(kind) = template_leftover(image) {
        return ImageVerdict::TemplateLeftover(kind);
    }
    let reference = match parse_reference(image) {
        Ok(r) => r,
        Err(e) => return ImageVerdict::Invalid(e.to_string()),
    };
    let registry = reference.registry();
    let host = host_of(registry);
    if is_reserved_host(host) {
        return ImageVerdict::ReservedHost(host.to_string());
    }
    if let Some(label) = host.split('.').find(|label| is_placeholder_segment(label)) {
        return ImageVerdict::PlaceholderSegment(label.to_string());
    }
    if let Some(segment) = reference
        .repository()
        .split('/')
        .chain(reference.tag())
        .find(|s| is_placeholder_segment(s))
    {
        return ImageVerdict::PlaceholderSegment(segment.to_string());
    }
    // Registry hosts are case-insensitive, and Docker Hub has aliases: compare normalised.
    let registry = match registry.to_ascii_lowercase().as_str() {
        "index.docker.io" | "registry-1.docker.io" => "docker.io".to_string(),
        other => other.to_string(),
    };
    let name = format!("{registry}/{}", reference.repository());
    if !deny.is_empty()
        && (deny.is_match(&name) || deny.is_match(reference.whole()) || deny.is_match(image))
    {
        return ImageVerdict::DeniedPattern(name);
    }
    if !allow.is_empty() && !allow.iter().any(|prefix| segment_prefix(prefix, &name)) {
        return ImageVerdict::OutsideAllowed;
    }
    ImageVerdict::Fine
}

/// `ghcr.io/acme` matches `ghcr.io/acme/app` and `ghcr.io/acme`, not `ghcr.io/acme-evil/app`.
fn segment_prefix(prefix: &str, name: &str) -> bool {
    name == prefix
        || name
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// Normalises an `allowRegistries` entry the way image references are normalised.
fn normalise_prefix(prefix: &str) -> String {
    let p = prefix.trim().trim_end_matches('/').to_ascii_lowercase();
    match p.split_once('/') {
        Some(("index.docker.io" | "registry-1.docker.io", rest)) => format!("docker.io/{rest}"),
        None if p == "index.docker.io" || p == "registry-1.docker.io" => "docker.io".to_string(),
        _ => p,
    }
}

pub struct PlaceholderImage {
    deny: GlobSet,
    allow: Vec<String>,
}

impl PlaceholderImage {
    pub fn new(config: &PlaceholderImageConfig) -> Result<PlaceholderImage, PolicyError> {
        let mut builder = GlobSetBuilder::new();
        for pattern in &config.deny {
            let glob = Glob::new(pattern).map_err(|e| PolicyError::Invalid {
                path: "rules.placeholder-image.deny".to_string(),
                message: format!("pattern {pattern:?}: {e}"),
            })?;
            builder.add(glob);
        }
        let deny = builder.build().map_err(|e| PolicyError::Invalid {
            path: "rules.placeholder-image.deny".to_string(),
            message: e.to_string(),
        })?;
        // Compile the reference regex (well under a millisecond) with the policy rather than on
        // the first admission request.
        reference_regex();
        Ok(PlaceholderImage {
            deny,
            allow: config
                .allow_registries
                .iter()
                .map(|p| normalise_prefix(p))
                .collect(),
        })
    }
}

impl Rule for PlaceholderImage {
    fn id(&self) -> RuleId {
        RuleId::PlaceholderImage
    }

    fn check(&self, subject: &Subject<'_>, findings: &mut Findings) {
        let out = &mut findings.violations;
        for container in subject.pod.containers() {
            let image = container.image.unwrap_or("");
            let who = container.describe();
            let (message, fix) = match classify_image(image, &self.deny, &self.allow) {
                ImageVerdict::Fine => continue,
                ImageVerdict::Empty => (
                    format!("{who} has no image"),
                    "set image to the registry/repository:tag of a real image.".to_string(),
                ),
                ImageVerdict::TemplateLeftover(kind) => (
                    format!("{who} image contains unrendered template syntax {kind}"),
                    "render the template (helm, kustomize, envsubst) before applying, or write the real image.".to_string(),
                ),
                ImageVerdict::Invalid(reason) => (
                    format!("{who} image is not a valid image reference ({reason}); the kubelet would fail with InvalidImageName"),
                    "use lowercase registry/repository[:tag][@digest], with no spaces.".to_string(),
                ),
                ImageVerdict::ReservedHost(host) => (
                    format!("{who} image comes from {host}, a reserved example domain that hosts no registry"),
                    "point the image at the registry your images are really pushed to.".to_string(),
                ),
                ImageVerdict::PlaceholderSegment(segment) => (
                    format!("{who} image contains the placeholder {segment:?}"),
                    format!("replace {segment:?} with the real registry, organisation or tag."),
                ),
                ImageVerdict::DeniedPattern(name) => (
                    format!("{who} image {name} matches a deny pattern of this cluster's policy"),
                    "use an image the policy allows (see rules.placeholder-image.deny).".to_string(),
                ),
                ImageVerdict::OutsideAllowed => (
                    format!("{who} image is not from an allowed registry"),
                    format!("use an image under one of: {}.", self.allow.join(", ")),
                ),
            };
            out.push(Violation {
                rule: RuleId::PlaceholderImage,
                path: format!("{}.image", container.path),
                value: image.to_string(),
                message,
                fix,
                source: None,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload::{PodView, WorkloadKind};
    use serde_json::json;

    fn verdict(image: &str) -> ImageVerdict {
        classify_image(image, &GlobSet::empty(), &[])
    }

    #[test]
    fn placeholder_families() {
        use ImageVerdict::*;
        let table = [
            ("", Empty),
            ("   ", Empty),
            (
                "registry.example.com/app:1.0",
                ReservedHost("registry.example.com".into()),
            ),
            ("example.org/team/app", ReservedHost("example.org".into())),
            ("example.net:5000/app", ReservedHost("example.net".into())),
            (
                "registry.example/app",
                ReservedHost("registry.example".into()),
            ),
            (
                "images.invalid/app:v1",
                ReservedHost("images.invalid".into()),
            ),
            (
                "ghcr.io/your-org/app:1.2.3",
                PlaceholderSegment("your-org".into()),
            ),
            (
                "your-company/api",
                PlaceholderSegment("your-company".into()),
            ),
            (
                "your-registry.io/app",
                PlaceholderSegment("your-registry".into()),
            ),
            (
                "docker.io/yourusername/app",
                PlaceholderSegment("yourusername".into()),
            ),
            ("quay.io/yourorg/app", PlaceholderSegment("yourorg".into())),
            (
                "ghcr.io/your_team/app",
                PlaceholderSegment("your_team".into()),
            ),
            (
                "registry.gitlab.com/acme/changeme",
                PlaceholderSegment("changeme".into()),
            ),
            (
                "acme/change-me:latest",
                PlaceholderSegment("change-me".into()),
            ),
            (
                "ghcr.io/acme/replace-me",
                PlaceholderSegment("replace-me".into()),
            ),
            (
                "ghcr.io/acme/replace_me",
                PlaceholderSegment("replace_me".into()),
            ),
            (
                "ghcr.io/placeholder/app",
                PlaceholderSegment("placeholder".into()),
            ),
            ("ghcr.io/acme/todo", PlaceholderSegment("todo".into())),
            (
                "ghcr.io/acme/app:changeme",
                PlaceholderSegment("changeme".into()),
            ),
            ("<registry>/app", TemplateLeftover("<...>")),
            ("ghcr.io/acme/app:<tag>", TemplateLeftover("<...>")),
            ("${REGISTRY}/app:1.0", TemplateLeftover("${...}")),
            ("$(REGISTRY)/app", TemplateLeftover("$(...)")),
            ("{{ .Values.image }}", TemplateLeftover("{{...}}")),
            (
                "ghcr.io/acme/app:{{ .Chart.AppVersion }}",
                TemplateLeftover("{{...}}"),
            ),
            ("Nginx:latest", Invalid("invalid reference format".into())),
            ("nginx latest", Invalid("invalid reference format".into())),
            ("ghcr.io//app", Invalid("invalid reference format".into())),
            (
                "nginx@sha256:abc",
                Invalid("invalid reference format".into()),
            ),
        ];
        for (image, expected) in table {
            assert_eq!(verdict(image), expected, "{image:?}");
        }
    }

    #[test]
    fn reference_pattern_compiles() {
        Regex::new(REFERENCE_PATTERN).unwrap();
        assert!(reference_regex().is_some());
    }

    /// What a parse produced, in a form both parsers' results can be compared in.
    type Parsed = Result<(String, String, Option<String>, Option<String>, String), ParseError>;

    fn parsed(result: Result<Reference, ParseError>) -> Parsed {
        result.map(|r| {
            (
                r.registry().to_string(),
                r.repository().to_string(),
                r.tag().map(str::to_string),
                r.digest().map(str::to_string),
                r.whole(),
            )
        })
    }

    #[test]
    fn parse_agrees_with_oci_spec() {
        let sha256 = "0123456789abcdef".repeat(4);
        let sha384 = "0123456789abcdef".repeat(6);
        let sha512 = "0123456789abcdef".repeat(8);
        let table: Vec<(String, bool)> = vec![
            // Docker Hub short names, `library/`, the legacy and registry-1 hosts.
            ("nginx".into(), true),
            ("nginx:1.27".into(), true),
            ("library/nginx".into(), true),
            ("docker.io/nginx".into(), true),
            ("docker.io/library/nginx:latest".into(), true),
            ("index.docker.io/nginx".into(), true),
            ("index.docker.io/acme/app:1".into(), true),
            ("registry-1.docker.io/library/redis:7".into(), true),
            ("acme/app:v1.2.3".into(), true),
            ("acme/team/app".into(), true),
            ("a__b/c--d/e.f_g:1".into(), true),
            ("a___b".into(), false),
            // Registries: a dot, a port or localhost makes the first component a host.
            ("ghcr.io/acme/app:1.0".into(), true),
            ("GHCR.io/acme/app".into(), true),
            ("ghcr.io:443/acme/app".into(), true),
            ("localhost/app".into(), true),
            ("localhost:5000/app:dev".into(), true),
            ("localhost".into(), true),
            ("registry:5000/app".into(), true),
            ("test.com:5000".into(), true),
            ("10.0.0.1:5000/team/app:1".into(), true),
            ("192.168.1.10/app".into(), true),
            ("[::1]:5000/app".into(), false),
            ("-bad.io/app".into(), false),
            ("bad-.io/app".into(), false),
            // Digests: algorithm, length, hex, with and without a tag.
            (format!("app@sha256:{sha256}"), true),
            (format!("ghcr.io/acme/app@sha384:{sha384}"), true),
            (format!("ghcr.io/acme/app@sha512:{sha512}"), true),
            (format!("ghcr.io/acme/app:1.0@sha256:{sha256}"), true),
            (format!("app@sha256:{}", &sha256[1..]), false),
            (format!("app@sha256:{sha256}0"), false),
            (format!("app@sha512:{sha256}"), false),
            (format!("app@md5:{}", &sha256[..32]), false),
            ("app@sha256:abc".into(), false),
            (format!("app@sha256:{}g", &sha256[1..]), false),
            (format!("app:@sha256:{sha256}"), false),
            (format!("@sha256:{sha256}"), false),
            // Case: the path must be lowercase; a first component without a dot is a path.
            ("Nginx:latest".into(), false),
            ("ghcr.io/Acme/app".into(), false),
            ("Acme/app".into(), true),
            ("nginx:Latest_1".into(), true),
            // Tags: first character, length (128 at most), empty.
            ("nginx:_1".into(), true),
            ("nginx:-1".into(), false),
            ("nginx:.1".into(), false),
            (format!("nginx:{}", "t".repeat(128)), true),
            (format!("nginx:{}", "t".repeat(129)), false),
            ("nginx:".into(), false),
            (":tag".into(), false),
            // Name length: 255 at most, counting Docker Hub's `library/`.
            ("a".repeat(247), true),
            ("a".repeat(248), false),
            (format!("ghcr.io/{}", "a".repeat(255)), true),
            (format!("ghcr.io/{}", "a".repeat(256)), false),
            // Shape.
            ("".into(), false),
            ("ghcr.io/acme/app/".into(), false),
            ("ghcr.io//app".into(), false),
            ("/app".into(), false),
            ("nginx latest".into(), false),
            ("nginx:1.0\n".into(), false),
            // Non-ASCII outside the tag: neither grammar has Unicode there.
            ("ngïnx:1".into(), false),
            ("registry.ïo/app".into(), false),
        ];
        assert!(table.len() >= 40);
        for (image, valid) in &table {
            let ours = parsed(parse_reference(image));
            let theirs = parsed(image.parse::<Reference>());
            assert_eq!(ours, theirs, "{image:?}");
            assert_eq!(ours.is_ok(), *valid, "{image:?}: {ours:?}");
        }
    }

    /// The one intended difference: oci-spec's Unicode `\w` lets a non-ASCII tag through, and
    /// the kubelet (Go's ASCII `\w`) would refuse it.
    #[test]
    fn non_ascii_tag_is_invalid() {
        for image in ["nginx:ü", "nginx:v1-ß", "nginx:١٢", "ghcr.io/acme/app:1.0é"] {
            assert_eq!(
                parse_reference(image),
                Err(ParseError::ReferenceInvalidFormat),
                "{image:?}"
            );
            assert!(image.parse::<Reference>().is_ok(), "oci-spec: {image:?}");
            assert_eq!(
                verdict(image),
                ImageVerdict::Invalid("invalid reference format".into()),
                "{image:?}"
            );
        }
    }

    #[test]
    fn real_names_that_contain_placeholder_words_pass() {
        for image in [
            "nginx",
            "nginx:1.27",
            "exampleco.io/app:1.0",
            "registry.exampleco.io/team/app",
            "acme/example-service:2.0",
            "gcr.io/google-samples/hello-app:1.0",
            "docker.io/library/yourls:1.9",
            "ghcr.io/acme/todo-api:1.0",
            "ghcr.io/acme/placeholder-service:3",
            "quay.io/youtube/app",
            "localhost:5000/app",
            "registry.k8s.io/pause:3.10",
            "example.com.evil.io/app",
            "ghcr.io/acme/app@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        ] {
            assert_eq!(verdict(image), ImageVerdict::Fine, "{image}");
        }
    }

    #[test]
    fn deny_patterns_and_allowed_registries() {
        let config = PlaceholderImageConfig {
            mode: None,
            deny: vec![
                "docker.io/library/*:latest".into(),
                "*/internal-test/*".into(),
            ],
            allow_registries: vec![
                "ghcr.io/acme".into(),
                "registry.k8s.io".into(),
                "index.docker.io/library".into(),
            ],
        };
        let rule = PlaceholderImage::new(&config).unwrap();
        let check = |image: &str| classify_image(image, &rule.deny, &rule.allow);
        assert_eq!(check("ghcr.io/acme/app:1.0"), ImageVerdict::Fine);
        assert_eq!(check("ghcr.io/acme"), ImageVerdict::Fine);
        assert_eq!(check("registry.k8s.io/pause:3.10"), ImageVerdict::Fine);
        assert_eq!(check("nginx:1.27"), ImageVerdict::Fine);
        assert_eq!(check("GHCR.io/acme/app:1.0"), ImageVerdict::Fine);
        assert_eq!(
            check("registry-1.docker.io/library/redis:7"),
            ImageVerdict::Fine
        );
        assert_eq!(
            check("ghcr.io/acme-evil/app:1.0"),
            ImageVerdict::OutsideAllowed
        );
        assert_eq!(check("quay.io/acme/app"), ImageVerdict::OutsideAllowed);
        assert_eq!(
            check("nginx"),
            ImageVerdict::DeniedPattern("docker.io/library/nginx".into())
        );
        assert_eq!(
            check("ghcr.io/acme/internal-test/x:1"),
            ImageVerdict::DeniedPattern("ghcr.io/acme/internal-test/x".into())
        );
    }

    #[test]
    fn violation_names_field_value_and_fix() {
        let object = json!({"spec": {"template": {"spec": {
            "initContainers": [{"name": "init", "image": "busybox:1.36"}],
            "containers": [{"name": "a", "image": "nginx"}, {"name": "b", "image": "ghcr.io/your-org/b:1"}],
        }}}});
        let pod = PodView::from_object(WorkloadKind::Deployment, &object)
            .unwrap()
            .unwrap();
        let rule = PlaceholderImage::new(&PlaceholderImageConfig::default()).unwrap();
        let mut out = Findings::default();
        rule.check(
            &Subject {
                namespace: "default",
                pod: &pod,
                inventory: &crate::inventory::EmptyInventory,
            },
            &mut out,
        );
        let out = out.violations;
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].rule, RuleId::PlaceholderImage);
        assert_eq!(out[0].path, "spec.template.spec.containers[1].image");
        assert_eq!(out[0].value, "ghcr.io/your-org/b:1");
        assert!(
            out[0].message.contains("\"your-org\""),
            "{}",
            out[0].message
        );
        assert!(out[0].fix.contains("replace"), "{}", out[0].fix);
    }

    #[test]
    fn missing_image_in_a_template_is_a_violation() {
        let object = json!({"spec": {"containers": [{"name": "a"}], "ephemeralContainers": [{"name": "d", "image": "<debug-image>"}]}});
        let pod = PodView::from_object(WorkloadKind::Pod, &object)
            .unwrap()
            .unwrap();
        let rule = PlaceholderImage::new(&PlaceholderImageConfig::default()).unwrap();
        let mut out = Findings::default();
        rule.check(
            &Subject {
                namespace: "default",
                pod: &pod,
                inventory: &crate::inventory::EmptyInventory,
            },
            &mut out,
        );
        let out = out.violations;
        let paths: Vec<_> = out.iter().map(|v| v.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "spec.containers[0].image",
                "spec.ephemeralContainers[0].image"
            ]
        );
    }
}
