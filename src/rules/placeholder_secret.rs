//! Rule `placeholder-secret`: a Secret whose value is a placeholder (`CHANGE_ME`, `<your-api-key>`,
//! `${DB_PASSWORD}`, `{{ .Values.password }}`, `xxxx`). Applied by GitOps, such a Secret
//! overwrites the real credentials and the workload starts with a password nobody set.
//!
//! Values (`stringData`, and `data` after base64 decoding) are examined in place and dropped: a
//! violation names the Secret and the key, never the value, and nothing here logs, keeps or
//! counts a value. Only short values are examined (placeholders are short; a certificate or a
//! config file is not one), which also bounds the cost of a large Secret.
//!
//! What counts as a placeholder, after trimming whitespace (the whole value, never a word in it,
//! so `todo-app-token-3f9a` or a connection string that mentions `changeme.example` pass):
//! - one of `changeme`, `changeit`, `changethis`, `replaceme`, `replacethis`, `todo`, `tbd`,
//!   `fixme`, `placeholder`, `setme`, `fillme`, `fillmein`, compared ignoring case and `-`, `_`,
//!   `.` and spaces (`CHANGE_ME`, `change-me`, `Change Me`, `REPLACE_ME`);
//! - `your` + a credential word, optionally + `here` (`your-api-key`, `YOUR_PASSWORD_HERE`);
//! - a value wholly in angle brackets (`<your-api-key>`, `<password>`);
//! - a value that is one unexpanded variable (`${DB_PASSWORD}`, `$(DB_PASSWORD)`) or one template
//!   expression (`{{ .Values.password }}`): whatever was meant to fill it never ran;
//! - three or more characters, all `x`, `X` or `*` (`xxxx`, `********`).

use base64::Engine as _;
use serde_json::Value;

use super::{Findings, ObjectSubject, Rule, RuleId, Subject, Violation};

/// Values longer than this are not examined: no placeholder is this long.
const MAX_EXAMINED_LEN: usize = 256;

const PLACEHOLDER_WORDS: &[&str] = &[
    "changeme",
    "changeit",
    "changethis",
    "replaceme",
    "replacethis",
    "todo",
    "tbd",
    "fixme",
    "placeholder",
    "setme",
    "fillme",
    "fillmein",
];

/// Words that follow `your` in a placeholder (`your-api-key`).
const CREDENTIAL_WORDS: &[&str] = &[
    "password",
    "passwd",
    "secret",
    "key",
    "apikey",
    "token",
    "apitoken",
    "accesskey",
    "secretkey",
    "clientsecret",
    "username",
    "user",
    "value",
    "credentials",
];

pub struct PlaceholderSecret;

/// Lower case without the separators people put between words.
fn normalized(value: &str) -> String {
    value
        .chars()
        .filter(|c| !matches!(c, '-' | '_' | '.' | ' '))
        .flat_map(char::to_lowercase)
        .collect()
}

/// Why a value is a placeholder, as a short description that never contains the value.
pub fn placeholder_kind(value: &str) -> Option<&'static str> {
    let value = value.trim();
    if value.is_empty() || value.len() > MAX_EXAMINED_LEN {
        return None;
    }
    let words = normalized(value);
    if PLACEHOLDER_WORDS.contains(&words.as_str()) {
        return Some("a placeholder word");
    }
    if let Some(rest) = words.strip_prefix("your") {
        let rest = rest.strip_suffix("here").unwrap_or(rest);
        if CREDENTIAL_WORDS.contains(&rest) {
            return Some("a \"your-...\" placeholder");
        }
    }
    let inner = |open: &str, close: &str| {
        value
            .strip_prefix(open)
            .and_then(|v| v.strip_suffix(close))
            .filter(|v| !v.is_empty() && !v.contains(open) && !v.contains(close))
    };
    if inner("<", ">").is_some() {
        return Some("a value in angle brackets");
    }
    let variable = |name: &str| {
        !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
    };
    if inner("${", "}").is_some_and(variable) || inner("$(", ")").is_some_and(variable) {
        return Some("an unexpanded variable");
    }
    if inner("{{", "}}").is_some() {
        return Some("an unrendered template expression");
    }
    if value.len() >= 3 && value.chars().all(|c| matches!(c, 'x' | 'X' | '*')) {
        return Some("a mask of x or *");
    }
    None
}

