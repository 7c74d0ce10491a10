//! Phones and SSNs: runs of digit groups and the validator-driven window
//! search over them.

#[allow(clippy::wildcard_imports)]
use super::*;

/// The most groups a window may span (`+49 (0) 30 12 34 56 78` has 8).
pub(super) const MAX_WINDOW: usize = 8;

/// The most digits a window may hold (`00` + 15 digits of E.164, or a card).
pub(super) const MAX_DIGITS: usize = 19;

/// One group of ASCII digits in a run, with what surrounds it.
#[derive(Debug, Clone, Copy)]
pub(super) struct Group {
    pub(super) start: usize,
    pub(super) end: usize,
    /// `(` right before the digits.
    pub(super) lp: bool,
    /// `)` right after the digits.
    pub(super) rp: bool,
}

impl Group {
    pub(super) fn len(&self) -> usize {
        self.end - self.start
    }
}

/// A character that may separate two digit groups of one number.
pub(super) fn is_sep(c: char) -> bool {
    matches!(
        c,
        ' ' | '\u{a0}'
            | '\u{202f}'
            | '-'
            | '.'
            | '/'
            | '('
            | ')'
            | '_'
            | ','
            | '*'
            | '\t'
            | '\n'
            | '\r'
    )
}

/// One no-break space (NBSP, narrow NBSP) is a space. A double space, a tab
/// or a line break stays itself: it separates columns and lines
/// (`0412 345 678  06 12 34 56 78` and `0412 345 678⏎06 12 34 56 78` are two
/// phones), though a number written with it throughout is one
/// (`078  05  1120`).
pub(super) fn norm_sep(s: &str) -> &str {
    if matches!(s, "\u{a0}" | "\u{202f}") {
        " "
    } else {
        s
    }
}

pub(super) fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// A run of digit groups and the text it lives in.
pub(super) struct Run<'a> {
    pub(super) text: &'a str,
    pub(super) groups: &'a [Group],
    /// A `+` right before the first group.
    pub(super) plus: bool,
    /// Where the number starts with its `+` (the first group's start without one).
    pub(super) lead: usize,
    /// The run is an international number: after `+`, or in a `wa.me/` link.
    pub(super) intl: bool,
    /// The first group is glued to a word (`DE89`, `a456`) or a decimal comma.
    pub(super) glued_before: bool,
    /// The last group is glued to a word (`123e4567`).
    pub(super) glued_after: bool,
}

/// Which detector a window search is for.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Phone,
    Ssn,
}

