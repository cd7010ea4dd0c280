//! The layer rule of DESIGN.md ("Layers"), checked over the source: every
//! `crate::` path in a module of `core/src` may name only its own layer or
//! the layers below, and no modules import each other in a cycle.
//!
//! A test over the `crate::` paths rather than cargo-modules: it needs no
//! tool installed (cargo-modules builds rust-analyzer, minutes of CI), runs
//! in the `core` test binary in milliseconds, and names the file and line
//! that broke the rule. It reads paths, not name resolution: every import in
//! this crate is written from `crate::` or `super::`, and `super::` never
//! leaves its top-level module, which a test here also checks.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Top to bottom, as DESIGN.md lists them. A module may import its own layer
/// and those below it; a new module must be given a layer here. Placed where
/// DESIGN.md names no module: `client` (the HTTP client of the commands and
/// the library), `listener` (the accept loop, the first request step),
/// `snapshot` and `state` (documents and files, facts); lifecycle events
/// live in `provider` (their answers) and `config` (their rules).
const LAYERS: &[(&str, &[&str])] = &[
    (
        "commands and the library's front door",
        &["main", "cli", "embedded", "client"],
    ),
    ("wiring", &["server"]),
    ("listeners", &["imds", "admin", "flavour"]),
    (
        "request steps",
        &[
            "listener",
            "guard",
            "gate",
            "session",
            "normalise",
            "router",
            "encoder",
            "access_log",
            "fault",
            "journal",
        ],
    ),
    ("answers", &["plugin", "provider", "credentials"]),
    (
        "facts and rules",
        &["config", "instance", "snapshot", "state"],
    ),
    (
        "leaves",
        &["secret", "hex", "timefmt", "metrics", "awsjson", "changes"],
    ),
];

/// Module → the modules it imports → where each import is written.
type Graph = BTreeMap<String, BTreeMap<String, Vec<(PathBuf, usize)>>>;

/// One `crate::` reference: which file and line, and the module it names.
struct Import {
    file: PathBuf,
    line: usize,
    to: String,
}

fn source_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, found: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, found);
        } else if path.extension().is_some_and(|e| e == "rs") {
            found.push(path);
        }
    }
}

/// The top-level module a file belongs to (`provider/iam.rs` → `provider`).
fn module_of(file: &Path) -> String {
    let relative = file.strip_prefix(source_dir()).unwrap();
    let first = relative.components().next().unwrap().as_os_str();
    first.to_string_lossy().trim_end_matches(".rs").to_owned()
}

/// The source without comments, so that a path in prose is not an import.
fn code_only(text: &str) -> String {
    text.lines()
        .map(|line| match line.find("//") {
            Some(at) if !line[..at].contains('"') => &line[..at],
            _ => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The first segments of the paths after `crate::`: `crate::a::b` gives
/// `a`, `crate::{a::b, c}` gives `a` and `c` (nested groups belong to them).
fn imports(file: &Path) -> Vec<Import> {
    let code = code_only(&std::fs::read_to_string(file).unwrap());
    let mut found = Vec::new();
    let mut rest = code.as_str();
    while let Some(at) = rest.find("crate::") {
        let before = &code[..code.len() - rest.len() + at];
        let line = before.lines().count().max(1);
        rest = &rest[at + "crate::".len()..];
        let preceded_by_ident = before
            .chars()
            .last()
            .is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '$');
        if preceded_by_ident {
            continue;
        }
        let names = if let Some(group) = rest.strip_prefix('{') {
            top_level_items(group)
        } else {
            vec![leading_ident(rest)]
        };
        for to in names.into_iter().filter(|n| !n.is_empty()) {
            found.push(Import {
                file: file.to_owned(),
                line,
                to,
            });
        }
    }
    found
}

fn leading_ident(text: &str) -> String {
    text.chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect()
}

/// The first identifier of each comma-separated item of a `{…}` group.
fn top_level_items(group: &str) -> Vec<String> {
    let mut items = vec![leading_ident(group.trim_start())];
    let mut depth = 0;
    for (i, c) in group.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => break,
            '}' => depth -= 1,
            ',' if depth == 0 => items.push(leading_ident(group[i + 1..].trim_start())),
            _ => {}
        }
    }
    items
}

fn layer_of(module: &str) -> Option<usize> {
    LAYERS
        .iter()
        .position(|(_, modules)| modules.contains(&module))
}

/// Every edge between two top-level modules, with where it was written.
fn graph() -> Graph {
    let mut files = Vec::new();
    rust_files(&source_dir(), &mut files);
    let mut edges: Graph = BTreeMap::new();
    for file in files {
        let from = module_of(&file);
        if from == "lib" {
            continue;
        }
        edges.entry(from.clone()).or_default();
        for import in imports(&file) {
            if import.to != from && import.to != "self" {
                let at = (import.file, import.line);
                edges
                    .entry(from.clone())
                    .or_default()
                    .entry(import.to)
                    .or_default()
                    .push(at);
            }
        }
    }
    edges
}

fn describe(at: &[(PathBuf, usize)]) -> String {
    let (file, line) = &at[0];
    let file = file.strip_prefix(source_dir()).unwrap().display();
    format!("core/src/{file}:{line}")
}

