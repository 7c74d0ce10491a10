//! `custos policy diff OLD NEW`: what a policy change changes in what each
//! purpose receives, for review (table), machines (json) and pull requests
//! (markdown).
//!
//! Reads both policies (a file, or `git:REF:PATH` through `git show`),
//! compiles them with dummy keys ([`crate::policy::diff::dummy_keys`]: what is
//! disclosed does not depend on key bytes) and prints
//! [`crate::policy::diff::diff`]. Exit 0 when nothing widens, 1 when
//! something does (0 with `--allow-widening`), 2 when either policy cannot be
//! read or has errors. Never reads secrets.

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use clap::{Args, ValueEnum};
use serde_json::json;

use super::{load_policy_text, Failure};
use crate::policy::diff::{self, dummy_keys, summary, Change, Impact};
use crate::policy::plan::{self, Compiled};

#[derive(Debug, Args)]
pub struct DiffArgs {
    /// The policy before the change: a file, or `git:REF:PATH` (e.g. `git:origin/main:policy.yaml`)
    pub old: String,
    /// The policy after the change: a file, or `git:REF:PATH`
    pub new: String,
    #[arg(long, value_enum, default_value_t = DiffFormat::Table)]
    pub format: DiffFormat,
    /// Report widening changes but exit 0
    #[arg(long)]
    pub allow_widening: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DiffFormat {
    Table,
    Json,
    Markdown,
}

/// Exit status for an unreadable or invalid policy.
const POLICY_ERROR: i32 = 2;

fn policy_error(mut f: Failure) -> Failure {
    f.code = POLICY_ERROR;
    f
}

/// Reads a policy source: `git:REF:PATH` through `git show REF:PATH` in the
/// current directory, anything else as a file.
fn read_source(source: &str) -> Result<String, Failure> {
    if let Some(rest) = source.strip_prefix("git:") {
        let (rev, path) = rest.split_once(':').ok_or_else(|| {
            policy_error(Failure::new(format!(
                "`{source}` is not `git:REF:PATH`; write e.g. git:origin/main:policy.yaml"
            )))
        })?;
        if rev.is_empty() || path.is_empty() {
            return Err(policy_error(Failure::new(format!(
                "`{source}` needs both a ref and a path; write e.g. git:origin/main:policy.yaml"
            ))));
        }
        let out = Command::new("git")
            .arg("show")
            .arg(format!("{rev}:{path}"))
            .output()
            .map_err(|e| {
                policy_error(Failure::new(format!(
                    "cannot run git for {source}: {e}; install git or pass a file"
                )))
            })?;
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            return Err(policy_error(Failure::new(format!(
                "cannot read {source}: {}; check the ref (fetch it first in CI) and the path (relative to the repository root)",
                err.trim()
            ))));
        }
        return String::from_utf8(out.stdout)
            .map_err(|_| policy_error(Failure::new(format!("{source} is not UTF-8 text"))));
    }
    std::fs::read_to_string(Path::new(source)).map_err(|e| {
        policy_error(Failure::new(format!(
            "cannot read policy file {source}: {e}; check the path"
        )))
    })
}

/// Loads and compiles a policy source with dummy keys.
///
/// # Errors
/// Unreadable source or policy errors (exit status 2).
pub fn load_for_diff(source: &str) -> Result<Compiled, Failure> {
    let text = read_source(source)?;
    let policy = load_policy_text(&text, source).map_err(policy_error)?;
    let keys = dummy_keys(&policy);
    plan::compile(Arc::new(policy), &keys)
        .map_err(|e| policy_error(Failure::new(format!("{source}: {e}"))))
}

/// Runs `custos policy diff`.
///
/// # Errors
/// Exit 2 on a policy problem, exit 1 when something widens (unless allowed).
pub fn run(args: &DiffArgs) -> Result<(), Failure> {
    let old = load_for_diff(&args.old)?;
    let new = load_for_diff(&args.new)?;
    let changes = diff::diff(&old, &new);
    let header = Header {
        old: format!("{} ({})", args.old, old.policy.id()),
        new: format!("{} ({})", args.new, new.policy.id()),
    };
    print!("{}", render(&header, &changes, args.format));
    let widening = summary(&changes).widening;
    if widening > 0 && !args.allow_widening {
        return Err(Failure::new(format!(
            "{widening} widening change{}: some purpose may receive more than before; have it reviewed, then pass --allow-widening",
            if widening == 1 { "" } else { "s" }
        )));
    }
    Ok(())
}

/// The two policies compared, as shown in the output.
pub struct Header {
    pub old: String,
    pub new: String,
}

/// Renders changes in a format.
pub fn render(header: &Header, changes: &[Change], format: DiffFormat) -> String {
    match format {
        DiffFormat::Table => table(header, changes),
        DiffFormat::Json => {
            let v = json!({
                "old": header.old,
                "new": header.new,
                "summary": summary(changes),
                "changes": changes,
            });
            let mut text = serde_json::to_string_pretty(&v).unwrap_or_default();
            text.push('\n');
            text
        }
        DiffFormat::Markdown => markdown(header, changes),
    }
}

