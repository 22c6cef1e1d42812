//! Field paths to lines and columns. The strict loader (yaml.rs) builds values without
//! positions; for a document with findings, a second pass over its text with yaml-rust2's
//! marked events maps each mapping key and sequence item to where it is written, so a finding
//! points at the image, the env entry or the listener rather than at the document's first line.
//! It also finds where a key is repeated, for duplicate-key errors.

use std::collections::HashMap;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

/// One step of a field path.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Segment {
    Key(String),
    Index(usize),
}

/// Parses a field path as violations write it: `spec.containers[0].env[1].valueFrom`,
/// `data[server.properties]`, `data["tls.key"]`.
pub fn segments(path: &str) -> Vec<Segment> {
    let mut out = Vec::new();
    let mut key = String::new();
    let mut chars = path.chars().peekable();
    let flush = |key: &mut String, out: &mut Vec<Segment>| {
        if !key.is_empty() {
            out.push(Segment::Key(std::mem::take(key)));
        }
    };
    while let Some(c) = chars.next() {
        match c {
            '.' => flush(&mut key, &mut out),
            '[' => {
                flush(&mut key, &mut out);
                let mut inner = String::new();
                for c in chars.by_ref() {
                    if c == ']' {
                        break;
                    }
                    inner.push(c);
                }
                match inner.parse::<usize>() {
                    Ok(i) => out.push(Segment::Index(i)),
                    Err(_) => out.push(Segment::Key(inner.trim_matches('"').to_string())),
                }
            }
            c => key.push(c),
        }
    }
    flush(&mut key, &mut out);
    out
}

/// Where each field of one document is written (1-based line and column, in the file).
#[derive(Debug, Default)]
pub struct Locations {
    at: HashMap<Vec<Segment>, (usize, usize)>,
    /// (key, first line, repeated line) for each key written twice in one mapping.
    pub duplicates: Vec<(String, usize, usize)>,
}

impl Locations {
    /// The position of `base` + `path`, or of its longest prefix that is written (a field that
    /// is missing is reported where it should be added: its parent).
    pub fn locate(&self, base: &[Segment], path: &str) -> Option<(usize, usize)> {
        let mut full: Vec<Segment> = base.to_vec();
        full.extend(segments(path));
        (base.len()..=full.len())
            .rev()
            .find_map(|n| self.at.get(&full[..n]).copied())
    }
}

enum Frame {
    Map {
        path: Vec<Segment>,
        key: Option<String>,
        expecting_key: bool,
        seen: HashMap<String, usize>,
        /// A sequence item or the root: placed at its first key (the parser marks a block
        /// mapping after that key). A mapping under a key stays where its key is.
        at_first_key: bool,
    },
    Seq {
        path: Vec<Segment>,
        next: usize,
    },
    /// A complex (non-scalar) mapping key: skipped with everything in it.
    Skip(usize),
}

struct Builder {
    offset: usize,
    stack: Vec<Frame>,
    out: Locations,
    root_seen: bool,
}

impl Builder {
    fn position(&self, mark: Marker) -> (usize, usize) {
        (self.offset + mark.line(), mark.col() + 1)
    }

    /// The path of the node starting now, recording where it is; `None` inside a skipped key.
    fn node_path(
        &mut self,
        mark: Marker,
        is_scalar_event: bool,
        scalar: &str,
    ) -> Option<Vec<Segment>> {
        let position = self.position(mark);
        match self.stack.last_mut() {
            None => {
                if self.root_seen {
                    return None;
                }
                self.root_seen = true;
                self.out.at.insert(Vec::new(), position);
                Some(Vec::new())
            }
            Some(Frame::Skip(_)) => None,
            Some(Frame::Seq { path, next }) => {
                let mut p = path.clone();
                p.push(Segment::Index(*next));
                *next += 1;
                self.out.at.insert(p.clone(), position);
                Some(p)
            }
            Some(Frame::Map {
                path,
                key,
                expecting_key,
                seen,
                at_first_key,
            }) => {
                if *expecting_key {
                    if !is_scalar_event {
                        // A complex key: no path for it or for what it holds.
                        return None;
                    }
                    if *at_first_key && seen.is_empty() {
                        self.out.at.insert(path.clone(), position);
                    }
                    let mut p = path.clone();
                    p.push(Segment::Key(scalar.to_string()));
                    if let Some(first) = seen.insert(scalar.to_string(), position.0) {
                        self.out
                            .duplicates
                            .push((scalar.to_string(), first, position.0));
                    }
                    self.out.at.entry(p).or_insert(position);
                    *key = Some(scalar.to_string());
                    *expecting_key = false;
                    None
                } else {
                    let mut p = path.clone();
                    p.push(Segment::Key(key.take().unwrap_or_default()));
                    *expecting_key = true;
                    Some(p)
                }
            }
        }
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, event: Event, mark: Marker) {
        match event {
            Event::Scalar(value, ..) => {
                let _ = self.node_path(mark, true, &value);
            }
            Event::Alias(_) => {
                let _ = self.node_path(mark, true, "*alias");
            }
            Event::MappingStart(..) | Event::SequenceStart(..) => {
                if let Some(Frame::Skip(depth)) = self.stack.last_mut() {
                    *depth += 1;
                    return;
                }
                let in_key = matches!(
                    self.stack.last(),
                    Some(Frame::Map {
                        expecting_key: true,
                        ..
                    })
                );
                if in_key {
                    if let Some(Frame::Map { expecting_key, .. }) = self.stack.last_mut() {
                        *expecting_key = false;
                    }
                    self.stack.push(Frame::Skip(1));
                    return;
                }
                let at_first_key = !matches!(self.stack.last(), Some(Frame::Map { .. }));
                let Some(path) = self.node_path(mark, false, "") else {
                    self.stack.push(Frame::Skip(1));
                    return;
                };
                self.stack
                    .push(if matches!(event, Event::MappingStart(..)) {
                        Frame::Map {
                            path,
                            key: None,
                            expecting_key: true,
                            seen: HashMap::new(),
                            at_first_key,
                        }
                    } else {
                        Frame::Seq { path, next: 0 }
                    });
            }
            Event::MappingEnd | Event::SequenceEnd => match self.stack.last_mut() {
                Some(Frame::Skip(depth)) if *depth > 1 => *depth -= 1,
                _ => {
                    self.stack.pop();
                }
            },
            _ => {}
        }
    }
}