impl Run<'_> {
    /// The separator between group `i - 1` and group `i`.
    pub(super) fn sep(&self, i: usize) -> &str {
        &self.text[self.groups[i - 1].end..self.groups[i].start]
    }

    pub(super) fn parenthesized(&self, i: usize) -> bool {
        self.groups[i].lp && self.groups[i].rp
    }

    /// The digits of groups `f..=l` into `buf`; `None` if there are more than fit.
    pub(super) fn digits<'b>(
        &self,
        f: usize,
        l: usize,
        buf: &'b mut [u8; MAX_DIGITS],
    ) -> Option<&'b [u8]> {
        let mut n = 0;
        for g in &self.groups[f..=l] {
            for &b in &self.text.as_bytes()[g.start..g.end] {
                if n == buf.len() {
                    return None;
                }
                buf[n] = b - b'0';
                n += 1;
            }
        }
        Some(&buf[..n])
    }

    /// Does the group next to the window (`nb`, joined by separator `sep`)
    /// continue the window's grouping, so the window is a slice of a longer
    /// number? `edge` is the window group next to it, `rep` the window's own
    /// separator on that side (`None` for a one-group window).
    pub(super) fn continues(&self, nb: usize, sep: &str, edge: usize, rep: Option<&str>) -> bool {
        let glued =
            (nb == 0 && self.glued_before) || (nb == self.groups.len() - 1 && self.glued_after);
        let same = rep.is_none_or(|r| r == sep);
        if rep.is_none() && (sep == "." || sep == ",") && nb < edge {
            // `0.4111111111111111`, `0,4111111111111111`: a decimal, not a
            // number of its own.
            return true;
        }
        let (n, e) = (self.groups[nb].len(), self.groups[edge].len());
        same && (glued || n >= 4 || (n == e && n >= 2))
    }

    /// The window `f..=l` stands on its own: not glued to a word, not a slice
    /// of a longer grouping.
    ///
    /// An international phone (`+`) may be glued to letters (`tel+44…`,
    /// `…2671x`) and be followed by more groups.
    pub(super) fn stands_alone(&self, kind: Kind, f: usize, l: usize, consumed: usize) -> bool {
        let last = self.groups.len() - 1;
        let intl_phone = kind == Kind::Phone && f == 0 && self.intl;
        if f == 0 && self.glued_before && !intl_phone {
            return false;
        }
        if l == last && self.glued_after && !intl_phone {
            return false;
        }
        let multi = l > f;
        if f > 0
            && f > consumed
            && self.continues(f - 1, self.sep(f), f, multi.then(|| self.sep(f + 1)))
        {
            return false;
        }
        if l + 1 < self.groups.len()
            && !intl_phone
            && self.continues(l + 1, self.sep(l + 1), l, multi.then(|| self.sep(l)))
        {
            return false;
        }
        true
    }

    /// Parentheses inside the window pair up around whole groups, at most two
    /// of them, none of them the last group.
    pub(super) fn parens_ok(&self, f: usize, l: usize) -> bool {
        let mut count = 0;
        for i in f + 1..=l {
            let s = self.sep(i);
            let (opens, closes) = (s.matches('(').count(), s.matches(')').count());
            if opens > 1 || closes > 1 {
                return false;
            }
            if closes == 1 && !(s.starts_with(')') && self.parenthesized(i - 1)) {
                return false;
            }
            if opens == 1 && !(s.ends_with('(') && i < l && self.parenthesized(i)) {
                return false;
            }
            if closes == 1 {
                count += 1;
                if self.groups[i - 1].len() > 5 {
                    return false;
                }
            }
        }
        count <= 2
    }

    /// Byte range of the window: with its `+` or its opening parenthesis.
    pub(super) fn span(&self, f: usize, l: usize, kind: Kind) -> (usize, usize) {
        let g = &self.groups[f];
        let mut start = g.start;
        if kind == Kind::Phone {
            if f == 0 && self.plus {
                start = self.lead; // the `+`
            }
            if l > f && self.parenthesized(f) {
                start -= 1; // the `(`
            }
        }
        (start, self.groups[l].end)
    }

    pub(super) fn ssn(&self, f: usize, l: usize) -> bool {
        let mut buf = [0u8; MAX_DIGITS];
        let Some(ds) = self.digits(f, l, &mut buf) else {
            return false;
        };
        if !ssn_parts_valid(ds) {
            return false;
        }
        let lens = |want: &[usize]| {
            l - f + 1 == want.len() && (f..=l).zip(want).all(|(i, w)| self.groups[i].len() == *w)
        };
        if lens(&[3, 2, 4]) {
            let s = norm_sep(self.sep(f + 1));
            return matches!(s, "-" | " " | "  " | "." | "/" | "_" | " - ")
                && norm_sep(self.sep(f + 2)) == s;
        }
        l == f && !(f == 0 && self.intl) && ssn_keyword_before(self.text, self.groups[f].start)
    }

    pub(super) fn phone(&self, f: usize, l: usize) -> bool {
        let mut buf = [0u8; MAX_DIGITS];
        let Some(ds) = self.digits(f, l, &mut buf) else {
            return false;
        };
        let n = ds.len();
        if n < 8 || !self.parens_ok(f, l) || (f + 1..=l).any(|i| self.sep(i).contains([',', '*'])) {
            return false;
        }
        // Separators: the one after the first group (`+1 `, `(020) `, `030/`)
        // and those around parentheses are free; the others are one kind, or
        // spaces then dashes (`415 555-2671`, `495 123-45-67`).
        let mut plain = [""; MAX_WINDOW];
        let mut np = 0;
        for i in f + 2..=l {
            let s = norm_sep(self.sep(i));
            if !s.contains(['(', ')']) {
                plain[np] = s;
                np += 1;
            }
        }
        let plain = &plain[..np];
        let spaces = plain.iter().take_while(|s| **s == " ").count();
        let uniform =
            plain.iter().all(|s| *s == plain[0]) || plain[spaces..].iter().all(|s| *s == "-");
        if !uniform {
            return false;
        }
        let groups = &self.groups[f..=l];
        let k = groups.len();
        let lens_are =
            |want: &[usize]| k == want.len() && groups.iter().zip(want).all(|(g, w)| g.len() == *w);
        // `(0)` after a country code is the trunk prefix, not part of the number.
        let trunk_zero = (f + 1..=l)
            .filter(|&i| self.parenthesized(i) && self.groups[i].len() == 1 && ds_at(self, i) == 0)
            .count();
        // Groups after the first `from` have two digits or more, except `(0)`
        // and the one right after it (`+33 (0)6 12 34 56 78`).
        let is_trunk_zero = |i: usize| self.parenthesized(i) && self.groups[i].len() == 1;
        let short_tail = |from: usize| {
            (f + from..=l).any(|i| {
                self.groups[i].len() < 2 && !is_trunk_zero(i) && !(i > f && is_trunk_zero(i - 1))
            })
        };
        // International: `+` or `00`, then 8-15 digits.
        // Country code 1 (NANP) is followed by exactly ten digits.
        if f == 0 && self.intl {
            let d = n - trunk_zero;
            return (8..=15).contains(&d)
                && ds[0] != 0
                && !short_tail(2)
                && (ds[0] != 1 || d == 11);
        }
        // `00` then a country code, written without spaces (`00447700900123`).
        if k == 1 && ds[0] == 0 && ds[1] == 0 && ds[2] != 0 {
            let d = n - 2;
            return (11..=15).contains(&d) && (ds[2] != 1 || d == 11);
        }
        if k >= 2 && ds[0] == 0 && ds[1] == 0 {
            let d = n - 2 - trunk_zero;
            return (2..=5).contains(&groups[0].len())
                && (ds[2] != 1 || d == 11)
                && matches!(norm_sep(self.sep(f + 1)), " " | "-")
                && ds[2] != 0
                && (9..=15).contains(&d)
                && !short_tail(2);
        }
        // National with trunk prefix 0.
        if ds[0] == 0 && ds[1] != 0 && trunk_zero == 0 {
            if k == 1 {
                return (10..=11).contains(&n);
            }
            // 3-2-4 is the shape of a US social security number, not of a phone.
            if groups[0].len() < 2
                || short_tail(1)
                || !(9..=12).contains(&n)
                || lens_are(&[3, 2, 4])
            {
                return false;
            }
            // `05 11 2026 14 30` is a date (and a time), not a phone.
            let date = k >= 3
                && groups[0].len() == 2
                && groups[1].len() == 2
                && groups[2].len() == 4
                && ds[0] * 10 + ds[1] <= 31
                && ds[2] * 10 + ds[3] <= 31
                && matches!(ds[4..6], [1, 9] | [2, 0]);
            // `01 23 45 67 89`: pairs only in the French shape.
            return !date && (!groups.iter().all(|g| g.len() == 2) || k == 5);
        }
        // RU / KZ national with trunk prefix 8: `8 (912) 345-67-89`,
        // `8-800-555-35-35`, `8 912 345 67 89`; written compact only for
        // mobiles (`89123456789`).
        if ds[0] == 8 && n == 11 && matches!(ds[1], 3 | 4 | 7 | 8 | 9) && trunk_zero == 0 {
            if k == 1 {
                return ds[1] == 9;
            }
            // Area codes of 3-5 digits (`8 (3452) 12-34-56`), or the ten
            // digits in one group (`8 9123456789`).
            let tail_from = if groups[1].len() == 5 { 3 } else { 2 };
            if groups[0].len() == 1 && (3..=5).contains(&groups[1].len()) && !short_tail(tail_from)
            {
                return true;
            }
            if k == 2 && groups[0].len() == 1 {
                return true;
            }
        }
        if k == 1 || trunk_zero > 0 {
            return false;
        }
        // NANP: [1] (NXX) NXX-XXXX.
        let nanp_from = if groups[0].len() == 1 && ds[0] == 1 {
            1
        } else {
            0
        };
        let g = &groups[nanp_from..];
        if g.len() == 3 && g[0].len() == 3 && g[1].len() == 3 && g[2].len() == 4 {
            let d = &ds[nanp_from..];
            if d[0] >= 2 && d[3] >= 2 {
                return true;
            }
        }
        let no_parens =
            trunk_zero == 0 && (f..=l).all(|i| !self.groups[i].lp && !self.groups[i].rp);
        // ES / PL nine digits.
        if n == 9 && no_parens {
            let uniform = (f + 2..=l).all(|i| self.sep(i) == self.sep(f + 1));
            if uniform
                && ((lens_are(&[3, 3, 3]) && ds[0] >= 5)
                    || lens_are(&[3, 2, 2, 2])
                    || lens_are(&[2, 3, 2, 2]))
                && ds[0] != 0
            {
                return true;
            }
        }
        // IT mobile (3xx), IN mobile (6-9), ten digits.
        if n == 10 && no_parens {
            if ds[0] == 3 && (lens_are(&[3, 3, 4]) || lens_are(&[3, 7])) {
                return true;
            }
            if ds[0] >= 6 && lens_are(&[5, 5]) {
                return true;
            }
        }
        // BR: (11) 91234-5678, (11) 3456-7890.
        if (lens_are(&[2, 5, 4]) && ds[2] == 9 || lens_are(&[2, 4, 4])) && ds[0] != 0 {
            return self.parenthesized(f) || (self.sep(f + 1) == " " && self.sep(f + 2) == "-");
        }
        false
    }

    pub(super) fn valid(&self, kind: Kind, f: usize, l: usize, consumed: usize) -> bool {
        self.stands_alone(kind, f, l, consumed)
            && match kind {
                Kind::Phone => self.phone(f, l),
                Kind::Ssn => self.ssn(f, l),
            }
    }

    /// Every non-overlapping valid window, longest first from the leftmost
    /// start. At most `MAX_WINDOW` tries per group: linear.
    pub(super) fn search(&self, kind: Kind, det: Detector, out: &mut Vec<Span>) {
        // Digit counts a window of this kind can have: checked before anything else.
        let fits = |d: usize| match kind {
            Kind::Phone => (8..=17).contains(&d),
            Kind::Ssn => d == 9,
        };
        let n = self.groups.len();
        let mut f = 0;
        // Groups before `consumed` belong to a window found before.
        let mut consumed = 0;
        while f < n {
            // Digits in windows f..=f, f..=f+1, …, as long as they fit MAX_DIGITS.
            let mut counts = [0usize; MAX_WINDOW];
            let mut k = 0;
            let mut total = 0;
            while f + k < n && k < MAX_WINDOW {
                total += self.groups[f + k].len();
                if total > MAX_DIGITS {
                    break;
                }
                counts[k] = total;
                k += 1;
            }
            let found = (0..k)
                .rev()
                .find(|&w| fits(counts[w]) && self.valid(kind, f, f + w, consumed));
            match found {
                Some(mut w) => {
                    // An international phone takes the groups that continue
                    // it (`+44 20 7946 0958 1234`, or `…0958` glued to `1234`
                    // by an invisible character): its last digits may be
                    // there, and covering more only redacts more.
                    if kind == Kind::Phone && f == 0 && self.intl {
                        let mut total = counts[w];
                        while f + w + 1 < n
                            && total + self.groups[f + w + 1].len() <= MAX_DIGITS + 1
                            && !self.sep(f + w + 1).contains(['\n', '\r', '\t'])
                        {
                            w += 1;
                            total += self.groups[f + w].len();
                        }
                    }
                    let (s, e) = self.span(f, f + w, kind);
                    out.push(Span::new(s, e, det));
                    f += w + 1;
                    consumed = f;
                }
                None => f += 1,
            }
        }
    }
}

