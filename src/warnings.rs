//! The `Warning:` lines kubectl prints: each finding composed into one line of at most 256 runes
//! that keeps the rule, the field, the problem and the fix, and a response's lines kept inside the
//! API server's total so it never cuts them itself.
//!
//! kube-apiserver keeps a response's warnings whole while they total at most 4096 runes; past that
//! it cuts every one to 256 runes, mid-word, and drops the rest
//! (k8s.io/apiserver `endpoints/filters/warning.go`, KEP-1693). A cut there loses the fix, which
//! is the part a reader needs; so applyguard composes lines that already fit, shortening the parts
//! that matter least first, and says how many it left out when they do not all fit.

use crate::engine::Decision;
use crate::rules::Violation;

/// The API server's total for one response's warnings, in runes...
pub const APISERVER_WARNINGS_RUNES: usize = 4096;
/// ...and what it cuts each warning to once that total is passed.
pub const APISERVER_WARNING_ITEM_RUNES: usize = 256;
/// applyguard stays below the total, leaving room for other admission plugins' and the API
/// server's own warnings (deprecations) in the same response.
pub const WARNINGS_TOTAL_BUDGET: usize = APISERVER_WARNINGS_RUNES - 512;
/// Every applyguard warning fits the API server's per-warning length, so it is never cut there.
pub const WARNING_MAX_RUNES: usize = APISERVER_WARNING_ITEM_RUNES;

/// A problem shortened below this many runes no longer says what is wrong: the fix is shortened
/// instead.
const MIN_PROBLEM_RUNES: usize = 72;
/// A value longer than this is left out of a line that does not fit (the full value is in the
/// denial, the audit annotation and `applyguard review`).
const MAX_VALUE_RUNES: usize = 48;

/// The parts of one warning, before composition.
struct Parts<'a> {
    rule: &'a str,
    path: &'a str,
    /// Said before the problem (an exemption's reason).
    lead: String,
    problem: &'a str,
    value: Option<&'a str>,
    fix: Option<&'a str>,
}

impl Parts<'_> {
    fn render(&self, path: &str, problem: &str, value: Option<&str>, fix: Option<&str>) -> String {
        let mut line = format!("{} {path}: {}{problem}", self.rule, self.lead);
        if let Some(value) = value {
            line.push_str(&format!(" (value: {value:?})"));
        }
        if let Some(fix) = fix {
            // A shortened problem ends in "...": no full stop after it.
            line.push_str(if line.ends_with('.') {
                " Fix: "
            } else {
                ". Fix: "
            });
            line.push_str(fix);
        }
        one_line(&line)
    }

    /// The whole line when it fits; otherwise, step by step until it does: the field path from
    /// the pod spec on, the value when the problem already names it (or it is long), the
    /// parenthesised asides, and then the problem and the fix shortened on word boundaries.
    fn compose(&self) -> String {
        let line = self.render(self.path, self.problem, self.value, self.fix);
        if runes(&line) <= WARNING_MAX_RUNES {
            return line;
        }
        let path = short_path(self.path);
        let line = self.render(path, self.problem, self.value, self.fix);
        if runes(&line) <= WARNING_MAX_RUNES {
            return line;
        }
        let value = self.value.filter(|value| {
            runes(value) <= MAX_VALUE_RUNES && !self.problem.contains(&format!("{value:?}"))
        });
        let line = self.render(path, self.problem, value, self.fix);
        if runes(&line) <= WARNING_MAX_RUNES {
            return line;
        }
        let problem = without_asides(self.problem);
        let fix = self.fix.map(without_asides);
        let line = self.render(path, &problem, value, fix.as_deref());
        if runes(&line) <= WARNING_MAX_RUNES {
            return line;
        }
        // The problem names the key values (container, secret, key, listener); the value as
        // written is in the denial, the audit annotation and `applyguard review`.
        let value = None;
        let line = self.render(path, &problem, value, fix.as_deref());
        if runes(&line) <= WARNING_MAX_RUNES {
            return line;
        }
        // What the problem may take once the rest is written.
        let rest = runes(&self.render(path, "", value, fix.as_deref()));
        let room = WARNING_MAX_RUNES.saturating_sub(rest);
        if room >= MIN_PROBLEM_RUNES {
            let problem = shorten_clause(&problem, room);
            return self.render(path, &problem, value, fix.as_deref());
        }
        let problem = shorten_clause(&problem, MIN_PROBLEM_RUNES);
        let rest = runes(&self.render(path, &problem, value, Some("")));
        let fix = fix.map(|fix| shorten_clause(&fix, WARNING_MAX_RUNES.saturating_sub(rest)));
        shorten(
            &self.render(path, &problem, value, fix.as_deref()),
            WARNING_MAX_RUNES,
        )
    }
}

