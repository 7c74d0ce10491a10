//! A YAML document as a tree of nodes that remember where they were written.
//!
//! Policy errors must name file, line and column for every problem at once, so
//! the policy is read into this small marked tree first and validated by hand
//! (serde would stop at the first error and lose positions). Never does I/O.

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// A position in the policy file, 1-based line and column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Pos {
    pub line: u32,
    pub col: u32,
}

impl Pos {
    fn from_marker(m: &Marker) -> Pos {
        Pos {
            line: m.line() as u32,
            col: m.col() as u32 + 1,
        }
    }
}

/// One YAML node with its position.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub pos: Pos,
    pub kind: Kind,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    /// A scalar; `plain` is false for quoted and block scalars (they are always strings).
    Scalar {
        text: String,
        plain: bool,
    },
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

impl Node {
    /// The scalar text, if this node is a scalar.
    pub fn as_str(&self) -> Option<&str> {
        match &self.kind {
            Kind::Scalar { text, .. } => Some(text),
            _ => None,
        }
    }

    /// True for the YAML null scalar (`~`, `null`, or an empty value).
    pub fn is_null(&self) -> bool {
        matches!(&self.kind, Kind::Scalar { text, plain: true } if text.is_empty() || text == "~" || text == "null" || text == "Null" || text == "NULL")
    }

    pub fn as_map(&self) -> Option<&[(Node, Node)]> {
        match &self.kind {
            Kind::Map(m) => Some(m),
            _ => None,
        }
    }

    pub fn as_seq(&self) -> Option<&[Node]> {
        match &self.kind {
            Kind::Seq(s) => Some(s),
            _ => None,
        }
    }

    /// A short name of the node's type for error messages.
    pub fn type_name(&self) -> &'static str {
        match &self.kind {
            Kind::Scalar { .. } if self.is_null() => "null",
            Kind::Scalar { .. } => "a scalar",
            Kind::Seq(_) => "a list",
            Kind::Map(_) => "a mapping",
        }
    }
}

/// A YAML syntax error with its position.
#[derive(Debug, Clone, PartialEq)]
pub struct SyntaxError {
    pub pos: Pos,
    pub message: String,
}

/// Parses one YAML document into a marked tree. An empty document is an empty mapping.
///
/// # Errors
/// Returns the syntax error, or an error for anchors/aliases (not supported in
/// policies: every rule must be visible where it applies).
pub fn parse(text: &str) -> Result<Node, SyntaxError> {
    // A UTF-8 byte order mark (editors on Windows write one) is not content.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut builder = Builder::default();
    let mut parser = Parser::new_from_str(text);
    parser.load(&mut builder, true).map_err(|e| SyntaxError {
        pos: Pos::from_marker(e.marker()),
        message: e.info().to_string(),
    })?;
    if let Some(err) = builder.error {
        return Err(err);
    }
    Ok(builder.root.unwrap_or(Node {
        pos: Pos { line: 1, col: 1 },
        kind: Kind::Map(Vec::new()),
    }))
}

#[derive(Default)]
struct Builder {
    stack: Vec<(Node, Option<Node>)>,
    root: Option<Node>,
    error: Option<SyntaxError>,
    documents: usize,
}

impl Builder {
    fn fail(&mut self, pos: Pos, message: &str) {
        if self.error.is_none() {
            self.error = Some(SyntaxError {
                pos,
                message: message.into(),
            });
        }
    }
}

