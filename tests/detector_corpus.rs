//! Accuracy of the built-in detectors on the labelled corpus
//! `tests/detectors/corpus.tsv` (format described at the top of that file).
//!
//! Per detector: recall (expected span found, covered by a span that has the
//! detector) and false-positive rate (lines not labelled with the detector on
//! which some span has it: negatives plus wrong-detector hits on other
//! detectors' positives). Run `cargo test --test detector_corpus -- --nocapture`
//! to print the table.

use custos::classify::{self, Detector};

const CORPUS: &str = include_str!("detectors/corpus.tsv");
const MIN_RECALL: f64 = 0.99;
const MAX_FP_RATE: f64 = 0.005;

struct Line<'a> {
    lineno: usize,
    expected: Option<Detector>,
    tag: &'a str,
    text: String,
    /// Byte range of the marked span in `text`.
    span: Option<(usize, usize)>,
}

fn parse() -> Vec<Line<'static>> {
    let mut lines = Vec::new();
    for (i, raw) in CORPUS.lines().enumerate() {
        if raw.starts_with('#') || raw.trim().is_empty() {
            continue;
        }
        let mut cols = raw.splitn(3, '\t');
        let (label, tag, marked) = (
            cols.next().expect("a label column"),
            cols.next()
                .unwrap_or_else(|| panic!("line {}: no tag", i + 1)),
            cols.next()
                .unwrap_or_else(|| panic!("line {}: no text", i + 1)),
        );
        let expected = match label {
            "none" => None,
            name => Some(
                *Detector::ALL
                    .iter()
                    .find(|d| d.name() == name)
                    .unwrap_or_else(|| panic!("line {}: unknown detector {name}", i + 1)),
            ),
        };
        let (open, close) = ('\u{27e6}', '\u{27e7}');
        let (text, span) = match (marked.find(open), marked.find(close)) {
            (Some(a), Some(b)) if a < b => {
                let ol = open.len_utf8();
                let text = format!(
                    "{}{}{}",
                    &marked[..a],
                    &marked[a + ol..b],
                    &marked[b + close.len_utf8()..]
                );
                (text, Some((a, b - ol)))
            }
            _ => (marked.to_string(), None),
        };
        assert_eq!(
            expected.is_some(),
            span.is_some(),
            "line {}: a positive marks its span, a negative does not",
            i + 1
        );
        lines.push(Line {
            lineno: i + 1,
            expected,
            tag,
            text,
            span,
        });
    }
    lines
}

#[derive(Default, Clone, Copy)]
struct Tally {
    positives: usize,
    found: usize,
    /// Lines not labelled with this detector.
    others: usize,
    /// Negatives (`none`) on which this detector fired.
    neg_hits: usize,
    /// Other detectors' positives on which this detector fired.
    wrong_hits: usize,
}

#[test]
fn detector_accuracy_on_corpus() {
    let lines = parse();
    let mut tally = [Tally::default(); Detector::ALL.len()];
    let (mut negatives, mut negatives_hit) = (0usize, 0usize);
    let mut misses: Vec<String> = Vec::new();
    for line in &lines {
        let spans = classify::detect(&line.text);
        let fired: classify::DetectorSet = spans.iter().flat_map(|s| s.detectors.iter()).collect();
        if line.expected.is_none() {
            negatives += 1;
            if !spans.is_empty() {
                negatives_hit += 1;
            }
        }
        for d in Detector::ALL {
            let t = &mut tally[d.index()];
            if line.expected == Some(d) {
                t.positives += 1;
                let (a, b) = line.span.expect("positives have a span");
                if spans
                    .iter()
                    .any(|s| s.start <= a && s.end >= b && s.detectors.contains(d))
                {
                    t.found += 1;
                } else {
                    misses.push(format!(
                        "  miss  {:>4} {:<7} {:<14} {:?} got {:?}",
                        line.lineno,
                        d.name(),
                        line.tag,
                        line.text,
                        spans
                            .iter()
                            .map(|s| (&line.text[s.start..s.end], s.detector.name()))
                            .collect::<Vec<_>>()
                    ));
                }
            } else {
                t.others += 1;
                if fired.contains(d) {
                    if line.expected.is_none() {
                        t.neg_hits += 1;
                    } else {
                        t.wrong_hits += 1;
                    }
                    misses.push(format!(
                        "  false {:>4} {:<7} {:<14} {:?} got {:?}",
                        line.lineno,
                        d.name(),
                        line.tag,
                        line.text,
                        spans
                            .iter()
                            .map(|s| (&line.text[s.start..s.end], s.detector.name()))
                            .collect::<Vec<_>>()
                    ));
                }
            }
        }
    }
    println!();
    println!("| detector | positives | found | recall | false positives (neg + wrong detector) / lines | FP rate |");
    println!("|---|---:|---:|---:|---:|---:|");
    let mut failed = Vec::new();
    for d in Detector::ALL {
        let t = tally[d.index()];
        let recall = if t.positives == 0 {
            1.0
        } else {
            t.found as f64 / t.positives as f64
        };
        let fps = t.neg_hits + t.wrong_hits;
        let fp_rate = fps as f64 / t.others.max(1) as f64;
        println!(
            "| {} | {} | {} | {:.1}% | {} ({} + {}) / {} | {:.2}% |",
            d.name(),
            t.positives,
            t.found,
            recall * 100.0,
            fps,
            t.neg_hits,
            t.wrong_hits,
            t.others,
            fp_rate * 100.0
        );
        if recall < MIN_RECALL || fp_rate > MAX_FP_RATE {
            failed.push(d.name());
        }
    }
    println!(
        "\nnegatives with any span: {negatives_hit} / {negatives} ({:.2}%)",
        negatives_hit as f64 / negatives.max(1) as f64 * 100.0
    );
    if !misses.is_empty() {
        println!("\nmisses and false hits:");
        for m in &misses {
            println!("{m}");
        }
    }
    assert!(
        failed.is_empty(),
        "below the goals (recall >= {}%, FP <= {}%): {failed:?}",
        MIN_RECALL * 100.0,
        MAX_FP_RATE * 100.0
    );
    assert!(
        negatives_hit as f64 / negatives.max(1) as f64 <= MAX_FP_RATE,
        "negatives with a span: {negatives_hit} / {negatives}"
    );
}
