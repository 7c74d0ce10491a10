//! The card backstop: digit streams across any short punctuation, judged
//! by Luhn, issuer and grouping.

#[allow(clippy::wildcard_imports)]
use super::*;

/// Most characters between two digit groups of one card number, and most of
/// them that are not whitespace (`4111 - 1111`, `4111----1111`, `4111 | 1111`).
pub(super) const CARD_GAP_CHARS: usize = 10;

pub(super) const CARD_GAP_MARKS: usize = 4;

/// Fewest digits of a card that is a slice of a longer stream of digits, or
/// follows `+` or leading zeros (12-14 digit cards must stand alone).
pub(super) const CARD_SLICE_MIN: usize = 15;

/// One digit group of a stream: its bytes and the marks (non-whitespace
/// characters) of the gap before it.
#[derive(Clone, Copy)]
pub(super) struct CardGroup<'a> {
    pub(super) start: usize,
    pub(super) end: usize,
    pub(super) marks: &'a str,
    /// The gap before it holds a line break (a card may be wrapped, but a
    /// group on a new line does not continue the grouping before it).
    pub(super) line_break: bool,
    /// The gap before it holds a tab: a new column.
    pub(super) tab: bool,
}

/// Finds card numbers however their digits are grouped or separated: a
/// backstop that judges the digits, since a card's own checks (Luhn and an
/// issuer prefix that fits the length) are strong.
///
/// The text is cut into *streams*: digit groups separated by short gaps of
/// characters that are neither letters nor digits (at most
/// [`CARD_GAP_CHARS`] characters, at most [`CARD_GAP_MARKS`] of them not
/// whitespace). Within a stream, a *window* starts at a group (or after the
/// leading zeros of one: `004111…`), ends at a group's end and holds 12-19
/// digits; it is a card when it passes the card checks and
///
/// * its groups are a card's grouping: one separator mark throughout
///   (whitespace may vary: `41 11 11 …`, `4111|1111|…`), or groups of three
///   digits or more (`4111 1111-1111 1111`, `41111111 11111111`), so dates
///   and times (`2026-11-30 19:15:05.123456`) are not cards;
/// * it holds 15 digits or more when it is a slice of the stream, starts
///   after `+` or after leading zeros: a 12-14 digit card must be the whole
///   stream (`+49 151 12345678` is a phone, `1234-5678-9012-3456` an
///   invoice number, not a card in its last 12 digits).
///
/// Longest first from the leftmost start. Nothing else around a full-length
/// window hides it: not a number before it (`ref 1234 4111 …`, `1.4111…`,
/// `+4111…`), not letters glued to it (`US4111…`; the digits of a valid IBAN
/// are the IBAN's), not a number after it (an expiry, a CVC).
pub(super) fn scan_cards(text: &str, cands: &mut Vec<Span>) {
    let bytes = text.as_bytes();
    let mut groups: Vec<CardGroup<'_>> = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if !bytes[i].is_ascii_digit() {
            i += 1;
            continue;
        }
        groups.clear();
        let plus = text[..i].ends_with('+');
        let mut marks = "";
        let (mut line_break, mut tab) = (false, false);
        loop {
            let start = i;
            while i < bytes.len() && bytes[i].is_ascii_digit() {
                i += 1;
            }
            groups.push(CardGroup {
                start,
                end: i,
                marks,
                line_break,
                tab,
            });
            // The gap to the next group, if it is short and holds no letter.
            let (mut j, mut chars, mut nmarks) = (i, 0, 0);
            let (mut mark_from, mut mark_to) = (None, i);
            let (mut nl, mut tb) = (false, false);
            while let Some(c) = text[j..].chars().next() {
                if c.is_alphanumeric() {
                    break;
                }
                chars += 1;
                nl |= matches!(c, '\n' | '\r' | '\u{2028}' | '\u{2029}');
                tb |= c == '\t';
                if !c.is_whitespace() {
                    nmarks += 1;
                    mark_from.get_or_insert(j);
                    mark_to = j + c.len_utf8();
                }
                j += c.len_utf8();
                if chars > CARD_GAP_CHARS || nmarks > CARD_GAP_MARKS {
                    break;
                }
            }
            if chars > 0
                && chars <= CARD_GAP_CHARS
                && nmarks <= CARD_GAP_MARKS
                && bytes.get(j).is_some_and(u8::is_ascii_digit)
            {
                marks = mark_from.map_or("", |f| &text[f..mark_to]);
                line_break = nl;
                tab = tb;
                i = j;
            } else {
                break;
            }
        }
        let total: usize = groups.iter().map(|g| g.end - g.start).sum();
        if total >= 12 {
            card_windows(bytes, &groups, plus, cands);
        }
    }
}

/// Whether two gaps hold the same marks. Marks are at most
/// [`CARD_GAP_MARKS`] characters: compared inline (a call to `memcmp` per
/// pair of groups was a twentieth of the engine's time).
#[inline]
fn same_marks(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).all(|(x, y)| x == y)
}

