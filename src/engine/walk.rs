//! The walk: one pass over the decoded value, writing every active
//! purpose's output side by side, with the detectors and the guard of kept values.

#[allow(clippy::wildcard_imports)]
use super::*;
use crate::crypto::Seg;

/// Values with fewer digits cannot hold a card, IBAN or SSN.
pub(super) const GUARD_MIN_DIGITS: usize = 9;

/// Counts spans found in `field` by detector.
pub(super) fn count_detections(detections: &mut Vec<Detection>, field: &str, spans: &[Span]) {
    for span in spans {
        match detections
            .iter_mut()
            .find(|d| &*d.field == field && d.detector == span.detector)
        {
            Some(d) => d.count += 1,
            None => detections.push(Detection {
                field: Arc::from(field),
                detector: span.detector,
                count: 1,
            }),
        }
    }
}

/// The decision of output `out` for a span: the most restrictive of the
/// decisions for every detector whose finding was merged into the span.
pub(super) fn span_decision<'p>(out: &'p OutputPlan, span: &Span) -> &'p SpanDecision {
    let mut best = &out.spans[span.detector.index()];
    for d in span.detectors.iter() {
        let c = &out.spans[d.index()];
        if c.kind < best.kind {
            best = c;
        }
    }
    best
}

/// Appends `s` to `text` with every span transformed in place by the
/// purpose's span decision; `mark` gets the `custos-classes` pair of each.
/// `enc` encrypts spans whose decision is `encrypt` (the field's associated
/// data); a span it cannot encrypt is redacted.
pub(super) fn rewrite_spans(
    s: &str,
    spans: &[Span],
    out: &OutputPlan,
    text: &mut String,
    enc: Enc<'_>,
    mut mark: impl FnMut(u16),
) {
    let mut last = 0;
    for span in spans {
        text.push_str(&s[last..span.start]);
        let sd = span_decision(out, span);
        let class = span
            .detectors
            .iter()
            .find(|d| out.spans[d.index()].kind == sd.kind)
            .unwrap_or(span.detector)
            .class();
        let sealed = match &sd.op {
            Op::Encrypt(kek) => enc.seal(kek, &json_string(&s[span.start..span.end])),
            _ => None,
        };
        match sealed {
            Some(token) => text.push_str(&token),
            None => transform::apply_span(&sd.op, &s[span.start..span.end], class, text),
        }
        last = span.end;
        if let Some(id) = sd.pair {
            mark(id);
        }
    }
    text.push_str(&s[last..]);
}

/// A string's JSON text (what is encrypted for text).
pub(super) fn json_string(s: &str) -> Vec<u8> {
    let mut b = Vec::with_capacity(s.len() + 2);
    write_str(&mut b, s);
    b
}

/// Encryption for one event: its subject's data keys, fetched the first
/// time a value needs one (a record that encrypts nothing makes no key),
/// and its source (part of every token's associated data).
pub(super) struct Sealer<'a> {
    source: &'a str,
    subject: Option<&'a str>,
    state: &'a dyn SubjectState,
    /// Per KEK: the subject's key, or `None` when none could be had.
    keys: std::cell::RefCell<Vec<(Arc<str>, Option<crate::crypto::DataKey>)>>,
}

impl<'a> Sealer<'a> {
    pub(super) fn new(
        source: &'a str,
        subject: Option<&'a str>,
        state: &'a dyn SubjectState,
    ) -> Self {
        Sealer {
            source,
            subject,
            state,
            keys: std::cell::RefCell::new(Vec::new()),
        }
    }

    /// A token for `plaintext` at `path` of `purpose`'s output, or `None`
    /// when the event has no subject or no key could be had: then redacted.
    pub(super) fn seal<'s>(
        &self,
        kek: &Arc<str>,
        purpose: &str,
        path: impl IntoIterator<Item = Seg<'s>>,
        plaintext: &[u8],
    ) -> Option<String> {
        let subject = self.subject?;
        let mut keys = self.keys.borrow_mut();
        let at = match keys.iter().position(|(k, _)| k == kek) {
            Some(at) => at,
            None => {
                keys.push((kek.clone(), self.state.data_key(kek, subject).ok()));
                keys.len() - 1
            }
        };
        let key = keys[at].1.as_ref()?;
        Some(key.seal(&crate::crypto::aad(self.source, purpose, path), plaintext))
    }
}

