//! The layer order of `control/src`, checked from the source text (issue
//! 12): every `crate::<module>` path (including each item of a grouped
//! `use crate::{a, b::c}`) and every `sqlx::` / `axum::` path outside
//! comments is an import of the file's top-level module. Each module may
//! import only what its layer allows, and the graph of imports between
//! top-level modules has no cycle. A failure names the file, the line and
//! the import.
//!
//! The crate root (`lib.rs`: `App`, `serve`) is the composition root: it
//! wires every layer together, and every layer may name `crate::App` (the
//! shared state), so edges to and from it are not part of the cycle check.
//! `audit/` holds modules of different layers (pure Merkle and checkpoint
//! code that the configuration parses keys with, and the publisher that
//! queues notifications), so each of its files is a node of its own
//! (`audit::checkpoint`, `audit::publish`, ...; `audit` is its `mod.rs`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// One import: where, and of what.
#[derive(Debug, Clone)]
struct Import {
    file: String,
    line: usize,
    /// Top-level module of the file (`store`, `policy`, ... or `crate` for
    /// `lib.rs` and `main.rs`).
    from: String,
    /// A top-level module of the crate, `crate` for a root item (`App`),
    /// or an external crate (`sqlx`, `axum`).
    to: String,
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

/// The source without comments (each comment line kept as an empty line,
/// so line numbers hold).
fn code(src: &str) -> String {
    src.lines()
        .map(|l| match l.find("//") {
            Some(i) if !l[..i].contains('"') => &l[..i],
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn ident(s: &str) -> &str {
    let end = s.find(|c: char| !(c.is_alphanumeric() || c == '_')).unwrap_or(s.len());
    &s[..end]
}

/// The first path segment of each item of a `{...}` group starting at
/// `s[0] == '{'`.
fn group_items(s: &str) -> Vec<String> {
    let (mut depth, mut items, mut start) = (0usize, Vec::new(), 1usize);
    for (i, c) in s.char_indices() {
        match c {
            '{' => depth += 1,
            '}' | ',' if depth == 1 => {
                let item = ident(s[start..i].trim_start());
                if !item.is_empty() {
                    items.push(item.to_owned());
                }
                start = i + 1;
                if c == '}' {
                    break;
                }
            }
            '}' => depth -= 1,
            _ => {}
        }
    }
    items
}

/// Modules whose files are nodes of their own, with their submodules.
fn split_modules() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut out = BTreeMap::new();
    for top in SPLIT {
        let subs = std::fs::read_dir(src.join(top))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter_map(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
            .filter(|s| s != "mod")
            .collect();
        out.insert(top.to_string(), subs);
    }
    out
}

const SPLIT: [&str; 1] = ["audit"];

/// The node `crate::<rest>` names: its first segment, or for a split
/// module `top::sub` when `sub` is one of its files.
fn nodes(rest: &str, split: &BTreeMap<String, BTreeSet<String>>) -> Vec<String> {
    let top = ident(rest);
    let Some(subs) = split.get(top) else {
        return vec![top.to_owned()];
    };
    let Some(after) = rest[top.len()..].strip_prefix("::") else {
        return vec![top.to_owned()];
    };
    let names = if after.starts_with('{') {
        group_items(after)
    } else {
        vec![ident(after).to_owned()]
    };
    names
        .into_iter()
        .map(|n| {
            if subs.contains(&n) {
                format!("{top}::{n}")
            } else {
                top.to_owned()
            }
        })
        .collect()
}

/// The layer of a node (`audit::publish` is in `audit`).
fn layer(node: &str) -> &str {
    node.split("::").next().unwrap_or(node)
}

/// Every import in one file's code.
fn imports_of(file: &str, from: &str, code: &str) -> Vec<Import> {
    imports_with(file, from, code, &BTreeMap::new())
}

fn imports_with(file: &str, from: &str, code: &str, split: &BTreeMap<String, BTreeSet<String>>) -> Vec<Import> {
    let mut out = Vec::new();
    let line_of = |at: usize| code[..at].matches('\n').count() + 1;
    let mut push = |at: usize, to: &str| {
        out.push(Import {
            file: file.to_owned(),
            line: line_of(at),
            from: from.to_owned(),
            to: to.to_owned(),
        })
    };
    for (at, _) in code.match_indices("crate::") {
        if code[..at].ends_with('$') {
            continue;
        }
        let rest = &code[at + "crate::".len()..];
        let names = if rest.starts_with('{') {
            group_items(rest)
        } else {
            nodes(rest, split)
        };
        for name in names {
            // `crate::App`: an item of the root.
            let to = if name.starts_with(char::is_uppercase) {
                "crate"
            } else {
                &name
            };
            push(at, to);
        }
    }
    for external in ["sqlx", "axum"] {
        for (at, _) in code.match_indices(&format!("{external}::")) {
            let before = code[..at].chars().next_back();
            if before.is_none_or(|c| !(c.is_alphanumeric() || c == '_' || c == ':')) {
                push(at, external);
            }
        }
    }
    out
}

fn all_imports() -> Vec<Import> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let split = split_modules();
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    let mut out = Vec::new();
    for path in files {
        let rel = path.strip_prefix(&src).unwrap().to_string_lossy().replace('\\', "/");
        let mut parts = rel.trim_end_matches(".rs").split('/');
        let top = parts.next().unwrap();
        let from = match (top, parts.next()) {
            ("lib" | "main", _) => "crate".to_owned(),
            (top, Some(sub)) if split.contains_key(top) && sub != "mod" => format!("{top}::{sub}"),
            (top, _) => top.to_owned(),
        };
        let text = std::fs::read_to_string(&path).unwrap();
        out.extend(imports_with(&format!("control/src/{rel}"), &from, &code(&text), &split));
    }
    out
}

/// What each layer may import. A module not listed may import anything
/// but `sqlx` and `axum` where the rules below say so.
fn allowed(from: &str) -> Option<&'static [&'static str]> {
    Some(match from {
        "states" => &[],
        // Rows and SQL only: no policy, workflow, notification or API.
        "store" => &["states", "sqlx"],
        // Pure rules: no database, no HTTP.
        "policy" => &["auth", "config", "error", "identity", "states", "text"],
        // Minting and proxy sync: no workflow, no request types.
        "grants" => &["clock", "config", "error", "store", "states", "crate", "sqlx"],
        // Takes event values: no rows of the workflow, no workflow.
        "notify" => &[
            "clock",
            "config",
            // The pure scope preview, shown in messages about a request.
            "preview",
            "signature",
            "states",
            "store",
            "text",
            "metrics",
            "crate",
            "sqlx",
        ],
        // The API's request types.
        "requests" => &["grants", "states", "store"],
        // The state changes: everything below them, nothing of the API.
        "workflow" => &[
            "audit", "auth", "clock", "config", "error", "grants", "identity", "notify", "policy", "requests",
            "states", "store", "crate", "sqlx",
        ],
        _ => return None,
    })
}

fn violations(imports: &[Import]) -> Vec<String> {
    let mut out = Vec::new();
    for i in imports {
        let (from, to) = (layer(&i.from), layer(&i.to));
        let refused = match allowed(from) {
            Some(list) => from != to && !list.contains(&to),
            // Only the API, the console's pages (and the root that serves
            // them) speak HTTP.
            None => to == "axum" && !matches!(from, "api" | "web" | "crate"),
        };
        if refused {
            out.push(format!(
                "{}:{}: `{}` imports `{}`, which its layer may not",
                i.file, i.line, i.from, i.to
            ));
        }
    }
    out
}

/// A cycle among top-level modules (root edges left out), if any.
fn cycle(imports: &[Import]) -> Option<Vec<String>> {
    let mut graph: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for i in imports {
        if i.from != i.to && i.from != "crate" && i.to != "crate" && !matches!(i.to.as_str(), "sqlx" | "axum") {
            graph.entry(&i.from).or_default().insert(&i.to);
        }
    }
    fn visit<'a>(
        n: &'a str,
        graph: &BTreeMap<&'a str, BTreeSet<&'a str>>,
        path: &mut Vec<&'a str>,
        done: &mut BTreeSet<&'a str>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|p| *p == n) {
            let mut c: Vec<String> = path[at..].iter().map(|s| s.to_string()).collect();
            c.push(n.to_owned());
            return Some(c);
        }
        if done.contains(n) {
            return None;
        }
        path.push(n);
        for next in graph.get(n).into_iter().flatten() {
            if let Some(c) = visit(next, graph, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(n);
        None
    }
    let mut done = BTreeSet::new();
    for n in graph.keys() {
        if let Some(c) = visit(n, &graph, &mut Vec::new(), &mut done) {
            return Some(c);
        }
    }
    None
}

#[test]
fn every_module_imports_only_what_its_layer_allows() {
    let v = violations(&all_imports());
    assert!(v.is_empty(), "layer order broken:\n{}", v.join("\n"));
}

#[test]
fn there_is_no_import_cycle_between_modules() {
    let imports = all_imports();
    if let Some(c) = cycle(&imports) {
        let edges: Vec<String> = c
            .windows(2)
            .map(|w| {
                let i = imports.iter().find(|i| i.from == w[0] && i.to == w[1]).unwrap();
                format!("{} -> {} ({}:{})", w[0], w[1], i.file, i.line)
            })
            .collect();
        panic!("import cycle: {}", edges.join(", "));
    }
}

#[test]
fn the_checker_sees_grouped_nested_and_qualified_imports_but_not_comments() {
    let src = "use crate::{notify, policy::{a, b}, App};\n// crate::workflow in a comment\nlet x = crate::store::Db; sqlx::query(\"\"); y.axum_thing();\n";
    let found: Vec<(usize, String)> = imports_of("f.rs", "m", &code(src))
        .into_iter()
        .map(|i| (i.line, i.to))
        .collect();
    assert_eq!(
        found,
        vec![
            (1, "notify".to_owned()),
            (1, "policy".to_owned()),
            (1, "crate".to_owned()),
            (3, "store".to_owned()),
            (3, "sqlx".to_owned()),
        ]
    );
    let bad = imports_of("control/src/store/x.rs", "store", "use crate::policy;");
    assert_eq!(
        violations(&bad),
        vec!["control/src/store/x.rs:1: `store` imports `policy`, which its layer may not"]
    );
    let looped = [("grants", "requests"), ("requests", "grants")].map(|(from, to)| Import {
        file: "f.rs".into(),
        line: 1,
        from: from.into(),
        to: to.into(),
    });
    assert_eq!(
        cycle(&looped),
        Some(vec!["grants".into(), "requests".into(), "grants".into()])
    );
}

/// The tables whose rows and SQL belong to `store/` (one module per
/// table). Tables that one module owns alone stay with it: `web_sessions`
/// (the console's sessions) and `inbound_signatures` (the integrations'
/// replay guard).
const STORE_TABLES: [&str; 13] = [
    "access_requests",
    "votes",
    "grants",
    "outbox",
    "proxy_sightings",
    "grant_usage",
    "audit_log",
    "audit_head",
    "audit_tree",
    "audit_checkpoints",
    "audit_verified",
    "report_cursors",
    "decision_counts",
];

#[test]
fn sql_on_the_stored_tables_is_written_only_in_store() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut found = Vec::new();
    for path in files {
        let rel = path.strip_prefix(&src).unwrap().to_string_lossy().replace('\\', "/");
        if rel.starts_with("store/") {
            continue;
        }
        let text = code(&std::fs::read_to_string(&path).unwrap());
        for (n, line) in text.lines().enumerate() {
            for table in STORE_TABLES {
                for verb in ["FROM", "INTO", "UPDATE", "JOIN"] {
                    let needle = format!("{verb} {table}");
                    let at = line.find(&needle);
                    let whole_word = at.is_some_and(|i| {
                        line[i + needle.len()..]
                            .chars()
                            .next()
                            .is_none_or(|c| !(c.is_alphanumeric() || c == '_'))
                    });
                    if whole_word {
                        found.push(format!("control/src/{rel}:{}: `{needle}`", n + 1));
                    }
                }
            }
        }
    }
    assert!(
        found.is_empty(),
        "SQL on a store table outside store/:\n{}",
        found.join("\n")
    );
}