#[test]
fn every_module_has_a_layer_and_imports_only_down() {
    let mut wrong = Vec::new();
    for (from, targets) in graph() {
        let Some(from_layer) = layer_of(&from) else {
            wrong.push(format!(
                "module `{from}` has no layer in tests/core/layers.rs"
            ));
            continue;
        };
        for (to, at) in targets {
            match layer_of(&to) {
                None => wrong.push(format!("{}: `crate::{to}` is no module with a layer", describe(&at))),
                Some(to_layer) if to_layer < from_layer => wrong.push(format!(
                    "{}: `{from}` ({}) imports `{to}`, a layer above ({}); pass a trait or a closure down instead",
                    describe(&at),
                    LAYERS[from_layer].0,
                    LAYERS[to_layer].0,
                )),
                Some(_) => {}
            }
        }
    }
    assert!(wrong.is_empty(), "layer rule broken:\n{}", wrong.join("\n"));
}

#[test]
fn no_modules_import_each_other_in_a_cycle() {
    let edges = graph();
    let mut cycles = BTreeSet::new();
    for start in edges.keys() {
        if let Some(cycle) = cycle_through(start, &edges) {
            cycles.insert(cycle.join(" → "));
        }
    }
    assert!(
        cycles.is_empty(),
        "import cycles:\n{}",
        cycles.into_iter().collect::<Vec<_>>().join("\n")
    );
}

/// The shortest path from `start` back to itself, if any (breadth first).
fn cycle_through(start: &str, edges: &Graph) -> Option<Vec<String>> {
    let mut previous: BTreeMap<&str, &str> = BTreeMap::new();
    let mut queue = std::collections::VecDeque::from([start]);
    while let Some(here) = queue.pop_front() {
        for next in edges.get(here).into_iter().flat_map(|t| t.keys()) {
            if next == start {
                // Walk back from `here` to `start`, then close the loop.
                let mut path = vec![start.to_owned()];
                let mut at = here;
                while at != start {
                    path.insert(1, at.to_owned());
                    at = previous[at];
                }
                path.push(start.to_owned());
                return Some(path);
            }
            if next != start && !previous.contains_key(next.as_str()) {
                previous.insert(next, here);
                queue.push_back(next);
            }
        }
    }
    None
}

/// How many module levels below the crate root a file's code sits:
/// `server.rs` and `plugin/mod.rs` 1, `plugin/engine.rs` 2, and a file
/// that `lib.rs` loads with `#[path]` 1.
fn module_depth(file: &Path) -> usize {
    let relative = file.strip_prefix(source_dir()).unwrap();
    let lib = std::fs::read_to_string(source_dir().join("lib.rs")).unwrap();
    let as_written = format!("#[path = \"{}\"]", relative.display());
    if lib.contains(&as_written) {
        return 1;
    }
    let components = relative.components().count();
    if file.ends_with("mod.rs") {
        components - 1
    } else {
        components
    }
}

/// `super::` is not followed by the import check, so it must not reach the
/// crate root: at most depth − 1 of them in a row. Inline `mod tests`
/// blocks (one level deeper, at the end of a file) are not read. Aliasing
/// the root (`crate as x`, `crate::{self …}`) would hide paths from the
/// check, so it is refused too.
#[test]
fn super_paths_stay_inside_their_module_and_the_root_has_no_alias() {
    let mut files = Vec::new();
    rust_files(&source_dir(), &mut files);
    let mut wrong = Vec::new();
    for file in files {
        if module_of(&file) == "lib" {
            continue;
        }
        let depth = module_depth(&file);
        let code = code_only(&std::fs::read_to_string(&file).unwrap());
        let code = without_macro_definitions(&code);
        let before_tests = code.split("mod tests").next().unwrap_or_default();
        let too_far = "super::".repeat(depth);
        for (i, line) in before_tests.lines().enumerate() {
            let aliased = line.contains("crate as ") || line.contains("crate::{self");
            if line.contains(&too_far) || aliased {
                wrong.push(format!("{}:{}: {}", file.display(), i + 1, line.trim()));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "paths the check cannot follow:\n{}",
        wrong.join("\n")
    );
}

/// The code without `macro_rules!` bodies: their `super::` is resolved
/// where the macro is invoked, not where it is written.
fn without_macro_definitions(code: &str) -> String {
    let mut kept = String::new();
    let mut rest = code;
    while let Some(at) = rest.find("macro_rules!") {
        kept.push_str(&rest[..at]);
        let body = &rest[at..];
        let mut depth = 0;
        let mut end = body.len();
        for (i, c) in body.char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        end = i + 1;
                        break;
                    }
                }
                _ => {}
            }
        }
        // Keep the line count, so that line numbers still point right.
        kept.push_str(&"\n".repeat(body[..end].matches('\n').count()));
        rest = &body[end..];
    }
    kept.push_str(rest);
    kept
}

#[test]
fn the_check_sees_imports_and_groups() {
    let dir = std::env::temp_dir().join(format!("ersatz-layers-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("probe.rs");
    std::fs::write(
        &file,
        "use crate::a::b;\n// use crate::comment;\nuse crate::{c::{d, e}, f};\nlet x = crate::g::h();\nmy_crate::i;\n",
    )
    .unwrap();
    let found: Vec<String> = imports(&file).into_iter().map(|i| i.to).collect();
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(found, ["a", "c", "f", "g"]);
}

#[test]
fn the_check_finds_a_cycle() {
    let mut edges = Graph::new();
    for (from, to) in [("a", "b"), ("b", "c"), ("c", "a"), ("c", "d")] {
        edges
            .entry(from.into())
            .or_default()
            .insert(to.into(), vec![(PathBuf::new(), 1)]);
    }
    assert_eq!(cycle_through("a", &edges).unwrap(), ["a", "b", "c", "a"]);
    assert!(cycle_through("d", &edges).is_none());
}