/// A sealer, the purpose and the place of the text being governed.
#[derive(Clone, Copy)]
pub(super) struct Enc<'a> {
    pub(super) sealer: &'a Sealer<'a>,
    pub(super) purpose: &'a str,
    pub(super) path: &'a [Seg<'a>],
}

impl Enc<'_> {
    pub(super) fn seal(&self, kek: &Arc<str>, plaintext: &[u8]) -> Option<String> {
        self.sealer
            .seal(kek, self.purpose, self.path.iter().copied(), plaintext)
    }
}

/// Path steps as [`Seg`]s (`None`: an array element).
pub(super) fn segs<'n>(names: &'n [Option<Cow<'_, [u8]>>]) -> Vec<Seg<'n>> {
    names
        .iter()
        .map(|n| match n {
            Some(name) => Seg::Member(name),
            None => Seg::Element,
        })
        .collect()
}

/// Where an encrypted value with nothing to encrypt it under goes: redacted.
fn write_unsealed(buf: &mut Vec<u8>, string: bool) {
    buf.extend_from_slice(if string { b"\"[REDACTED]\"" } else { b"null" });
}

/// Marks an array element in [`Walker::path`].
pub(super) const ELEMENT: u32 = u32::MAX;

/// Walks one event once, writing every active purpose's output side by side.
pub(super) struct Walker<'a> {
    /// The data keys of the event's subject, for `encrypt`.
    pub(super) sealer: &'a Sealer<'a>,
    /// The member-name tokens (or [`ELEMENT`]) from the root to the value
    /// being walked: the output path encrypted values are bound to.
    pub(super) path: &'a mut Vec<u32>,
    pub(super) doc: &'a Doc<'a>,
    pub(super) actions: Vec<[u32; 7]>,
    pub(super) classes: Vec<u32>,
    pub(super) outputs: &'a [OutputPlan],
    pub(super) bufs: &'a mut [Vec<u8>],
    pub(super) bits: &'a mut [u64],
    pub(super) words: usize,
    pub(super) unclassified: u32,
    pub(super) detections: &'a mut Vec<Detection>,
    pub(super) spans: &'a mut Vec<Span>,
    pub(super) text: &'a mut String,
    /// Per output, the tape of what is written to it, built as it is
    /// written (for outputs encoded into another format: no parse of them).
    pub(super) tapes: Option<&'a mut [Tape]>,
}

/// Where a member or element began in an output: text and tape length.
pub(super) type Mark = (usize, usize);

#[inline]
pub(super) fn each_bit(mask: u64) -> impl Iterator<Item = usize> {
    let mut m = mask;
    std::iter::from_fn(move || {
        if m == 0 {
            None
        } else {
            let b = m.trailing_zeros() as usize;
            m &= m - 1;
            Some(b)
        }
    })
}

/// Writes a JSON string (with quotes and escapes).
pub(super) fn write_str(buf: &mut Vec<u8>, s: &str) {
    codec::write_str(buf, s);
}

/// Writes the governed form of a scalar token; false when it is dropped.
pub(super) fn write_scalar(op: &Op, doc: &Doc<'_>, i: usize, buf: &mut Vec<u8>) -> bool {
    let t = doc.tok(i);
    match (op, t.kind) {
        (Op::Drop, _) => false,
        (_, Kind::Null) => {
            buf.extend_from_slice(b"null");
            true
        }
        (Op::Keep, _) => {
            buf.extend_from_slice(codec::raw_json(doc.src, t));
            true
        }
        (Op::Redact, Kind::Str | Kind::StrEsc) => {
            buf.extend_from_slice(b"\"[REDACTED]\"");
            true
        }
        (Op::Redact, _) => {
            buf.extend_from_slice(b"null");
            true
        }
        (Op::Pseudonymize(mac), kind) => {
            let p = if matches!(kind, Kind::Str | Kind::StrEsc) {
                transform::pseudonym(mac, codec::string(doc.src, t).as_bytes())
            } else {
                transform::pseudonym(mac, codec::raw(doc.src, t))
            };
            buf.push(b'"');
            buf.extend_from_slice(p.as_bytes());
            buf.push(b'"');
            true
        }
        _ => {
            let v = doc.scalar_value(i);
            match transform::apply(op, &v) {
                Some(out) => {
                    let _ = serde_json::to_writer(buf, &*out);
                    true
                }
                None => false,
            }
        }
    }
}

