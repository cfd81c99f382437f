//! The layer rules of docs/architecture.md, checked on the source: every
//! `crate::` path in `src/` may name only a top-level module of a lower
//! layer (so no two modules import each other, directly or round a
//! circle); no source file is over 800 lines and no function over 120.
//! The table below is the one in docs/architecture.md: change both.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The layers, lowest first; a module may import only the modules of the
/// layers before its own.
const LAYERS: &[(&str, &[&str])] = &[
    ("records", &["domain"]),
    ("settings and time", &["clock", "config"]),
    ("support", &["telemetry", "shutdown", "crypto"]),
    ("storage", &["store"]),
    ("metrics", &["metrics"]),
    ("privacy features", &["privacy"]),
    ("flow engine", &["flow"]),
    ("sharing", &["integrations"]),
    ("outbox", &["outbox"]),
    ("inbox worker", &["inbox"]),
    ("campaigns", &["campaign"]),
    ("offboarding", &["offboard"]),
    ("operators", &["operators"]),
    ("application state", &["state"]),
    ("HTTP support", &["http"]),
    ("HTTP surfaces", &["webhook", "health", "admin", "console"]),
    ("reload", &["reload"]),
    ("wiring", &["startup"]),
    ("local chat", &["chat"]),
];

const MAX_FILE_LINES: usize = 800;
const MAX_FN_LINES: usize = 120;

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|(_, mods)| mods.contains(&module))
}

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .expect("src/ is readable")
        .map(|e| e.expect("directory entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The file's top-level module (`src/store/redis/inbox.rs` → `store`);
/// `None` for the crate root and the binary.
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).expect("under src/");
    let first = rel.components().next()?.as_os_str().to_str()?.to_owned();
    let name = first.strip_suffix(".rs").unwrap_or(&first).to_owned();
    (name != "lib" && name != "main").then_some(name)
}

/// The text with comments and the contents of string and char literals
/// blanked out (line structure kept), so that only code is matched.
fn code_only(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i..].starts_with(b"//") {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if b[i..].starts_with(b"/*") {
            while i < b.len() && !b[i..].starts_with(b"*/") {
                out.push(if b[i] == b'\n' { b'\n' } else { b' ' });
                i += 1;
            }
            i += 2;
        } else if b[i] == b'r' && (b[i..].starts_with(b"r\"") || b[i..].starts_with(b"r#")) {
            let hashes = b[i + 1..].iter().take_while(|c| **c == b'#').count();
            if b.get(i + 1 + hashes) != Some(&b'"') {
                out.push(b[i]);
                i += 1;
                continue;
            }
            let close: Vec<u8> = std::iter::once(b'"')
                .chain(std::iter::repeat_n(b'#', hashes))
                .collect();
            out.extend_from_slice(b"\"\"");
            i += 2 + hashes;
            while i < b.len() && !b[i..].starts_with(&close) {
                if b[i] == b'\n' {
                    out.push(b'\n');
                }
                i += 1;
            }
            i += close.len();
        } else if b[i] == b'"' {
            out.push(b'"');
            i += 1;
            while i < b.len() && b[i] != b'"' {
                if b[i] == b'\\' {
                    i += 1;
                }
                if b.get(i) == Some(&b'\n') {
                    out.push(b'\n');
                }
                i += 1;
            }
            out.push(b'"');
            i += 1;
        } else if b[i] == b'\'' && b.get(i + 2) == Some(&b'\'') {
            out.extend_from_slice(b"' '");
            i += 3;
        } else if b[i] == b'\'' && b.get(i + 1) == Some(&b'\\') {
            let end = b[i + 2..]
                .iter()
                .position(|c| *c == b'\'')
                .map_or(b.len(), |p| i + 3 + p);
            out.extend_from_slice(b"' '");
            i = end;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn ident_at(s: &str) -> &str {
    let end = s
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(s.len());
    &s[..end]
}

/// The top-level modules a file's code names through `crate::`, with the
/// line of each mention; `use crate::{a::X, b}` names `a` and `b`.
fn imports(code: &str) -> Vec<(String, usize)> {
    let mut found = Vec::new();
    for (at, _) in code.match_indices("crate::") {
        if at > 0 && code[..at].ends_with(|c: char| c.is_ascii_alphanumeric() || c == '_') {
            continue;
        }
        let line = code[..at].matches('\n').count() + 1;
        let rest = &code[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 0usize;
            let mut start = true;
            for (i, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => start = true,
                    c if c.is_whitespace() => {}
                    _ if start && depth == 0 => {
                        found.push((ident_at(&group[i..]).to_owned(), line));
                        start = false;
                    }
                    _ => start = false,
                }
            }
        } else {
            found.push((ident_at(rest).to_owned(), line));
        }
    }
    found
}

fn source_files() -> (PathBuf, Vec<PathBuf>) {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    (src, files)
}

#[test]
fn every_module_imports_only_the_layers_below_it() {
    let (src, files) = source_files();
    let mut broken = Vec::new();
    let mut graph: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for file in &files {
        let Some(module) = module_of(&src, file) else {
            continue;
        };
        let Some(own) = layer_of(&module) else {
            broken.push(format!(
                "src/{module}: a module in no layer (add it to docs/architecture.md and to LAYERS in tests/checks/architecture.rs)"
            ));
            continue;
        };
        let text = std::fs::read_to_string(file).expect("readable source");
        for (target, line) in imports(&code_only(&text)) {
            if target == module || target == "self" || target == "super" {
                continue;
            }
            let place = format!(
                "{}:{line}",
                file.strip_prefix(&src).expect("under src").display()
            );
            graph
                .entry(module.clone())
                .or_default()
                .entry(target.clone())
                .or_insert(place.clone());
            match layer_of(&target) {
                Some(theirs) if theirs < own => {}
                Some(theirs) => broken.push(format!(
                    "src/{place}: `{module}` ({}) may not import `crate::{target}` ({}): it is not below",
                    LAYERS[own].0, LAYERS[theirs].0
                )),
                None => broken.push(format!(
                    "src/{place}: `crate::{target}` is not a module of any layer"
                )),
            }
        }
    }
    assert!(
        broken.is_empty(),
        "imports against the layer rules:\n{}",
        broken.join("\n")
    );
    // The layer rule already rules circles out; this says so independently.
    for (module, targets) in &graph {
        for (target, place) in targets {
            if let Some(back) = reaches(&graph, target, module) {
                panic!("a circle: `{module}` imports `{target}` (src/{place}) and {back}");
            }
        }
    }
}

/// Whether `from` reaches `to` through the import graph; the path if so.
fn reaches(
    graph: &BTreeMap<String, BTreeMap<String, String>>,
    from: &str,
    to: &str,
) -> Option<String> {
    let mut seen = std::collections::BTreeSet::new();
    let mut stack = vec![(from.to_owned(), format!("`{from}`"))];
    while let Some((at, path)) = stack.pop() {
        for next in graph.get(&at).into_iter().flat_map(|t| t.keys()) {
            let path = format!("{path} -> `{next}`");
            if next == to {
                return Some(path);
            }
            if seen.insert(next.clone()) {
                stack.push((next.clone(), path));
            }
        }
    }
    None
}

#[test]
fn no_source_file_is_over_800_lines_and_no_function_over_120() {
    let (src, files) = source_files();
    let mut long = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).expect("readable source");
        let name = file
            .strip_prefix(&src)
            .expect("under src")
            .display()
            .to_string();
        let lines = text.lines().count();
        let test_file = name.ends_with("_tests.rs") || name.ends_with("/tests.rs");
        if lines > MAX_FILE_LINES && !test_file {
            long.push(format!(
                "src/{name}: {lines} lines (at most {MAX_FILE_LINES})"
            ));
        }
        for (function, start, length) in functions(&code_only(&text)) {
            if length > MAX_FN_LINES {
                long.push(format!(
                    "src/{name}:{start}: fn {function} is {length} lines (at most {MAX_FN_LINES})"
                ));
            }
        }
    }
    assert!(long.is_empty(), "too long:\n{}", long.join("\n"));
}