fn summary_line(changes: &[Change]) -> String {
    let s = summary(changes);
    format!(
        "{} widening, {} narrowing, {} neutral",
        s.widening, s.narrowing, s.neutral
    )
}

fn dash(v: &Option<String>) -> String {
    v.clone().unwrap_or_else(|| "—".into())
}

/// (stream, purpose) of a group of changes; `None` for policy- or stream-wide.
type GroupKey<'a> = (Option<&'a str>, Option<&'a str>);

/// Groups of changes: (stream, purpose) in first-seen order.
fn groups(changes: &[Change]) -> Vec<(GroupKey<'_>, Vec<&Change>)> {
    let mut out: Vec<(GroupKey<'_>, Vec<&Change>)> = Vec::new();
    for c in changes {
        let key = (c.stream.as_deref(), c.purpose.as_deref());
        match out.iter_mut().find(|(k, _)| *k == key) {
            Some((_, v)) => v.push(c),
            None => out.push((key, vec![c])),
        }
    }
    out
}

fn table(header: &Header, changes: &[Change]) -> String {
    let mut out = format!(
        "policy diff\n  old: {}\n  new: {}\n{}\n",
        header.old,
        header.new,
        summary_line(changes)
    );
    if changes.is_empty() {
        out.push_str("\nno change in what any purpose receives\n");
        return out;
    }
    let mut stream: Option<Option<&str>> = None;
    for ((s, p), rows) in groups(changes) {
        if stream != Some(s) {
            stream = Some(s);
            match s {
                Some(s) => {
                    let _ = write!(out, "\nstream {s}\n");
                }
                None => out.push_str("\npolicy\n"),
            }
        }
        let _ = writeln!(
            out,
            "  {}",
            match p {
                Some(p) => format!("purpose {p}"),
                None if s.is_some() => "every purpose".into(),
                None => "invariants".into(),
            }
        );
        let mut lines: Vec<[String; 7]> = vec![[
            "IMPACT".into(),
            "WHAT".into(),
            "PATH".into(),
            "BEFORE".into(),
            "AFTER".into(),
            "DECIDED BEFORE".into(),
            "DECIDED AFTER".into(),
        ]];
        for c in &rows {
            lines.push([
                c.impact.name().to_uppercase(),
                c.kind.name().into(),
                dash(&c.path),
                dash(&c.before),
                dash(&c.after),
                dash(&c.rule_before),
                dash(&c.rule_after),
            ]);
        }
        let mut widths = [0usize; 7];
        for l in &lines {
            for (i, cell) in l.iter().enumerate() {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
        for (n, l) in lines.iter().enumerate() {
            let mut line = String::from("    ");
            for (i, cell) in l.iter().enumerate() {
                line.push_str(cell);
                if i + 1 < l.len() {
                    line.push_str(&" ".repeat(widths[i] - cell.chars().count() + 2));
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
            if n > 0 {
                let _ = writeln!(out, "      └ {}", rows[n - 1].note);
            }
        }
    }
    out
}

fn md_cell(v: &str) -> String {
    v.replace('|', "\\|").replace('\n', " ")
}

fn markdown(header: &Header, changes: &[Change]) -> String {
    let s = summary(changes);
    let mut out = format!(
        "### custos policy diff\n\n`{}` → `{}`\n\n**{}**",
        md_cell(&header.old),
        md_cell(&header.new),
        summary_line(changes)
    );
    if s.widening > 0 {
        out.push_str(
            " — :warning: some purpose may receive more than before: review the widening rows",
        );
    }
    out.push_str("\n\n");
    if changes.is_empty() {
        out.push_str("No change in what any purpose receives.\n");
        return out;
    }
    out.push_str("| impact | stream | purpose | what | path | before | after | decided before | decided after | why |\n");
    out.push_str("|---|---|---|---|---|---|---|---|---|---|\n");
    for c in changes {
        let impact = match c.impact {
            Impact::Widening => "**widening**".to_string(),
            other => other.name().to_string(),
        };
        let code = |v: &Option<String>| match v {
            Some(v) => format!("`{}`", md_cell(v)),
            None => "—".into(),
        };
        let _ = writeln!(
            out,
            "| {impact} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            md_cell(c.stream.as_deref().unwrap_or("—")),
            md_cell(c.purpose.as_deref().unwrap_or("all")),
            c.kind.name(),
            code(&c.path),
            code(&c.before),
            code(&c.after),
            md_cell(c.rule_before.as_deref().unwrap_or("—")),
            md_cell(c.rule_after.as_deref().unwrap_or("—")),
            md_cell(&c.note),
        );
    }
    out
}