/// The purposes in `active` whose action for `leaf` is keep.
pub(super) fn keep_mask(leaf: &Leaf, active: u64) -> u64 {
    each_bit(active)
        .filter(|&p| matches!(leaf.decisions[p].op, Op::Keep))
        .fold(0, |m, p| m | (1 << p))
}

impl<'a> Walker<'a> {
    /// Counts `n` classified values of `leaf` (for the metrics): once per
    /// class, and for `purposes` once by their winning action.
    pub(super) fn count(&mut self, leaf: &Leaf, n: u32, classes: bool, purposes: u64) {
        if classes {
            for &c in &leaf.class_ids {
                if let Some(x) = self.classes.get_mut(c as usize) {
                    *x += n;
                }
            }
        }
        for p in each_bit(purposes) {
            self.actions[p][leaf.decisions[p].kind as usize] += n;
        }
    }

    pub(super) fn mark_pairs(&mut self, p: usize, pairs: &[u16]) {
        for &id in pairs {
            let id = id as usize;
            self.bits[p * self.words + id / 64] |= 1 << (id % 64);
        }
    }

    /// Scalars (and empty containers) below token `i`, for unclassified counts.
    pub(super) fn count_leaves(&self, i: usize) -> u32 {
        self.doc.tok(i).leaves
    }

    /// Writes token `i` under `leaf`/`node` for every purpose in `active`;
    /// returns the purposes for which something was written.
    pub(super) fn value(
        &mut self,
        i: usize,
        leaf: &Leaf,
        node: Option<&Node>,
        path: &str,
        active: u64,
    ) -> u64 {
        let kind = self.doc.tok(i).kind;
        let container = matches!(kind, Kind::Object | Kind::Array);
        let structured = node.is_some_and(Node::has_structure);
        if !structured && !leaf.scan {
            if !leaf.is_classified() {
                self.unclassified += self.count_leaves(i);
                return 0;
            }
            if container {
                // Uniform subtree: copy it verbatim where the action is keep,
                // unless it holds an empty container (structure does not
                // leak: those are walked and the empty parts removed).
                let tok = self.doc.tok(i);
                let digits = codec::raw_json(self.doc.src, tok)
                    .iter()
                    .filter(|b| b.is_ascii_digit())
                    .count();
                // Text beyond ASCII may write digits in other scripts: walked
                // too, so that the guard of kept values sees every scalar.
                let keep = if tok.hollow
                    || digits >= GUARD_MIN_DIGITS
                    || !codec::raw_json(self.doc.src, tok).is_ascii()
                {
                    0
                } else {
                    keep_mask(leaf, active)
                };
                let raw = codec::raw_json(self.doc.src, self.doc.tok(i));
                for p in each_bit(keep) {
                    let at = self.bufs[p].len();
                    self.bufs[p].extend_from_slice(raw);
                    if let Some(t) = self.tapes.as_deref_mut() {
                        t[p].copy_subtree(self.doc.tape, i, at);
                    }
                    self.mark_pairs(p, &leaf.decisions[p].pairs);
                }
                let rest = active & !keep;
                // The values inside count as fields; where other purposes
                // walk the subtree below, the classes are counted there.
                let n = self.count_leaves(i);
                self.count(leaf, n, rest == 0, keep);
                let mut written = keep;
                if rest != 0 {
                    written |= if kind == Kind::Object {
                        self.object(i, leaf, None, path, rest)
                    } else {
                        self.array(i, leaf, None, path, rest)
                    };
                }
                return written;
            }
        }
        match kind {
            Kind::Object => self.object(i, leaf, node, path, active),
            Kind::Array => self.array(i, leaf, node, path, active),
            _ => {
                // A scalar where the policy expects an array (`aliases[]`,
                // `emails[][]`): it is an element, and the element rules
                // apply (never the parent's, which the array's own leaf
                // inherits).
                let (sleaf, snode) = crate::policy::plan::scalar_leaf(leaf, node);
                let path = match (snode, node) {
                    (Some(s), Some(n)) if !std::ptr::eq(s, n) => s.path.as_str(),
                    _ => path,
                };
                self.scalar(i, sleaf, path, active)
            }
        }
    }

