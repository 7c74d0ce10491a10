//! Compilation of a policy into plans: for every stream, a tree of field paths
//! where each node knows, per output purpose, the action to apply and why.
//!
//! The per-event engine walks these trees and never looks at the policy again.
//! Compilation is pure: keys are passed in already resolved.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use super::keys::Keys;
use super::taxonomy::is_within;
use super::{Action, ActionKind, Basis, FieldPath, Policy, Segment, Unclassified};
use crate::classify::Detector;
use crate::transform::Op;

/// Why a purpose gets an action for a class.
#[derive(Debug, Clone, PartialEq)]
pub enum Reason {
    /// Rule `index` of the purpose (0-based), through its class `class`.
    Rule {
        index: usize,
        class: String,
        line: u32,
    },
    /// No rule covers the class: deny by default.
    Default,
}

impl Reason {
    pub fn describe(&self, purpose: &str) -> String {
        match self {
            Reason::Rule { index, class, line } => {
                format!("purposes.{purpose}.rules[{index}] ({class}, line {line})")
            }
            Reason::Default => "default (no rule: drop)".to_string(),
        }
    }
}

/// The action one purpose gives one class, and why.
#[derive(Debug, Clone)]
pub struct ClassDecision {
    pub class: String,
    pub action: Action,
    pub reason: Reason,
}

/// What one purpose does with one field.
#[derive(Debug, Clone)]
pub struct Decision {
    /// The winning (most restrictive) action across the field's classes.
    pub op: Op,
    pub kind: ActionKind,
    pub action: Action,
    /// The decision of each class of the field, in the order written.
    pub per_class: Vec<ClassDecision>,
    /// Ids of the `class=action` pairs this field adds to `custos-classes` when emitted.
    pub pairs: Vec<u16>,
}

/// How a field is classified, and what every output purpose does with it.
#[derive(Debug, Clone)]
pub struct Leaf {
    /// Empty when unclassified.
    pub classes: Vec<String>,
    /// The classes as indexes into [`StreamPlan::class_names`].
    pub class_ids: Vec<u16>,
    pub scan: bool,
    /// One per output purpose of the stream, in `StreamPlan::purposes` order.
    pub decisions: Vec<Decision>,
}

impl Leaf {
    pub fn is_classified(&self) -> bool {
        !self.classes.is_empty()
    }
}

/// A node of the value tree of a stream plan.
#[derive(Debug, Clone)]
pub struct Node {
    /// The path as written in policies (`items[].sku`).
    pub path: String,
    pub leaf: Arc<Leaf>,
    /// True when the path was named in `fields` (not inherited).
    pub explicit: bool,
    pub children: Vec<(String, Node)>,
    /// Child name → index in `children`, so wide objects stay linear.
    pub index: HashMap<String, usize>,
    pub each: Option<Box<Node>>,
    /// True when this node or a node below it is classified.
    pub has_classified: bool,
}

impl Node {
    /// Up to this many children a linear scan of short strings beats hashing.
    pub const LINEAR_CHILDREN: usize = 8;

    /// The child for an object key.
    #[inline]
    pub fn child(&self, key: &str) -> Option<&Node> {
        if self.children.len() <= Self::LINEAR_CHILDREN {
            self.children.iter().find(|(k, _)| k == key).map(|(_, n)| n)
        } else {
            self.index.get(key).map(|&i| &self.children[i].1)
        }
    }

    pub fn has_structure(&self) -> bool {
        !self.children.is_empty() || self.each.is_some()
    }
}

/// The leaf and node a scalar found at `node` is governed by: where the
/// policy expects an array (`x[]`, `x[][]`) the scalar is an element, and
/// the innermost element's rules apply (never the parent's class, which the
/// array's own node inherits).
pub fn scalar_leaf<'a>(leaf: &'a Leaf, node: Option<&'a Node>) -> (&'a Leaf, Option<&'a Node>) {
    let (mut leaf, mut node) = (leaf, node);
    while let Some(e) = node.and_then(|n| n.each.as_deref()) {
        leaf = &e.leaf;
        node = Some(e);
    }
    (leaf, node)
}

/// One output purpose of a stream.
#[derive(Debug, Clone)]
pub struct OutputPlan {
    /// Index of the purpose in the policy.
    pub purpose: usize,
    pub name: String,
    pub topic: String,
    pub basis: Basis,
    pub retention_ms: i64,
    /// Per detector (in [`Detector::ALL`] order): what this purpose does with a found span.
    pub spans: Vec<SpanDecision>,
    /// The KEKs this purpose encrypts something of the stream under: the
    /// subject's data key under each is fetched before the walk.
    pub keks: Vec<Arc<str>>,
}