/// Replaces control characters (kube-apiserver drops any warning containing one).
pub fn one_line(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

pub fn runes(text: &str) -> usize {
    text.chars().count()
}

/// The field path from the pod spec on, to the env entry (`containers[0].env[1]` for
/// `spec.template.spec.containers[0].env[1].valueFrom.secretKeyRef`): the container, env entry
/// or volume still names the field, and the object it is in is the one being applied.
pub fn short_path(path: &str) -> &str {
    let path = path
        .strip_suffix(".valueFrom.secretKeyRef")
        .or_else(|| path.strip_suffix(".valueFrom.configMapKeyRef"))
        .unwrap_or(path);
    if let Some(at) = path.rfind("template.spec.") {
        return &path[at + "template.spec.".len()..];
    }
    match path.strip_prefix("spec.") {
        Some(rest)
            if [
                "containers[",
                "initContainers[",
                "ephemeralContainers[",
                "volumes[",
                "securityContext",
                "imagePullSecrets[",
            ]
            .iter()
            .any(|field| rest.starts_with(field)) =>
        {
            rest
        }
        _ => path,
    }
}

/// The text without its parenthesised asides (` (checked: ...)`, ` (base64-decoded)`): they
/// explain, the sentence around them still says what is wrong.
fn without_asides(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut depth = 0usize;
    let mut pending_space = false;
    for c in text.chars() {
        match c {
            '(' => depth += 1,
            ')' if depth > 0 => depth -= 1,
            _ if depth > 0 => {}
            ' ' => pending_space = true,
            c => {
                // A space before an aside is dropped with it, unless the sentence goes on.
                if pending_space && !matches!(c, ',' | '.' | ';' | ':') {
                    out.push(' ');
                }
                pending_space = false;
                out.push(c);
            }
        }
    }
    if depth > 0 {
        // Unbalanced: not an aside, keep the text as written.
        return text.to_string();
    }
    out
}

/// Cuts `text` to at most `max` runes after its last whole clause (before ", " or "; ") when that
/// keeps most of the room, else after its last whole word.
fn shorten_clause(text: &str, max: usize) -> String {
    if runes(text) <= max {
        return text.to_string();
    }
    let keep: String = text.chars().take(max.saturating_sub(3)).collect();
    match keep.rfind([',', ';']) {
        Some(at) if runes(&keep[..at]) >= max / 2 => format!("{}...", &keep[..at]),
        _ => shorten(text, max),
    }
}

/// Cuts `text` to at most `max` runes after its last whole word, marking the cut with "...";
/// only a single word longer than the whole room is cut inside.
fn shorten(text: &str, max: usize) -> String {
    if runes(text) <= max {
        return text.to_string();
    }
    let room = max.saturating_sub(3);
    let keep: String = text.chars().take(room).collect();
    let at_word_end = text.chars().nth(room) == Some(' ');
    let words = match keep.rfind(' ') {
        Some(space) if !at_word_end => &keep[..space],
        _ => keep.as_str(),
    };
    format!("{}...", words.trim_end_matches([' ', ',', ';', ':', '.']))
}

fn violation_parts<'a>(v: &'a Violation, lead: String) -> Parts<'a> {
    Parts {
        rule: v.rule.as_str(),
        path: &v.path,
        lead,
        problem: &v.message,
        value: Some(&v.value),
        fix: Some(&v.fix),
    }
}

/// The decision's warnings in the order kubectl prints them: violations in warn mode, exempted
/// violations, notices, then policy notes. When they would pass the budget, the first ones that
/// fit and a last line saying how many were left out and where to read them all.
pub fn warnings(decision: &Decision) -> Vec<String> {
    let lines: Vec<String> = decision
        .warnings
        .iter()
        .map(|v| violation_parts(v, String::new()))
        .chain(
            decision
                .exempted
                .iter()
                .map(|e| violation_parts(&e.violation, format!("exempt ({}): ", e.exemption))),
        )
        .chain(decision.notices.iter().map(|n| Parts {
            rule: n.rule.as_str(),
            path: &n.path,
            lead: String::new(),
            problem: &n.message,
            value: None,
            fix: None,
        }))
        .map(|parts| parts.compose())
        .chain(
            decision
                .policy_notes
                .iter()
                .map(|n| shorten(&one_line(&format!("applyguard: {n}")), WARNING_MAX_RUNES)),
        )
        .collect();
    if lines.iter().map(|l| runes(l)).sum::<usize>() <= WARNINGS_TOTAL_BUDGET {
        return lines;
    }
    let total = lines.len();
    let mut out = Vec::new();
    let mut used = 0;
    for (i, line) in lines.into_iter().enumerate() {
        let more = left_out(total - i);
        if used + runes(&line) + runes(&more) > WARNINGS_TOTAL_BUDGET {
            out.push(more);
            return out;
        }
        used += runes(&line);
        out.push(line);
    }
    out
}