    pub(super) fn object(
        &mut self,
        i: usize,
        leaf: &Leaf,
        node: Option<&Node>,
        path: &str,
        active: u64,
    ) -> u64 {
        let doc = self.doc;
        let marks = self.open(active, b'{');
        let mut nonempty = 0u64;
        let mut emarks = [(0usize, 0usize); 64];
        // Purposes that may see members the policy does not name (see below).
        let unnamed = keep_mask(leaf, active);
        for (k, v) in doc.tape.members(i) {
            let child = node.and_then(|n| {
                if n.children.len() <= Node::LINEAR_CHILDREN {
                    n.children
                        .iter()
                        .find(|(name, _)| doc.key_is(k, name))
                        .map(|(_, c)| c)
                } else {
                    n.child(&codec::string(doc.src, doc.tok(k)))
                }
            });
            // A member the policy does not name: its key may itself be data
            // (a map keyed by card numbers), so it is emitted only where its
            // inherited class is kept. Data shaped as an object where the
            // policy expects an array keeps the element rules (`each`).
            let (cleaf, cnode, cpath, member_active) = match child {
                Some(c) => (&*c.leaf, Some(c), c.path.as_str(), active),
                None => match node.and_then(|n| n.each.as_deref()) {
                    Some(e) => (&*e.leaf, Some(e), e.path.as_str(), unnamed),
                    None => (leaf, None, path, unnamed),
                },
            };
            if !cleaf.is_classified() && !cnode.is_some_and(|n| n.has_classified) {
                self.unclassified += self.count_leaves(v);
                continue;
            }
            // Inside a scanned field a member's key is text too: one with
            // personal data in it cannot be transformed without breaking the
            // object, so the member goes only where that data is kept.
            let member_active = if child.is_none() && member_active != 0 {
                self.scan_key(k, cpath, member_active, !cleaf.scan)
            } else {
                member_active
            };
            if child.is_none() && cleaf.is_classified() {
                // Purposes that may not see an unnamed member drop it.
                let n = self.count_leaves(v);
                for p in each_bit(active & !member_active) {
                    self.actions[p][ActionKind::Drop as usize] += n;
                }
            }
            let key_json = codec::raw_json(doc.src, doc.tok(k));
            self.separate(
                member_active,
                nonempty,
                &mut emarks,
                key_json,
                doc.tok(k).kind,
            );
            self.path.push(k as u32);
            let w = self.value(v, cleaf, cnode, cpath, member_active);
            self.path.pop();
            self.unwind(member_active & !w, &emarks);
            nonempty |= w;
        }
        self.close(active, nonempty, &marks, b'}');
        nonempty
    }

    pub(super) fn array(
        &mut self,
        i: usize,
        leaf: &Leaf,
        node: Option<&Node>,
        path: &str,
        active: u64,
    ) -> u64 {
        let doc = self.doc;
        // Data shaped as an array where the policy expects an object: the
        // object's rules apply to every element (never the parent's alone).
        let (eleaf, enode, epath) = match node.and_then(|n| n.each.as_deref()) {
            Some(e) => (&*e.leaf, Some(e), e.path.as_str()),
            None => match node.filter(|n| !n.children.is_empty()) {
                Some(n) => (leaf, Some(n), path),
                None => (leaf, None, path),
            },
        };
        if !eleaf.is_classified() && !enode.is_some_and(|n| n.has_classified) {
            self.unclassified += self.count_leaves(i);
            return 0;
        }
        let marks = self.open(active, b'[');
        let mut nonempty = 0u64;
        let mut emarks = [(0usize, 0usize); 64];
        self.path.push(ELEMENT);
        for item in doc.tape.elements(i) {
            self.separate(active, nonempty, &mut emarks, b"", Kind::Null);
            let w = self.value(item, eleaf, enode, epath, active);
            self.unwind(active & !w, &emarks);
            nonempty |= w;
        }
        self.path.pop();
        self.close(active, nonempty, &marks, b']');
        nonempty
    }