#[derive(Debug, Clone)]
pub struct SpanDecision {
    pub op: Op,
    pub kind: ActionKind,
    pub pair: Option<u16>,
}

/// The compiled plan of one stream.
#[derive(Debug, Clone)]
pub struct StreamPlan {
    pub name: String,
    pub topic: String,
    pub outputs: Vec<OutputPlan>,
    pub root: Node,
    pub key: Arc<Leaf>,
    pub headers: Vec<(String, Arc<Leaf>)>,
    pub subject: Option<FieldPath>,
    pub event_time: Option<FieldPath>,
    /// Event times later than now plus this are dead-lettered.
    pub max_future_skew_ms: i64,
    /// Other places that name the data subject: `$key` and headers
    /// classified like the `subject` field. An erasure or objection found
    /// for any of them applies to the event (the most protective reading).
    pub subject_aliases: Vec<FieldPath>,
    pub unclassified: Unclassified,
    /// `class=action` strings, sorted; a pair id indexes this list.
    pub pairs: Vec<String>,
    /// Every class a field of this stream has, sorted; a class id indexes this list.
    pub class_names: Vec<String>,
    /// Every classified path as written in the policy, in policy order, with its leaf.
    pub fields: Vec<(String, Arc<Leaf>)>,
}

impl StreamPlan {
    /// The index of purpose `name`'s output in this stream.
    ///
    /// # Errors
    /// A message naming the stream's outputs when it has none for `name`.
    pub fn output_index(&self, name: &str) -> Result<usize, String> {
        self.outputs
            .iter()
            .position(|o| o.name == name)
            .ok_or_else(|| {
                format!(
                    "purpose `{name}` has no output in stream `{}`; its outputs are: {}",
                    self.name,
                    self.outputs
                        .iter()
                        .map(|o| o.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            })
    }

    /// For output `output`: every path the policy names, with its leaf and
    /// that output's decision, in policy order.
    pub fn named_decisions(&self, output: usize) -> impl Iterator<Item = (&str, &Leaf, &Decision)> {
        self.fields.iter().filter_map(move |(path, leaf)| {
            leaf.decisions
                .get(output)
                .map(|d| (path.as_str(), &**leaf, d))
        })
    }
}

/// A policy compiled for processing.
#[derive(Debug, Clone)]
pub struct Compiled {
    pub policy: Arc<Policy>,
    pub streams: Vec<StreamPlan>,
    /// The resolved secrets, for plans compiled later (one per Avro writer schema).
    pub keys: Keys,
}

impl Compiled {
    pub fn stream(&self, name: &str) -> Option<&StreamPlan> {
        self.streams.iter().find(|s| s.name == name)
    }

    /// The key-encryption keys of every `encrypt` rule, by name, in policy
    /// order (compiling checked that their secrets are present).
    pub fn keks(&self) -> Vec<crate::crypto::Kek> {
        let mut out: Vec<crate::crypto::Kek> = Vec::new();
        for p in &self.policy.purposes {
            for r in &p.rules {
                if let super::Action::Encrypt { key } = &r.action {
                    if let (false, Some(bytes)) =
                        (out.iter().any(|k| k.name() == key), self.keys.get(key))
                    {
                        out.push(crate::crypto::Kek::new(key, bytes));
                    }
                }
            }
        }
        out
    }

    /// True when some stream encrypts something for some purpose.
    pub fn encrypts(&self) -> bool {
        self.streams
            .iter()
            .any(|s| s.outputs.iter().any(|o| !o.keks.is_empty()))
    }
}

/// Errors that can only show up when keys meet the policy.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CompileError {
    #[error("key `{0}` is used by the policy but was not resolved")]
    MissingKey(String),
}

/// Compiles every stream of a policy.
///
/// # Errors
/// Fails when a key the policy uses is missing from `keys`.
pub fn compile(policy: Arc<Policy>, keys: &Keys) -> Result<Compiled, CompileError> {
    let mut streams = Vec::new();
    for s in &policy.streams {
        streams.push(compile_stream(&policy, s, keys)?);
    }
    Ok(Compiled {
        policy,
        streams,
        keys: keys.clone(),
    })
}

fn op_for(action: &Action, keys: &Keys) -> Result<Op, CompileError> {
    lower(action, |k| keys.get(k)).ok_or_else(|| match action {
        Action::Pseudonymize { key } | Action::Encrypt { key } => {
            CompileError::MissingKey(key.clone())
        }
        _ => CompileError::MissingKey(String::new()),
    })
}

/// The action of one purpose for one class, with the reason.
pub fn decide_class(policy: &Policy, purpose: usize, class: &str) -> ClassDecision {
    let p = &policy.purposes[purpose];
    match policy.rule_for(p, class) {
        Some((rule, rc)) => ClassDecision {
            class: class.to_string(),
            action: rule.action.clone(),
            reason: Reason::Rule {
                index: p
                    .rules
                    .iter()
                    .position(|r| std::ptr::eq(r, rule))
                    .unwrap_or(0),
                class: rc.to_string(),
                line: rule.pos.line,
            },
        },
        None => ClassDecision {
            class: class.to_string(),
            action: Action::Drop,
            reason: Reason::Default,
        },
    }
}

/// The winning decision across several classes: most restrictive, first on ties.
pub fn decide_field(
    policy: &Policy,
    purpose: usize,
    classes: &[String],
) -> (Action, Vec<ClassDecision>) {
    let per_class: Vec<ClassDecision> = classes
        .iter()
        .map(|c| decide_class(policy, purpose, c))
        .collect();
    let winner = per_class
        .iter()
        .min_by_key(|d| d.action.kind())
        .map(|d| d.action.clone())
        .unwrap_or(Action::Drop);
    (winner, per_class)
}

struct PairTable {
    names: BTreeSet<String>,
}

fn pair_name(class: &str, kind: ActionKind) -> String {
    format!("{class}={}", kind.name())
}

/// Compiles one stream (an Avro stream once per writer schema, with the
/// classes the schema adds in its `fields`).
///
/// # Errors
/// Fails when a key the policy uses is missing from `keys`.
pub fn compile_stream(
    policy: &Policy,
    stream: &super::Stream,
    keys: &Keys,
) -> Result<StreamPlan, CompileError> {
    // Outputs in policy order (the order of `purposes:`), whatever order the stream lists them in.
    let mut outputs_idx: Vec<(usize, &String)> = stream
        .outputs
        .iter()
        .filter_map(|(p, t)| policy.purpose_index(p).map(|i| (i, t)))
        .collect();
    outputs_idx.sort_by_key(|(i, _)| *i);

    // First pass: every class=action pair this stream can emit, sorted.
    let mut table = PairTable {
        names: BTreeSet::new(),
    };
    let leaf_pairs = |classes: &[String], table: &mut PairTable| {
        for &(pi, _) in &outputs_idx {
            let (winner, _) = decide_field(policy, pi, classes);
            if winner.kind() != ActionKind::Drop {
                for c in classes {
                    table.names.insert(pair_name(c, winner.kind()));
                }
            }
        }
    };
    for f in &stream.fields {
        leaf_pairs(&f.classes, &mut table);
    }
    for d in Detector::ALL {
        for &(pi, _) in &outputs_idx {
            let cd = decide_class(policy, pi, d.class());
            // A dropped span is replaced by a redaction marker: report it as redact.
            let kind = cd.action.kind().max(ActionKind::Redact);
            table.names.insert(pair_name(d.class(), kind));
        }
    }
    let pairs: Vec<String> = table.names.into_iter().collect();
    let pair_id = |name: &str| -> u16 {
        // Invariant: every pair was inserted in the first pass above.
        pairs
            .binary_search_by(|p| p.as_str().cmp(name))
            .map(|i| i as u16)
            .unwrap_or(u16::MAX)
    };

    let class_names: Vec<String> = stream
        .fields
        .iter()
        .flat_map(|f| f.classes.iter().cloned())
        .collect::<BTreeSet<String>>()
        .into_iter()
        .collect();
    let class_id = |c: &String| -> u16 {
        // Invariant: every field's classes are in `class_names`.
        class_names
            .binary_search(c)
            .map(|i| i as u16)
            .unwrap_or(u16::MAX)
    };
    let make_leaf = |classes: &[String], scan: bool| -> Result<Arc<Leaf>, CompileError> {
        let mut decisions = Vec::new();
        for &(pi, _) in &outputs_idx {
            let (action, per_class) = decide_field(policy, pi, classes);
            let kind = action.kind();
            let pairs_here = if kind == ActionKind::Drop || classes.is_empty() {
                Vec::new()
            } else {
                classes
                    .iter()
                    .map(|c| pair_id(&pair_name(c, kind)))
                    .collect()
            };
            decisions.push(Decision {
                op: op_for(&action, keys)?,
                kind,
                action,
                per_class,
                pairs: pairs_here,
            });
        }
        Ok(Arc::new(Leaf {
            classes: classes.to_vec(),
            class_ids: classes.iter().map(class_id).collect(),
            scan,
            decisions,
        }))
    };

    let unclassified = make_leaf(&[], false)?;
    let mut root = Node {
        path: String::new(),
        leaf: unclassified.clone(),
        explicit: false,
        children: Vec::new(),
        index: HashMap::new(),
        each: None,
        has_classified: false,
    };
    let mut key = unclassified.clone();
    let mut headers = Vec::new();
    let mut fields = Vec::new();
    // Insert shorter paths first so that a parent's leaf exists before children inherit it.
    let mut specs: Vec<&super::FieldSpec> = stream.fields.iter().collect();
    specs.sort_by_key(|f| match &f.path {
        FieldPath::Value(segs) => segs.len(),
        _ => 0,
    });
    for spec in specs {
        let leaf = make_leaf(&spec.classes, spec.scan)?;
        match &spec.path {
            FieldPath::Key => key = leaf.clone(),
            FieldPath::Header(h) => headers.push((h.clone(), leaf.clone())),
            FieldPath::Value(segs) => insert(&mut root, segs, leaf.clone()),
        }
    }
    for spec in &stream.fields {
        let leaf = match &spec.path {
            FieldPath::Key => key.clone(),
            FieldPath::Header(h) => headers
                .iter()
                .find(|(n, _)| n == h)
                .map(|(_, l)| l.clone())
                .unwrap_or_else(|| unclassified.clone()),
            FieldPath::Value(segs) => find(&root, segs)
                .map(|n| n.leaf.clone())
                .unwrap_or_else(|| unclassified.clone()),
        };
        fields.push((spec.path.to_string(), leaf));
    }
    mark_classified(&mut root);

    let outputs = outputs_idx
        .iter()
        .map(|&(pi, topic)| {
            let p = &policy.purposes[pi];
            let spans = Detector::ALL
                .iter()
                .map(|d| {
                    let cd = decide_class(policy, pi, d.class());
                    let kind = cd.action.kind();
                    let shown = kind.max(ActionKind::Redact);
                    Ok(SpanDecision {
                        op: op_for(&cd.action, keys)?,
                        kind,
                        pair: Some(pair_id(&pair_name(d.class(), shown))),
                    })
                })
                .collect::<Result<Vec<_>, CompileError>>()?;
            Ok(OutputPlan {
                purpose: pi,
                name: p.name.clone(),
                topic: topic.clone(),
                basis: p.basis,
                retention_ms: p.retention_ms,
                spans,
                keks: Vec::new(),
            })
        })
        .collect::<Result<Vec<_>, CompileError>>()?;
    let mut outputs = outputs;
    fill_keks(&mut outputs, &root, &key, &headers);

    let subject_aliases = subject_aliases(stream.subject.as_ref(), &root, &key, &headers);
    Ok(StreamPlan {
        name: stream.name.clone(),
        topic: stream.topic.clone(),
        outputs,
        root,
        key,
        headers,
        subject: stream.subject.clone(),
        event_time: stream.event_time.clone(),
        max_future_skew_ms: stream.max_future_skew_ms,
        subject_aliases,
        unclassified: stream.unclassified,
        pairs,
        class_names,
        fields,
    })
}

/// Sets each output's [`OutputPlan::keks`]: the KEKs of its encrypt
/// decisions on any leaf and on detector findings (the guard of kept values
/// acts on findings in fields that are not scanned too).
fn fill_keks(outputs: &mut [OutputPlan], root: &Node, key: &Leaf, headers: &[(String, Arc<Leaf>)]) {
    fn leaves<'n>(n: &'n Node, out: &mut Vec<&'n Leaf>) {
        out.push(&n.leaf);
        for (_, c) in &n.children {
            leaves(c, out);
        }
        if let Some(e) = &n.each {
            leaves(e, out);
        }
    }
    let mut all: Vec<&Leaf> = vec![key];
    all.extend(headers.iter().map(|(_, l)| &**l));
    leaves(root, &mut all);
    for (i, out) in outputs.iter_mut().enumerate() {
        let ops = all
            .iter()
            .filter_map(|l| l.decisions.get(i).map(|d| &d.op))
            .chain(out.spans.iter().map(|sd| &sd.op));
        let mut keks: Vec<Arc<str>> = Vec::new();
        for op in ops {
            if let Op::Encrypt(k) = op {
                if !keks.contains(k) {
                    keks.push(k.clone());
                }
            }
        }
        out.keks = keks;
    }
}