pub(super) fn ds_at(run: &Run<'_>, i: usize) -> u8 {
    run.text.as_bytes()[run.groups[i].start] - b'0'
}

/// Does a keyword for a social security number end within 24 bytes before `at`?
pub(super) fn ssn_keyword_before(text: &str, at: usize) -> bool {
    let from = at.saturating_sub(24);
    let window = &text.as_bytes()[from..at];
    const KEYS: [&[u8]; 5] = [b"ssn", b"ss#", b"s.s.n", b"social security", b"soc. sec"];
    KEYS.iter()
        .any(|k| window.windows(k.len()).any(|w| w.eq_ignore_ascii_case(k)))
}

/// What [`scan_numbers`] searches the runs of digits for. Each search only
/// adds its own findings: one does not change what the other finds.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Wanted {
    Phones,
    Ssn,
    PhonesAndSsn,
}

/// Cuts `text` into runs of digit groups and searches each for phones and
/// SSNs. The digits of the cards found before (`cards`, sorted byte ranges)
/// belong to no run: a run ends where a card starts, so a phone right before
/// or after a card is judged on its own (`020 7946 0958 4111111111111111`).
pub(super) fn scan_numbers(
    text: &str,
    cards: &[(usize, usize)],
    wanted: Wanted,
    cands: &mut Vec<Span>,
) {
    let bytes = text.as_bytes();
    // Cards are sorted and disjoint: the one that may hold `at` is the last
    // starting at or before it (a binary search, not a scan per digit run).
    let in_card = |at: usize| {
        let i = cards.partition_point(|&(s, _)| s <= at);
        cards[..i].last().filter(|&&(_, e)| at < e).map(|c| c.1)
    };
    let mut groups: Vec<Group> = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if !bytes[i].is_ascii_digit() {
            i += 1;
            continue;
        }
        if let Some(end) = in_card(i) {
            i = end;
            continue;
        }
        // A new run starts at `i` (the byte before is not a digit).
        groups.clear();
        let run_start = i;
        loop {
            let start = i;
            while i < bytes.len() && bytes[i].is_ascii_digit() {
                i += 1;
            }
            let lp = start > 0 && bytes[start - 1] == b'(';
            let rp = bytes.get(i) == Some(&b')');
            groups.push(Group {
                start,
                end: i,
                lp,
                rp,
            });
            // Up to three separator characters, then a digit continues the run.
            let mut j = i;
            let mut k = 0;
            while k < 3 {
                match text[j..].chars().next() {
                    Some(c) if is_sep(c) => {
                        j += c.len_utf8();
                        k += 1;
                    }
                    _ => break,
                }
            }
            if k > 0 && bytes.get(j).is_some_and(u8::is_ascii_digit) && in_card(j).is_none() {
                i = j;
            } else {
                break;
            }
        }
        // `+44 …`, and `+ 44 …` with one space after the `+`.
        let head_text = &text[..run_start];
        let lead = if head_text.ends_with('+') {
            run_start - 1
        } else if head_text.ends_with("+ ") && bytes[run_start] != b'0' {
            // `+ 020 7946 0958` is a list bullet before a national number.
            run_start - 2
        } else {
            run_start
        };
        let plus = lead < run_start;
        if plus && lead > 0 && bytes[lead - 1] == b'(' {
            groups[0].lp = true; // `(+49) 30 12345678`
        }
        let head = &bytes[..run_start];
        let intl =
            plus || head.len() >= 6 && head[head.len() - 6..].eq_ignore_ascii_case(b"wa.me/");
        let mut back = text[..lead].chars().rev();
        let prev = back.next();
        // After `+` the number is international whatever precedes it (`tel+44…`).
        let glued_before = !plus
            && (prev.is_some_and(is_word_char)
                || (prev == Some(',') && back.next().is_some_and(|c| c.is_ascii_digit())));
        let last_end = groups[groups.len() - 1].end;
        let glued_after = text[last_end..].chars().next().is_some_and(is_word_char);
        let run_digits: usize = groups.iter().map(Group::len).sum();
        let run = Run {
            text,
            groups: &groups,
            plus,
            lead,
            intl,
            glued_before,
            glued_after,
        };
        if run_digits < 8 {
            i = last_end.max(i);
            continue;
        }
        if wanted != Wanted::Phones {
            run.search(Kind::Ssn, Detector::UsSsn, cands);
        }
        if wanted != Wanted::Ssn {
            run.search(Kind::Phone, Detector::Phone, cands);
        }
        i = last_end.max(i);
    }
}
