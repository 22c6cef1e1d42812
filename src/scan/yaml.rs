//! Manifest documents with their line numbers: split at `---` markers, each parsed on its own
//! (so one broken document does not hide the others), duplicate mapping keys rejected as
//! kubectl rejects them (a lenient parser would silently keep one of the two values).

use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// One document of a file: where it starts, and what it parsed to.
#[derive(Debug)]
pub struct Document {
    /// 1-based line of the document's first content line.
    pub line: usize,
    pub content: Result<Value, ParseError>,
    /// The document's text and the 0-based file line it starts at, kept so that findings can
    /// be placed at their field (locate.rs) without re-reading the file.
    pub source: std::sync::Arc<(String, usize)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// 1-based line in the file.
    pub line: usize,
    pub message: String,
}

/// A JSON value built from YAML that refuses duplicate keys.
struct Strict(Value);

impl<'de> Deserialize<'de> for Strict {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(StrictVisitor).map(Strict)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a YAML value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        Strict::deserialize(d).map(|s| s.0)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        while let Some(Strict(v)) = seq.next_element()? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(Strict(key)) = map.next_key()? {
            let key = match key {
                Value::String(s) => s,
                Value::Null => "null".to_string(),
                other => other.to_string(),
            };
            let Strict(value) = map.next_value()?;
            if out.contains_key(&key) {
                return Err(de::Error::custom(format_args!(
                    "duplicate key {key:?} in a mapping"
                )));
            }
            out.insert(key, value);
        }
        Ok(Value::Object(out))
    }
    fn visit_enum<A: de::EnumAccess<'de>>(self, data: A) -> Result<Value, A::Error> {
        // A tagged value (`!Tag value`): keep the value, drop the tag.
        let (_tag, variant): (Strict, _) = data.variant()?;
        de::VariantAccess::newtype_variant::<Strict>(variant).map(|s| s.0)
    }
}

/// Whether a line is a document marker (`---` or `...`, alone or followed by whitespace).
fn marker(line: &str) -> bool {
    ["---", "..."].iter().any(|m| {
        line.strip_prefix(m)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with([' ', '\t']))
    })
}

fn is_blank_or_comment(line: &str) -> bool {
    let t = line.trim();
    t.is_empty() || t.starts_with('#')
}

/// The parser counts lines from the start of the document; make every `line N` in its message
/// count from the start of the file.
fn relocate(message: &str, offset: usize) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(i) = rest.find("line ") {
        out.push_str(&rest[..i + 5]);
        rest = &rest[i + 5..];
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        match rest[..digits].parse::<usize>() {
            Ok(n) => out.push_str(&(n + offset).to_string()),
            Err(_) => out.push_str(&rest[..digits]),
        }
        rest = &rest[digits..];
    }
    out.push_str(rest);
    out
}

/// Splits a YAML (or JSON) text into documents and parses each.
pub fn documents(text: &str) -> Vec<Document> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let mut chunks: Vec<(usize, String)> = Vec::new();
    let mut current = String::new();
    let mut start = 0usize; // 0-based index of the chunk's first line
    for (i, line) in lines.iter().enumerate() {
        let bare = line.trim_end_matches(['\n', '\r']);
        if marker(bare) {
            chunks.push((start, std::mem::take(&mut current)));
            // Content after `--- ` on the same line belongs to the next document.
            let rest = bare[3..].trim_start();
            if bare.starts_with("---") && !rest.is_empty() && !rest.starts_with('#') {
                current.push_str(rest);
                current.push('\n');
                start = i;
            } else {
                start = i + 1;
            }
            continue;
        }
        current.push_str(line);
    }
    chunks.push((start, current));
    // Documents parse independently: spread them over the cores (order is kept).
    use rayon::prelude::*;
    chunks
        .into_par_iter()
        .filter_map(|(start, chunk)| parse_chunk(start, &chunk))
        .collect()
}

