//! The configuration reference, generated from the declarations: the docs' table
//! (`storefront config --markdown`) and the list that ends `storefront --help`.

use std::fmt::Write;

use clap::{Arg, Args};

use super::{AdminPassword, Config, Logging};

/// One variable, as its declaration describes it.
struct Variable {
    heading: String,
    name: String,
    /// `None` when the variable has no default (unset means "none").
    default: Option<String>,
    allowed: String,
    what: String,
}

/// Every variable, grouped by concern, in declaration order.
fn variables() -> Vec<Variable> {
    let command = AdminPassword::augment_args(Logging::augment_args(Config::augment_args(
        super::declarations(),
    )));
    command.get_arguments().filter_map(variable).collect()
}

fn variable(arg: &Arg) -> Option<Variable> {
    let name = arg.get_env()?.to_str()?.to_owned();
    let default = arg
        .get_default_values()
        .first()
        .and_then(|v| v.to_str())
        .filter(|v| !v.is_empty())
        .map(str::to_owned);
    let allowed = arg
        .get_possible_values()
        .iter()
        .map(|v| v.get_name().to_owned())
        .collect::<Vec<_>>()
        .join(", ");
    // clap keeps the first paragraph without its final period as the short help.
    let mut what = arg
        .get_long_help()
        .or(arg.get_help())
        .map(|h| {
            h.to_string()
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default();
    if !what.ends_with('.') {
        what.push('.');
    }
    Some(Variable {
        heading: arg.get_help_heading().unwrap_or("Other").to_owned(),
        name,
        default,
        allowed,
        what,
    })
}

/// The variables grouped under their headings, in order.
fn grouped() -> Vec<(String, Vec<Variable>)> {
    let mut groups: Vec<(String, Vec<Variable>)> = Vec::new();
    for variable in variables() {
        match groups.iter_mut().find(|(h, _)| *h == variable.heading) {
            Some((_, members)) => members.push(variable),
            None => groups.push((variable.heading.clone(), vec![variable])),
        }
    }
    groups
}

/// The names of every declared variable.
pub fn names() -> Vec<String> {
    variables().into_iter().map(|v| v.name).collect()
}

/// The reference as Markdown: a `###` heading and a table per concern.
pub fn markdown() -> String {
    let cell = |text: &str| text.replace('|', "\\|");
    let mut out = String::new();
    for (i, (heading, members)) in grouped().iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        let _ = writeln!(out, "### {heading}\n");
        out.push_str("| Variable | Default | Allowed | What it does |\n|---|---|---|---|\n");
        for v in members {
            let default = v
                .default
                .as_deref()
                .map_or_else(|| "none".to_owned(), |d| format!("`{d}`"));
            let _ = writeln!(
                out,
                "| `{}` | {} | {} | {} |",
                v.name,
                cell(&default),
                cell(&v.allowed),
                cell(&v.what)
            );
        }
    }
    out
}

/// The reference as plain text for a terminal, wrapped to 100 columns.
pub fn text() -> String {
    let plain = |text: &str| text.replace('`', "");
    let mut out = String::from(
        "Environment variables (also read from .env in the working directory; a blank value \
         counts as unset):\n",
    );
    for (heading, members) in grouped() {
        let _ = writeln!(out, "\n{heading}:");
        for v in members {
            let default = v.default.as_deref().unwrap_or("none");
            let _ = writeln!(
                out,
                "  {}  [default: {}]  [allowed: {}]",
                v.name,
                default,
                plain(&v.allowed)
            );
            wrap(&mut out, &plain(&v.what), 6, 100);
        }
    }
    out
}

/// Appends `text` wrapped at `width` columns, each line indented by `indent` spaces.
fn wrap(out: &mut String, text: &str, indent: usize, width: usize) {
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && indent + line.len() + 1 + word.len() > width {
            let _ = writeln!(out, "{:indent$}{line}", "");
            line.clear();
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        let _ = writeln!(out, "{:indent$}{line}", "");
    }
}