/// `$key` and headers that share a class with the subject field.
fn subject_aliases(
    subject: Option<&FieldPath>,
    root: &Node,
    key: &Arc<Leaf>,
    headers: &[(String, Arc<Leaf>)],
) -> Vec<FieldPath> {
    let Some(FieldPath::Value(segs)) = subject else {
        return Vec::new();
    };
    let Some(node) = find(root, segs) else {
        return Vec::new();
    };
    let classes = &node.leaf.classes;
    let shares = |leaf: &Leaf| leaf.classes.iter().any(|c| classes.contains(c));
    let mut out = Vec::new();
    if shares(key) {
        out.push(FieldPath::Key);
    }
    for (name, leaf) in headers {
        if shares(leaf) {
            out.push(FieldPath::Header(name.clone()));
        }
    }
    out
}

/// Adds a classified path to the tree; nodes created on the way inherit their parent's leaf.
fn insert(root: &mut Node, segs: &[Segment], leaf: Arc<Leaf>) {
    let mut node = root;
    for seg in segs {
        let parent_leaf = node.leaf.clone();
        let parent_path = node.path.clone();
        node = match seg {
            Segment::Field(name) => {
                let idx = match node.index.get(name) {
                    Some(&i) => i,
                    None => {
                        let path = if parent_path.is_empty() {
                            name.clone()
                        } else {
                            format!("{parent_path}.{name}")
                        };
                        node.children
                            .push((name.clone(), Node::inheriting(path, parent_leaf)));
                        node.index.insert(name.clone(), node.children.len() - 1);
                        node.children.len() - 1
                    }
                };
                &mut node.children[idx].1
            }
            Segment::Each => node.each.get_or_insert_with(|| {
                Box::new(Node::inheriting(format!("{parent_path}[]"), parent_leaf))
            }),
        };
    }
    set_leaf(node, leaf);
}