    /// Opens a container in every active buffer; returns where each began.
    #[inline]
    pub(super) fn open(&mut self, active: u64, bracket: u8) -> [usize; 64] {
        let mut marks = [0usize; 64];
        let kind = if bracket == b'{' {
            Kind::Object
        } else {
            Kind::Array
        };
        for p in each_bit(active) {
            marks[p] = self.bufs[p].len();
            if let Some(t) = self.tapes.as_deref_mut() {
                // Never deeper than the input, which was at most as deep.
                if t[p].open(kind, marks[p]).is_err() {
                    t[p].give_up();
                }
            }
            self.bufs[p].push(bracket);
        }
        marks
    }

    /// Starts a member or element: remembers where it began, writes the comma
    /// (when something came before) and, for objects, `"key":`.
    #[inline]
    pub(super) fn separate(
        &mut self,
        active: u64,
        nonempty: u64,
        emarks: &mut [Mark; 64],
        key_json: &[u8],
        key_kind: Kind,
    ) {
        for p in each_bit(active) {
            let buf = &mut self.bufs[p];
            let toks = self.tapes.as_deref().map_or(0, |t| t[p].toks.len());
            emarks[p] = (buf.len(), toks);
            if nonempty & (1 << p) != 0 {
                buf.push(b',');
            }
            if !key_json.is_empty() {
                let at = buf.len();
                buf.extend_from_slice(key_json);
                if let Some(t) = self.tapes.as_deref_mut() {
                    t[p].scalar(key_kind, at + 1, at + key_json.len() - 1);
                }
                buf.push(b':');
            }
        }
    }

    /// Takes back a member or element that governance left empty.
    #[inline]
    pub(super) fn unwind(&mut self, purposes: u64, emarks: &[Mark; 64]) {
        for p in each_bit(purposes) {
            self.bufs[p].truncate(emarks[p].0);
            if let Some(t) = self.tapes.as_deref_mut() {
                t[p].truncate(emarks[p].1);
            }
        }
    }

    /// Closes a container, or removes it where nothing was written into it
    /// (structure does not leak).
    #[inline]
    pub(super) fn close(&mut self, active: u64, nonempty: u64, marks: &[usize; 64], bracket: u8) {
        for p in each_bit(active) {
            if nonempty & (1 << p) != 0 {
                self.bufs[p].push(bracket);
                if let Some(t) = self.tapes.as_deref_mut() {
                    let buf = &self.bufs[p];
                    if t[p].close(buf, buf.len(), false).is_err() {
                        t[p].give_up();
                    }
                }
            } else {
                self.bufs[p].truncate(marks[p]);
                if let Some(t) = self.tapes.as_deref_mut() {
                    t[p].discard_open();
                }
            }
        }
    }

