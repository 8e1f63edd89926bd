//! The module graph of `src/` flows one way: no module imports one that imports it back, and
//! the README's Layout section lists the modules so that each one uses only those below it.
//!
//! Read from the source text: every `crate::module` path outside comments (in `use` trees too)
//! is an edge from the file's top-level module to that module.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
};

type Graph = BTreeMap<String, BTreeSet<String>>;

fn src_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a file belongs to (`src/auth/jwt.rs` → `auth`); none for the crate
/// root and the binary.
fn module_of(path: &Path) -> Option<String> {
    let relative = path.strip_prefix(src_dir()).unwrap();
    let first = relative.components().next()?.as_os_str().to_str()?;
    let name = first.strip_suffix(".rs").unwrap_or(first);
    (!matches!(name, "lib" | "main" | "bin")).then(|| name.to_owned())
}

/// The source without comments (doc links name modules without depending on them).
fn code_only(text: &str) -> String {
    text.lines()
        .map(|line| match line.find("//") {
            Some(at) => &line[..at],
            None => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn identifier(text: &str) -> &str {
    let end = text
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(text.len());
    &text[..end]
}

/// The first segment of every item in the `{ … }` group that `text` opens.
fn group_heads(text: &str) -> Vec<String> {
    let mut heads = Vec::new();
    let mut depth = 0;
    let mut item_start = true;
    for (at, c) in text.char_indices() {
        match c {
            '{' => {
                depth += 1;
                if depth == 1 {
                    item_start = true;
                }
            }
            '}' => {
                depth -= 1;
                if depth == 0 {
                    break;
                }
            }
            ',' if depth == 1 => item_start = true,
            c if depth == 1 && item_start && !c.is_whitespace() => {
                item_start = false;
                let head = identifier(&text[at..]);
                if !head.is_empty() {
                    heads.push(head.to_owned());
                }
            }
            _ => {}
        }
    }
    heads
}

/// The top-level modules a file's code names through `crate::`.
fn uses(code: &str) -> BTreeSet<String> {
    let mut used = BTreeSet::new();
    for (at, _) in code.match_indices("crate::") {
        let rest = &code[at + "crate::".len()..];
        if rest.starts_with('{') {
            used.extend(group_heads(rest));
        } else {
            let head = identifier(rest);
            if !head.is_empty() {
                used.insert(head.to_owned());
            }
        }
    }
    used
}

fn module_graph() -> Graph {
    let mut files = Vec::new();
    rust_files(&src_dir(), &mut files);
    let mut graph = Graph::new();
    for file in files {
        let Some(module) = module_of(&file) else {
            continue;
        };
        let code = code_only(&std::fs::read_to_string(&file).unwrap());
        let entry = graph.entry(module.clone()).or_default();
        entry.extend(uses(&code).into_iter().filter(|used| *used != module));
    }
    // Items of the crate root (`crate::AUDIT_TARGET`) are no module.
    let modules: BTreeSet<String> = graph.keys().cloned().collect();
    for used in graph.values_mut() {
        used.retain(|name| modules.contains(name));
    }
    graph
}

/// A cycle through `start`, if there is one (depth-first search for a path back to it).
fn cycle_through(graph: &Graph, start: &str) -> Option<Vec<String>> {
    fn walk(
        graph: &Graph,
        start: &str,
        at: &str,
        path: &mut Vec<String>,
        seen: &mut BTreeSet<String>,
    ) -> bool {
        for next in graph.get(at).into_iter().flatten() {
            if next == start {
                return true;
            }
            if seen.insert(next.clone()) {
                path.push(next.clone());
                if walk(graph, start, next, path, seen) {
                    return true;
                }
                path.pop();
            }
        }
        false
    }
    let mut path = vec![start.to_owned()];
    let mut seen = BTreeSet::new();
    walk(graph, start, start, &mut path, &mut seen).then(|| {
        path.push(start.to_owned());
        path
    })
}

#[test]
fn the_module_graph_has_no_cycles() {
    let graph = module_graph();
    assert!(
        graph.len() > 10,
        "the graph was read from src/: {:?}",
        graph.keys()
    );
    let cycles: Vec<String> = graph
        .keys()
        .filter_map(|module| cycle_through(&graph, module))
        .map(|cycle| cycle.join(" → "))
        .collect();
    assert!(cycles.is_empty(), "module cycles:\n{}", cycles.join("\n"));
}

#[test]
fn the_cycle_check_finds_a_cycle() {
    let graph: Graph = [("a", "b"), ("b", "c"), ("c", "a"), ("d", "a")]
        .into_iter()
        .fold(Graph::new(), |mut graph, (from, to)| {
            graph
                .entry(from.to_owned())
                .or_default()
                .insert(to.to_owned());
            graph
        });
    assert_eq!(
        cycle_through(&graph, "a").unwrap(),
        ["a", "b", "c", "a"].map(str::to_owned)
    );
    assert_eq!(cycle_through(&graph, "d"), None);
    let code = "use crate::{\n    auth::{Viewer, x},\n    db,\n};\nfn f() { crate::error::x(); }";
    assert_eq!(
        uses(code),
        ["auth", "db", "error"].map(str::to_owned).into()
    );
}

/// The modules the README's Layout section lists, top to bottom: the lines of its list that
/// start with a module name in backticks.
fn readme_layout() -> Vec<String> {
    let readme =
        std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("README.md"))
            .unwrap();
    let section = readme
        .split("\n## Layout")
        .nth(1)
        .expect("the README has a Layout section");
    let section = section.split("\n## ").next().unwrap();
    section
        .lines()
        .filter_map(|line| line.trim_start().strip_prefix("- `"))
        .filter_map(|rest| rest.split('`').next())
        .map(|name| {
            name.trim_start_matches("src/")
                .trim_end_matches('/')
                .trim_end_matches(".rs")
                .to_owned()
        })
        .collect()
}

#[test]
fn the_readme_lists_every_module_above_the_modules_it_uses() {
    let graph = module_graph();
    let layout = readme_layout();
    let position = |module: &str| layout.iter().position(|listed| listed == module);
    let missing: Vec<&String> = graph.keys().filter(|m| position(m).is_none()).collect();
    assert!(
        missing.is_empty(),
        "modules missing from the README's Layout: {missing:?}"
    );
    let upward: Vec<String> = graph
        .iter()
        .flat_map(|(from, uses)| uses.iter().map(move |to| (from, to)))
        .filter(|(from, to)| position(to).is_some_and(|to| to < position(from).unwrap()))
        .map(|(from, to)| format!("{from} uses {to}, listed above it"))
        .collect();
    assert!(upward.is_empty(), "{}", upward.join("\n"));
}