/// Sets a node's leaf, and the leaf of every inheriting node below it.
fn set_leaf(node: &mut Node, leaf: Arc<Leaf>) {
    let old = node.leaf.clone();
    node.leaf = leaf.clone();
    node.explicit = true;
    fn relink(n: &mut Node, old: &Arc<Leaf>, new: &Arc<Leaf>) {
        for (_, c) in n.children.iter_mut() {
            if !c.explicit && Arc::ptr_eq(&c.leaf, old) {
                c.leaf = new.clone();
                relink(c, old, new);
            }
        }
        if let Some(e) = n.each.as_mut() {
            if !e.explicit && Arc::ptr_eq(&e.leaf, old) {
                e.leaf = new.clone();
                relink(e, old, new);
            }
        }
    }
    relink(node, &old, &leaf);
}

fn find<'a>(root: &'a Node, segs: &[Segment]) -> Option<&'a Node> {
    let mut node = root;
    for seg in segs {
        node = match seg {
            Segment::Field(name) => node.child(name)?,
            Segment::Each => node.each.as_deref()?,
        };
    }
    Some(node)
}

fn mark_classified(node: &mut Node) -> bool {
    let mut any = node.leaf.is_classified();
    for (_, c) in node.children.iter_mut() {
        any |= mark_classified(c);
    }
    if let Some(e) = node.each.as_mut() {
        any |= mark_classified(e);
    }
    node.has_classified = any;
    any
}