    pub(super) fn scalar(&mut self, i: usize, leaf: &Leaf, path: &str, active: u64) -> u64 {
        if !leaf.is_classified() {
            self.unclassified += 1;
            return 0;
        }
        self.count(leaf, 1, true, active);
        let doc = self.doc;
        if leaf.scan && matches!(doc.tok(i).kind, Kind::Str | Kind::StrEsc) {
            let s = codec::string(doc.src, doc.tok(i));
            return self.scanned(&s, leaf, path, active);
        }
        if leaf.scan && doc.tok(i).kind == Kind::Number {
            // A number in a scanned field can be a card or phone number too:
            // with findings it is governed as text.
            let raw = std::str::from_utf8(codec::raw(doc.src, doc.tok(i))).unwrap_or_default();
            classify::detect_number(raw, self.spans);
            if !self.spans.is_empty() {
                return self.govern_scanned(raw, leaf, path, active);
            }
        }
        let mut written = 0;
        let mut rest = active;
        if !leaf.scan {
            let keep = keep_mask(leaf, active);
            if keep != 0 {
                let w = self.guard(i, leaf, path, keep);
                if w != 0 {
                    written |= w;
                    rest &= !keep;
                }
            }
        }
        for p in each_bit(rest) {
            let d = &leaf.decisions[p];
            if let (Op::Encrypt(kek), false) = (&d.op, doc.tok(i).kind == Kind::Null) {
                let string = matches!(doc.tok(i).kind, Kind::Str | Kind::StrEsc);
                self.write_sealed(kek, codec::raw_json(doc.src, doc.tok(i)), p, string);
                written |= 1 << p;
                self.mark_pairs(p, &d.pairs);
                continue;
            }
            let at = self.bufs[p].len();
            if write_scalar(&d.op, doc, i, &mut self.bufs[p]) {
                self.wrote(p, at);
                written |= 1 << p;
                self.mark_pairs(p, &d.pairs);
            }
        }
        written
    }