/// Each function with a body: its name, first line and length in lines.
fn functions(code: &str) -> Vec<(String, usize, usize)> {
    let lines: Vec<&str> = code.lines().collect();
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let Some(at) = fn_keyword(line) else {
            continue;
        };
        let name = ident_at(line[at + 3..].trim_start()).to_owned();
        let mut depth = 0i64;
        let mut opened = false;
        for (j, l) in lines.iter().enumerate().skip(i) {
            let from = if j == i { at } else { 0 };
            for c in l[from..].chars() {
                match c {
                    '{' => {
                        depth += 1;
                        opened = true;
                    }
                    '}' => depth -= 1,
                    ';' if !opened && depth == 0 => break,
                    _ => {}
                }
            }
            if !opened && l[from..].contains(';') {
                break;
            }
            if opened && depth <= 0 {
                out.push((name.clone(), i + 1, j - i + 1));
                break;
            }
        }
    }
    out
}

/// Where `fn ` starts an item on this line (not `Fn(` or a word ending in fn).
fn fn_keyword(line: &str) -> Option<usize> {
    let at = line.find("fn ")?;
    let before = &line[..at];
    let ok = before.trim().is_empty()
        || before.split_whitespace().all(|w| {
            [
                "pub",
                "pub(crate)",
                "pub(super)",
                "async",
                "const",
                "unsafe",
                "extern",
            ]
            .contains(&w)
                || w.starts_with("pub(")
        });
    ok.then_some(at)
}

#[test]
fn the_checker_sees_grouped_imports_and_ignores_comments_and_strings() {
    let code = code_only(
        "use crate::{config::A, store::{B, C}};\n// crate::admin\nlet s = \"crate::console\";\nfn f() { crate::flow::x(); }\n",
    );
    let names: Vec<String> = imports(&code).into_iter().map(|(m, _)| m).collect();
    assert_eq!(names, ["config", "store", "flow"]);
    let fns = functions("fn a() {\n  if x {\n  }\n}\nfn b();\n");
    assert_eq!(fns, [("a".to_owned(), 1, 4)]);
}