/// kubectl reads YAML 1.1, where a plain `0440` is the octal number 288; the YAML 1.2 parser
/// here yields the string "0440". File modes are where manifests use octal (`defaultMode: 0440`,
/// `items[].mode: 0400`), so convert those fields the way kubectl would read them.
fn yaml11_file_modes(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (key, v) in map.iter_mut() {
                if (key == "defaultMode" || key == "mode")
                    && let Value::String(s) = v
                    && s.len() > 1
                    && s.starts_with('0')
                    && s.bytes().all(|b| (b'0'..=b'7').contains(&b))
                    && let Ok(n) = i64::from_str_radix(&s[1..], 8)
                {
                    *v = Value::from(n);
                } else {
                    yaml11_file_modes(v);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(yaml11_file_modes),
        _ => {}
    }
}

fn parse_chunk(start: usize, chunk: &str) -> Option<Document> {
    let offset = chunk.lines().position(|l| !is_blank_or_comment(l))?;
    let first_line = start + offset + 1;
    let content = match serde_yaml_ng::Deserializer::from_str(chunk).next() {
        None => Ok(Value::Null),
        Some(doc) => Strict::deserialize(doc)
            .map(|mut s| {
                yaml11_file_modes(&mut s.0);
                s.0
            })
            .map_err(|e| {
                let message = e.to_string();
                // serde reports a repeated key at the end of its mapping; say where it is.
                if message.contains("duplicate key")
                    && let Some((key, first, again)) =
                        super::locate::locations(chunk, start).duplicates.first().cloned()
                {
                    return ParseError {
                        line: again,
                        message: format!(
                            "duplicate key {key:?} at line {again} (first at line {first}): kubectl rejects a mapping with a repeated key"
                        ),
                    };
                }
                ParseError {
                    line: e.location().map_or(first_line, |l| start + l.line()),
                    message: relocate(&message, start),
                }
            }),
    };
    Some(Document {
        line: first_line,
        content,
        source: std::sync::Arc::new((chunk.to_string(), start)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_carry_their_lines() {
        let text = "# header\napiVersion: v1\nkind: A\n---\n\n---\n# only a comment\n---\napiVersion: v1\nkind: B\n...\n--- \nkind: C\n";
        let docs = documents(text);
        let lines: Vec<usize> = docs.iter().map(|d| d.line).collect();
        assert_eq!(lines, [2, 9, 13]);
        assert_eq!(docs[1].content.as_ref().unwrap()["kind"], "B");
    }

    #[test]
    fn a_broken_document_does_not_hide_the_others() {
        let text = "kind: A\n---\nkind: [unclosed\nx: 1\n---\nkind: C\n";
        let docs = documents(text);
        assert_eq!(docs.len(), 3);
        assert!(docs[0].content.is_ok() && docs[2].content.is_ok());
        let err = docs[1].content.as_ref().unwrap_err();
        assert!(err.line >= 3 && err.line <= 5, "{err:?}");
        // Lines inside the message count from the start of the file too.
        assert!(
            !err.message.contains("line 1 ") && !err.message.contains("line 2 "),
            "{err:?}"
        );
        assert_eq!(
            relocate("at line 2 column 3, while scanning at line 1", 10),
            "at line 12 column 3, while scanning at line 11"
        );
    }

    #[test]
    fn duplicate_keys_are_errors_with_a_line() {
        let text = "kind: A\n---\napiVersion: v1\nkind: ConfigMap\ndata:\n  a: 1\n  a: 2\n";
        let docs = documents(text);
        let err = docs[1].content.as_ref().unwrap_err();
        assert_eq!(err.line, 7, "the repeated key's own line: {err:?}");
        assert!(
            err.message
                .starts_with("duplicate key \"a\" at line 7 (first at line 6)"),
            "{err:?}"
        );
    }

    #[test]
    fn octal_file_modes_read_as_kubectl_reads_them() {
        let docs = documents(
            "spec:\n  volumes:\n  - secret: {defaultMode: 0440, items: [{key: a, path: a, mode: 0400}]}\n  other: 0440\n",
        );
        let v = docs[0].content.as_ref().unwrap();
        assert_eq!(v["spec"]["volumes"][0]["secret"]["defaultMode"], 288);
        assert_eq!(v["spec"]["volumes"][0]["secret"]["items"][0]["mode"], 256);
        assert_eq!(v["spec"]["other"], "0440", "only file modes are converted");
    }

    #[test]
    fn json_and_tags_and_inline_documents() {
        let docs = documents("{\"kind\": \"A\", \"n\": 1.5}\n");
        assert_eq!(docs[0].content.as_ref().unwrap()["n"], 1.5);
        let docs = documents("--- {kind: B}\n");
        assert_eq!(docs[0].content.as_ref().unwrap()["kind"], "B");
        let docs = documents("kind: C\nvalue: !custom tagged\n");
        assert_eq!(docs[0].content.as_ref().unwrap()["value"], "tagged");
    }
}