    /// Defence in depth for kept values of fields that are not scanned: a
    /// card number, IBAN or US SSN (the detectors with checksums or strict
    /// rules, so ordinary values are not flagged) inside a value the policy
    /// classified as something else still gets the purpose's action for its
    /// own class. Returns the purposes written (0 when nothing was found and
    /// the value is written as usual). Only values with at least 9 ASCII
    /// digits, or with characters beyond ASCII, are looked at.
    pub(super) fn guard(&mut self, i: usize, leaf: &Leaf, path: &str, keep: u64) -> u64 {
        let doc = self.doc;
        let tok = doc.tok(i);
        let raw = codec::raw(doc.src, tok);
        // Text that is not ASCII may write its digits in other scripts
        // (full-width, Arabic-Indic): the detectors fold them, so it is
        // always looked at.
        if raw.iter().filter(|b| b.is_ascii_digit()).count() < GUARD_MIN_DIGITS && raw.is_ascii() {
            return 0;
        }
        let text: std::borrow::Cow<'_, str> = match tok.kind {
            Kind::Str | Kind::StrEsc => codec::string(doc.src, tok),
            Kind::Number => {
                let raw = std::str::from_utf8(raw).unwrap_or_default();
                classify::detect_number(raw, self.spans);
                self.spans.retain(Span::is_guarded);
                if self.spans.is_empty() {
                    return 0;
                }
                std::borrow::Cow::Borrowed(raw)
            }
            _ => return 0,
        };
        if matches!(tok.kind, Kind::Str | Kind::StrEsc) {
            classify::detect_guarded_into(&text, self.spans);
            if self.spans.is_empty() {
                return 0;
            }
        }
        self.govern_scanned(&text, leaf, path, keep)
    }

    /// The purposes of `active` that keep every detection in object key `k`.
    /// `guard_only`: the field is not scanned, so only the guarded kinds
    /// (card, IBAN, SSN) count, as for kept values.
    pub(super) fn scan_key(&mut self, k: usize, path: &str, active: u64, guard_only: bool) -> u64 {
        let doc = self.doc;
        let raw = codec::raw(doc.src, doc.tok(k));
        if guard_only
            && raw.iter().filter(|b| b.is_ascii_digit()).count() < GUARD_MIN_DIGITS
            && raw.is_ascii()
        {
            return active;
        }
        let key = codec::string(doc.src, doc.tok(k));
        if guard_only {
            classify::detect_guarded_into(&key, self.spans);
        } else {
            classify::detect_into(&key, self.spans);
        }
        if self.spans.is_empty() {
            return active;
        }
        count_detections(self.detections, path, self.spans);
        let spans = &*self.spans;
        each_bit(active)
            .filter(|&p| {
                spans
                    .iter()
                    .all(|sp| matches!(span_decision(&self.outputs[p], sp).op, Op::Keep))
            })
            .fold(0, |m, p| m | (1 << p))
    }

    /// The output path of the value being walked: member names, `None`
    /// for an array element.
    pub(super) fn path_names(&self) -> Vec<Option<Cow<'a, [u8]>>> {
        let doc = self.doc;
        self.path
            .iter()
            .map(|&t| {
                (t != ELEMENT).then(|| match codec::string(doc.src, doc.tok(t as usize)) {
                    Cow::Borrowed(s) => Cow::Borrowed(s.as_bytes()),
                    Cow::Owned(s) => Cow::Owned(s.into_bytes()),
                })
            })
            .collect()
    }

    /// Writes `plaintext` (JSON text) encrypted under the subject's key for
    /// `kek` to output `p`; redacted when there is no such key.
    fn write_sealed(&mut self, kek: &Arc<str>, plaintext: &[u8], p: usize, string: bool) {
        let names = self.path_names();
        let purpose = self.outputs[p].name.as_str();
        let at = self.bufs[p].len();
        match self.sealer.seal(kek, purpose, segs(&names), plaintext) {
            Some(token) => write_str(&mut self.bufs[p], &token),
            None => write_unsealed(&mut self.bufs[p], string),
        }
        self.wrote(p, at);
    }

    /// Records the scalar just written to output `p` from `at` on, where
    /// the outputs' tapes are built.
    #[inline]
    fn wrote(&mut self, p: usize, at: usize) {
        if let Some(t) = self.tapes.as_deref_mut() {
            t[p].written_scalar(&self.bufs[p], at);
        }
    }

    pub(super) fn scanned(&mut self, s: &str, leaf: &Leaf, path: &str, active: u64) -> u64 {
        classify::detect_into(s, self.spans);
        self.govern_scanned(s, leaf, path, active)
    }

    /// Governs scanned text whose spans are in `self.spans`.
    pub(super) fn govern_scanned(&mut self, s: &str, leaf: &Leaf, path: &str, active: u64) -> u64 {
        count_detections(self.detections, path, self.spans);
        let mut written = 0;
        for p in each_bit(active) {
            let d = &leaf.decisions[p];
            let at = self.bufs[p].len();
            match d.op {
                Op::Drop => continue,
                Op::Redact => {
                    write_str(&mut self.bufs[p], transform::REDACTED);
                    self.wrote(p, at);
                    written |= 1 << p;
                    self.mark_pairs(p, &d.pairs);
                    continue;
                }
                Op::Keep if self.spans.is_empty() => {
                    write_str(&mut self.bufs[p], s);
                    self.wrote(p, at);
                    written |= 1 << p;
                    self.mark_pairs(p, &d.pairs);
                    continue;
                }
                _ => {}
            }
            // Spans first, in place; then the field's own action on the result.
            self.text.clear();
            let names = self.path_names();
            let path = segs(&names);
            let enc = Enc {
                sealer: self.sealer,
                purpose: self.outputs[p].name.as_str(),
                path: &path,
            };
            let (bits, words) = (&mut *self.bits, self.words);
            rewrite_spans(s, self.spans, &self.outputs[p], self.text, enc, |id| {
                let id = id as usize;
                bits[p * words + id / 64] |= 1 << (id % 64);
            });
            if matches!(d.op, Op::Keep) {
                write_str(&mut self.bufs[p], self.text);
            } else if let Op::Encrypt(kek) = &d.op {
                match enc.seal(kek, &json_string(self.text)) {
                    Some(token) => write_str(&mut self.bufs[p], &token),
                    None => write_unsealed(&mut self.bufs[p], true),
                }
            } else {
                let text = Value::String(std::mem::take(self.text));
                if let Some(out) = transform::apply(&d.op, &text) {
                    let _ = serde_json::to_writer(&mut self.bufs[p], &*out);
                }
                if let Value::String(t) = text {
                    *self.text = t;
                }
            }
            self.wrote(p, at);
            written |= 1 << p;
            self.mark_pairs(p, &d.pairs);
        }
        written
    }
}