impl Rule for PlaceholderSecret {
    fn id(&self) -> RuleId {
        RuleId::PlaceholderSecret
    }

    fn check(&self, _subject: &Subject<'_>, _out: &mut Findings) {}

    fn handles_kind(&self, group: &str, kind: &str) -> bool {
        group.is_empty() && kind == "Secret"
    }

    fn check_object(&self, subject: &ObjectSubject<'_>, out: &mut Findings) {
        let name = if subject.name.is_empty() {
            "this Secret".to_string()
        } else {
            format!("secret {:?}", subject.name)
        };
        let mut report = |field: &str, key: &str, why: &str, decoded: bool| {
            let field_name = if decoded { "data" } else { "stringData" };
            out.violations.push(Violation {
                rule: RuleId::PlaceholderSecret,
                path: if key.contains('.') {
                    format!("{field}[{key:?}]")
                } else {
                    format!("{field}.{key}")
                },
                // The key, never the value.
                value: key.to_string(),
                message: format!(
                    "{name} key {key:?} holds {why}{}, not a real value; applied, it replaces the real credential",
                    if decoded { " (base64-decoded)" } else { "" }
                ),
                fix: format!(
                    "put the real value in {field_name}.{key} out of band (an ExternalSecret, a SealedSecret, or kubectl create secret), and keep this template out of what is applied."
                ),
                source: None,
            });
        };
        if let Some(map) = subject.object.get("stringData").and_then(Value::as_object) {
            for (key, value) in map {
                if let Some(why) = value.as_str().and_then(placeholder_kind) {
                    report("stringData", key, why, false);
                }
            }
        }
        if let Some(map) = subject.object.get("data").and_then(Value::as_object) {
            for (key, value) in map {
                // stringData wins over data for the same key (the API server merges it in).
                if subject
                    .object
                    .get("stringData")
                    .and_then(|s| s.get(key))
                    .is_some()
                {
                    continue;
                }
                let Some(encoded) = value.as_str() else {
                    continue;
                };
                // Base64 of a value too long to examine is longer still: skip without decoding.
                if encoded.len() > MAX_EXAMINED_LEN * 4 / 3 + 4 {
                    continue;
                }
                let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(encoded.trim())
                else {
                    continue;
                };
                let why = std::str::from_utf8(&bytes).ok().and_then(placeholder_kind);
                if let Some(why) = why {
                    report("data", key, why, true);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders() {
        for value in [
            "CHANGE_ME",
            "changeme",
            "change-me",
            "Change Me",
            " CHANGEME\n",
            "REPLACE_ME",
            "replace-me",
            "Todo",
            "todo",
            "TBD",
            "FixMe",
            "placeholder",
            "<your-api-key>",
            "<password>",
            "your-api-key",
            "YOUR_PASSWORD_HERE",
            "your_token",
            "${DB_PASSWORD}",
            "$(DB_PASSWORD)",
            "{{ .Values.password }}",
            "{{password}}",
            "xxx",
            "XxXxXxXx",
            "********",
            "changeit",
        ] {
            assert!(placeholder_kind(value).is_some(), "{value:?} not caught");
        }
    }

    #[test]
    fn real_values_that_merely_contain_such_words() {
        for value in [
            "todo-app-token-3f9a1c",
            "postgres://app:s3cr3t@changeme.example:5432/app",
            "Tr0ub4dor&3",
            "my-changeme-is-long-and-real-7Hq",
            "x",
            "xx",
            "xylophone",
            "<b>bold</b>",
            "${A}${B}",
            "${DB_USER}:${DB_PASS}@db",
            "{{ a }} and {{ b }}",
            "your-favourite-colour-is-blue-8812",
            "-----BEGIN CERTIFICATE-----",
            "",
            "placeholders-are-bad-but-this-is-real",
        ] {
            assert_eq!(placeholder_kind(value), None, "{value:?} flagged");
        }
        // Long values are never examined.
        assert_eq!(placeholder_kind(&"x".repeat(MAX_EXAMINED_LEN + 1)), None);
    }

    #[test]
    fn descriptions_never_contain_the_value() {
        for value in ["CHANGE_ME", "<your-api-key>", "${DB_PASSWORD}", "xxxx"] {
            let why = placeholder_kind(value).unwrap();
            assert!(!why.contains(value), "{why}");
        }
    }
}