fn left_out(count: usize) -> String {
    format!(
        "applyguard: {count} more warning(s) not shown; see the audit log or run applyguard review"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::RuleId;

    fn violation(i: usize) -> Violation {
        Violation {
            rule: RuleId::PlaceholderImage,
            path: format!("spec.template.spec.containers[{i}].image"),
            value: "ghcr.io/your-org/app".into(),
            message: "container \"app\" image contains the placeholder \"your-org\"\nsecond line"
                .into(),
            fix: "replace it.".into(),
            source: None,
        }
    }

    fn secret_ref(i: usize) -> Violation {
        Violation {
            rule: RuleId::SecretRef,
            path: format!("spec.template.spec.containers[{i}].env[0].valueFrom.secretKeyRef"),
            value: format!("missing-{i}"),
            message: format!(
                "secret \"missing-{i}\" not found in namespace \"shop\", and no ExternalSecret, SealedSecret or Certificate produces it (checked: the cluster's Secrets, watched by applyguard)"
            ),
            fix: format!(
                "create Secret \"missing-{i}\" in namespace \"shop\" (or what produces it) before this workload, or fix the name."
            ),
            source: None,
        }
    }

    #[test]
    fn short_lines_are_whole_and_on_one_line() {
        let w = warnings(&Decision {
            warnings: (0..3).map(violation).collect(),
            ..Decision::default()
        });
        assert_eq!(w.len(), 3);
        assert_eq!(
            w[1],
            "placeholder-image spec.template.spec.containers[1].image: container \"app\" image contains the placeholder \"your-org\" second line (value: \"ghcr.io/your-org/app\"). Fix: replace it."
        );
    }

    #[test]
    fn a_long_finding_keeps_rule_field_problem_and_fix() {
        let w = warnings(&Decision {
            warnings: vec![secret_ref(3)],
            ..Decision::default()
        });
        assert_eq!(
            w,
            [
                "secret-ref containers[3].env[0]: secret \"missing-3\" not found in namespace \"shop\", and no ExternalSecret, SealedSecret or Certificate produces it. Fix: create Secret \"missing-3\" in namespace \"shop\" before this workload, or fix the name."
            ]
        );
        assert!(runes(&w[0]) <= WARNING_MAX_RUNES);
    }

    #[test]
    fn a_very_long_problem_is_cut_after_a_word_and_the_fix_stays_whole() {
        let mut v = violation(0);
        v.message = "wördé ".repeat(80);
        let w = warnings(&Decision {
            warnings: vec![v],
            ..Decision::default()
        });
        assert!(runes(&w[0]) <= WARNING_MAX_RUNES, "{}", w[0]);
        assert!(w[0].starts_with("placeholder-image containers[0].image: wördé "));
        assert!(w[0].ends_with("wördé... Fix: replace it."), "{}", w[0]);
    }

    #[test]
    fn a_very_long_fix_is_cut_after_a_word_too() {
        let mut v = violation(0);
        v.message = "wördé ".repeat(80);
        v.fix = "fíx ".repeat(80);
        v.value = "x".repeat(300);
        let w = warnings(&Decision {
            warnings: vec![v],
            ..Decision::default()
        });
        assert!(runes(&w[0]) <= WARNING_MAX_RUNES, "{}", w[0]);
        assert!(
            !w[0].contains("(value:"),
            "a long value is left out: {}",
            w[0]
        );
        assert!(w[0].contains("wördé... Fix: fíx fíx"), "{}", w[0]);
        assert!(w[0].ends_with("fíx..."), "{}", w[0]);
    }

    #[test]
    fn thirty_findings_fit_the_budget_with_a_count_of_the_rest() {
        let list: Vec<Violation> = (0..10)
            .flat_map(|i| [secret_ref(i), violation(i), secret_ref(i + 10)])
            .collect();
        assert_eq!(list.len(), 30);
        let w = warnings(&Decision {
            warnings: list,
            ..Decision::default()
        });
        let total: usize = w.iter().map(|l| runes(l)).sum();
        assert!(total <= WARNINGS_TOTAL_BUDGET, "{total}");
        let (last, shown) = w.split_last().unwrap();
        assert_eq!(last, &left_out(30 - shown.len()));
        assert!(shown.len() >= 15, "{} shown", shown.len());
        for line in shown {
            assert!(runes(line) <= WARNING_MAX_RUNES, "{line}");
            assert!(line.contains(". Fix: "), "{line}");
            assert!(!line.contains("..."), "nothing needed cutting: {line}");
        }
    }

    #[test]
    fn asides_go_with_their_space() {
        assert_eq!(
            without_asides("not found (checked: a (b)), so none (really)."),
            "not found, so none."
        );
        assert_eq!(without_asides("a (b"), "a (b");
    }

    #[test]
    fn short_paths_start_at_the_pod_spec() {
        assert_eq!(
            short_path("spec.jobTemplate.spec.template.spec.containers[0].image"),
            "containers[0].image"
        );
        assert_eq!(short_path("spec.volumes[2].secret"), "volumes[2].secret");
        assert_eq!(
            short_path("spec.tls[0].secretName"),
            "spec.tls[0].secretName"
        );
    }

    #[test]
    fn shorten_cuts_after_whole_words() {
        assert_eq!(shorten("abcdefghij", 8), "abcde...");
        assert_eq!(shorten("short", 8), "short");
        assert_eq!(shorten("aaaaaa bbbbbbbbbbbbb", 12), "aaaaaa...");
        assert_eq!(shorten("aaaa bbbb cccc", 12), "aaaa bbbb...");
        assert_eq!(shorten("aaaa, bbbbbbbbbb", 12), "aaaa...");
    }
}