/// The card windows of one stream of digit groups (see [`scan_cards`]);
/// `plus`: the stream follows `+`.
pub(super) fn card_windows(
    bytes: &[u8],
    groups: &[CardGroup<'_>],
    plus: bool,
    cands: &mut Vec<Span>,
) {
    let mut buf = [0u8; MAX_DIGITS];
    let mut lens = [0usize; MAX_DIGITS];
    // The group after the last card found: a card before it does not make
    // a short card a slice of a longer grouping.
    let mut after_card = usize::MAX;
    let mut g = 0;
    while g < groups.len() {
        let CardGroup {
            start: gs, end: ge, ..
        } = groups[g];
        // Starts: the group's first digit, and its first digit after leading zeros.
        let nonzero = (gs..ge).find(|&k| bytes[k] != b'0').unwrap_or(ge);
        let mut found = None;
        let starts = [Some(gs), (nonzero != gs && nonzero < ge).then_some(nonzero)];
        for start in starts.into_iter().flatten() {
            let prefixed = start != gs || (g == 0 && plus);
            let (mut n, mut best) = (0, None);
            // The longest window on one line wins over a longer one that
            // runs onto the next line (`6759 000 000 013⏎6759 …` is two
            // cards, not a 17-digit one and a rest).
            let (mut best_line, mut crossed) = (None, false);
            let mut uniform = true;
            for (l, group) in groups.iter().enumerate().skip(g) {
                let from = if l == g { start } else { group.start };
                if n + (group.end - from) > MAX_DIGITS {
                    break;
                }
                if l > g + 1 && !same_marks(group.marks, groups[g + 1].marks) {
                    uniform = false;
                }
                lens[l - g] = group.end - from;
                crossed |= l > g && group.line_break;
                for &b in &bytes[from..group.end] {
                    buf[n] = b - b'0';
                    n += 1;
                }
                let w = &lens[..=l - g];
                if n >= 12
                    && card_grouping(w, uniform)
                    && (n >= CARD_SLICE_MIN
                        || short_card_stands(groups, g, l, w, prefixed, g == after_card))
                    && iin_fits(&buf[..n])
                    && luhn_digits(&buf[..n])
                {
                    best = Some((l, group.end));
                    if !crossed {
                        best_line = best;
                    }
                }
            }
            if let Some((l, e)) = best_line.or(best) {
                found = Some((start, l, e));
                break;
            }
        }
        match found {
            Some((start, l, e)) => {
                cands.push(Span::new(start, e, Detector::Card));
                g = l + 1;
                after_card = g;
            }
            None => g += 1,
        }
    }
}

/// Are group lengths `w` (one separator mark throughout: `uniform`) a card's
/// grouping? Groups of three digits or more (`4111 1111-1111 1111`,
/// `41111111 11111111`), or two groups (`4.111111111111111`), or one mark
/// throughout with the inner groups of one length, the first and last free
/// (`41 11 11 …`, `4 111 111 …`, `55 5555 5555 5544 44`), or with lengths
/// that never grow (`4111 1111 1111 11 11`): not a list of
/// small numbers (`19,50,83,6,9,68,…`, `1, 2, 3, …`) nor a date and time
/// (`2026-11-30 19:15:05.123456`).
pub(super) fn card_grouping(w: &[usize], uniform: bool) -> bool {
    let k = w.len();
    if k <= 2 || w.iter().all(|&x| x >= 3) {
        return true;
    }
    // Or lengths that never grow (`4111 1111 1111 11 11`).
    uniform && (w[1..k - 1].iter().all(|&x| x == w[1]) || w.windows(2).all(|p| p[1] <= p[0]))
}

/// May a 12-14 digit window `g..=l` of lengths `w` stand as a card? Never
/// after `+` or leading zeros (`+49 151 12345678` is a phone). One group
/// (`30569309025904`) always. A window that starts its stream of digits or
/// follows a card found before, when it ends the stream or is followed by a
/// short group that does not continue its grouping (an expiry `12/28`, a CVC
/// `123`; a group on a new line never continues it): any grouping. Inside a
/// stream, only a card layout whose last group ends it (`4-4-4-2`, `4-6-4`,
/// `4-4-5`, `4-4-4-1`: Diners, Maestro, old Visa), or `4-4-4` that is not
/// part of a longer grouping of fours (`1234-5678-9012-3456` holds no
/// 12-digit card, `ref 6011,8474,1325,2995` neither).
pub(super) fn short_card_stands(
    groups: &[CardGroup<'_>],
    g: usize,
    l: usize,
    w: &[usize],
    prefixed: bool,
    after_card: bool,
) -> bool {
    if prefixed {
        return false;
    }
    if w.len() == 1 {
        return true;
    }
    let len = |i: usize| groups[i].end - groups[i].start;
    let last = w[w.len() - 1];
    // The group after continues the grouping when it has the length the
    // window's last two groups share (`6011,8474,1325,2995`), not a last
    // group that ended a layout (`4222 2222 222 22 12/28`).
    let repeating = w.len() >= 2 && w[w.len() - 2] == last;
    let next_ok = groups.get(l + 1).is_none_or(|nx| {
        let continues = repeating && same_marks(nx.marks, groups[l].marks) && len(l + 1) == last;
        nx.line_break || (len(l + 1) <= 4 && !continues)
    });
    // A new line starts a stream as well (`+49 30 1234567⏎305693 09025904`).
    if (g == 0 || after_card || groups[g].line_break || groups[g].tab) && next_ok {
        return true;
    }
    match w {
        [4, 4, 4, 2] | [4, 6, 4] | [4, 4, 5] | [4, 4, 4, 1] => true,
        [4, 4, 4] => {
            let marks = groups[g + 1].marks;
            let four = |i: usize| len(i) == 4;
            let before = g > 0
                && !after_card
                && !groups[g].line_break
                && four(g - 1)
                && same_marks(groups[g].marks, marks);
            let after = groups
                .get(l + 1)
                .is_some_and(|nx| !nx.line_break && four(l + 1) && same_marks(nx.marks, marks));
            !before && !after
        }
        _ => false,
    }
}