impl Node {
    fn inheriting(path: String, leaf: Arc<Leaf>) -> Node {
        Node {
            path,
            leaf,
            explicit: false,
            children: Vec::new(),
            index: HashMap::new(),
            each: None,
            has_classified: false,
        }
    }
}

/// True when `class` is covered by any of `classes`.
pub fn covered_by(class: &str, classes: &[String]) -> bool {
    classes.iter().any(|c| is_within(class, c))
}

/// Lowers an action into the operation the engine applies; `key` looks up a
/// named secret. `None` when a key is missing or the action is not
/// supported.
pub fn lower<'k>(action: &Action, key: impl Fn(&str) -> Option<&'k [u8]>) -> Option<Op> {
    Some(match action {
        Action::Drop => Op::Drop,
        Action::Redact => Op::Redact,
        Action::Keep => Op::Keep,
        Action::Pseudonymize { key: k } => Op::pseudonymize(key(k)?)?,
        Action::Encrypt { key: k } => {
            key(k)?;
            Op::Encrypt(Arc::from(k.as_str()))
        }
        Action::Mask {
            keep_first,
            keep_last,
            ch,
        } => Op::Mask {
            keep_first: *keep_first,
            keep_last: *keep_last,
            ch: *ch,
        },
        Action::Generalize(g) => Op::Generalize(g.clone()),
    })
}