impl Builder {
    fn push_value(&mut self, node: Node) {
        match self.stack.last_mut() {
            None => {
                if self.root.is_none() {
                    self.root = Some(node);
                }
            }
            Some((parent, pending_key)) => match &mut parent.kind {
                Kind::Seq(items) => items.push(node),
                Kind::Map(entries) => match pending_key.take() {
                    None => *pending_key = Some(node),
                    Some(key) => entries.push((key, node)),
                },
                Kind::Scalar { .. } => {}
            },
        }
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        let pos = Pos::from_marker(&mark);
        const TAGS: &str = "YAML tags (`!!str`, `!!null`, `!custom`) are not supported in policies: they would change what a value means; write the plain value";
        match ev {
            Event::DocumentStart => {
                self.documents += 1;
                if self.documents > 1 {
                    self.fail(pos, "a policy file holds one YAML document; this is a second one (after `---`): put each policy in its own file");
                }
            }
            Event::Scalar(_, _, _, Some(_))
            | Event::SequenceStart(_, Some(_))
            | Event::MappingStart(_, Some(_)) => {
                self.fail(pos, TAGS);
                // Keep the tree's shape so later positions stay right.
                let ev = match ev {
                    Event::Scalar(t, s, a, _) => Event::Scalar(t, s, a, None),
                    Event::SequenceStart(a, _) => Event::SequenceStart(a, None),
                    Event::MappingStart(a, _) => Event::MappingStart(a, None),
                    other => other,
                };
                self.on_event(ev, mark);
            }
            Event::Scalar(text, style, anchor, None) => {
                if anchor != 0 && self.error.is_none() {
                    self.error = Some(SyntaxError {
                        pos,
                        message: "anchors are not supported in policies; write the value out"
                            .into(),
                    });
                }
                self.push_value(Node {
                    pos,
                    kind: Kind::Scalar {
                        text,
                        plain: style == TScalarStyle::Plain,
                    },
                });
            }
            Event::SequenceStart(anchor, _) | Event::MappingStart(anchor, _) => {
                if anchor != 0 && self.error.is_none() {
                    self.error = Some(SyntaxError {
                        pos,
                        message: "anchors are not supported in policies; write the value out"
                            .into(),
                    });
                }
                let kind = if matches!(ev, Event::SequenceStart(..)) {
                    Kind::Seq(Vec::new())
                } else {
                    Kind::Map(Vec::new())
                };
                self.stack.push((Node { pos, kind }, None));
            }
            Event::SequenceEnd | Event::MappingEnd => {
                if let Some((node, _)) = self.stack.pop() {
                    self.push_value(node);
                }
            }
            Event::Alias(_) => {
                if self.error.is_none() {
                    self.error = Some(SyntaxError {
                        pos,
                        message: "aliases are not supported in policies; write the value out"
                            .into(),
                    });
                }
                self.push_value(Node {
                    pos,
                    kind: Kind::Scalar {
                        text: String::new(),
                        plain: true,
                    },
                });
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_one_based() {
        let n = parse("a: 1\nb:\n  - x\n  - y: z\n").unwrap();
        let m = n.as_map().unwrap();
        assert_eq!(m[0].0.pos, Pos { line: 1, col: 1 });
        assert_eq!(m[1].0.pos, Pos { line: 2, col: 1 });
        let seq = m[1].1.as_seq().unwrap();
        assert_eq!(seq[0].pos, Pos { line: 3, col: 5 });
        assert_eq!(seq[1].as_map().unwrap()[0].0.pos, Pos { line: 4, col: 5 });
    }

    #[test]
    fn syntax_error_has_position() {
        let e = parse("a: [1, 2\nb: 3\n").unwrap_err();
        assert!(e.pos.line >= 1, "{e:?}");
    }

    #[test]
    fn empty_document_is_empty_map() {
        assert_eq!(parse("").unwrap().as_map().unwrap().len(), 0);
    }

    #[test]
    fn bom_is_skipped_second_documents_and_tags_are_refused() {
        let n = parse("\u{feff}a: 1\n").unwrap();
        assert_eq!(n.as_map().unwrap()[0].0.as_str(), Some("a"));
        let e = parse("a: 1\n---\nb: 2\n").unwrap_err();
        assert!(e.message.contains("one YAML document"), "{e:?}");
        assert_eq!(e.pos.line, 2);
        for text in [
            "a: !!null internal\n",
            "a: !custom x\n",
            "a: !!map {b: 1}\n",
        ] {
            let e = parse(text).unwrap_err();
            assert!(e.message.contains("tags"), "{text}: {e:?}");
        }
        // One document with an explicit start marker is fine.
        assert!(parse("---\na: 1\n").is_ok());
    }

    #[test]
    fn null_scalars() {
        let n = parse("a: ~\nb:\nc: 'null'\n").unwrap();
        let m = n.as_map().unwrap();
        assert!(m[0].1.is_null());
        assert!(m[1].1.is_null());
        assert!(!m[2].1.is_null());
    }
}