/// Locations in the first document of `text`, whose first line is line `offset + 1` of its
/// file. Text the event parser cannot read yields what it read up to there.
pub fn locations(text: &str, offset: usize) -> Locations {
    let mut builder = Builder {
        offset,
        stack: Vec::new(),
        out: Locations::default(),
        root_seen: false,
    };
    let _ = Parser::new_from_str(text).load(&mut builder, false);
    builder.out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_parse_as_violations_write_them() {
        assert_eq!(
            segments("spec.containers[1].env[0].valueFrom"),
            [
                Segment::Key("spec".into()),
                Segment::Key("containers".into()),
                Segment::Index(1),
                Segment::Key("env".into()),
                Segment::Index(0),
                Segment::Key("valueFrom".into()),
            ]
        );
        assert_eq!(
            segments("data[server.properties]"),
            [
                Segment::Key("data".into()),
                Segment::Key("server.properties".into())
            ]
        );
        assert_eq!(
            segments("data[\"tls.key\"]"),
            [Segment::Key("data".into()), Segment::Key("tls.key".into())]
        );
    }

    #[test]
    fn block_flow_and_json() {
        let block = "apiVersion: v1\nkind: Pod\nspec:\n  containers:\n    - name: a\n      image: nginx\n    - name: b\n      image: ghcr.io/your-org/b\n";
        let at = locations(block, 10);
        assert_eq!(at.locate(&[], "spec.containers[1].image"), Some((18, 7)));
        assert_eq!(at.locate(&[], "spec.containers[1]"), Some((17, 7)));
        // A mapping under a key is where its key is.
        assert_eq!(at.locate(&[], "spec.containers"), Some((14, 3)));
        let nested = "env:\n  - name: A\n    valueFrom:\n      secretKeyRef: {name: db, key: k}\n";
        assert_eq!(
            locations(nested, 0).locate(&[], "env[0].valueFrom.secretKeyRef"),
            Some((4, 7))
        );
        // A missing field is placed at its closest written parent.
        assert_eq!(
            at.locate(&[], "spec.containers[0].securityContext.runAsNonRoot"),
            Some((15, 7))
        );
        let flow = "spec: {containers: [{name: a, image: nginx}, {name: b, image: x}]}\n";
        assert_eq!(
            locations(flow, 0).locate(&[], "spec.containers[1].image"),
            Some((1, 56))
        );
        let json = "{\n  \"spec\": {\n    \"containers\": [\n      {\"name\": \"a\", \"image\": \"x\"}\n    ]\n  }\n}\n";
        assert_eq!(
            locations(json, 0).locate(&[], "spec.containers[0].image"),
            Some((4, 21))
        );
        // List items are located under their base path.
        let list = "kind: List\nitems:\n  - kind: Pod\n    spec:\n      containers: [{name: a, image: x}]\n";
        let base = [Segment::Key("items".into()), Segment::Index(0)];
        assert_eq!(
            locations(list, 0).locate(&base, "spec.containers[0].image"),
            Some((5, 30))
        );
    }

    #[test]
    fn repeated_keys_are_found_with_both_lines() {
        let text = "data:\n  a: 1\n  b: 2\n  a: 3\nother:\n  a: 4\n";
        assert_eq!(locations(text, 4).duplicates, [("a".to_string(), 6, 8)]);
    }
}
