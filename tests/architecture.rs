//! The crate's shape, checked (ARCHITECTURE.md, "Rules the build checks"):
//!
//! - no import cycle between the top-level modules of `src/`, nor between
//!   the files of one module;
//! - no source file over [`MAX_CODE_LINES`] lines of code outside tests.
//!
//! The dependency graph is read from the source text: every `use` tree and
//! every path that starts with `crate::`, `super::`, `self::` or the name of
//! a child module. Comments, string literals and `#[cfg(test)]` items are
//! blanked first, so tests may reach anywhere. A module's own file
//! (`mod.rs`, or `foo.rs` beside `foo/`) is its front door: its `pub use`
//! re-exports are not dependencies, everything else it uses is.
//!
//! With `PGSHADOW_ARCH_REPORT=1` the test also prints every graph's edges.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// Lines of code (not blank, not comment, outside `#[cfg(test)]`) a source
/// file may hold.
const MAX_CODE_LINES: usize = 600;

type ModPath = Vec<String>;

struct SourceFile {
    path: PathBuf,
    module: ModPath,
    /// Comments and literals blanked, test items removed; newlines kept.
    code: String,
}

#[test]
fn the_crate_has_no_import_cycles_and_no_overlong_files() {
    let files = read_crate(Path::new(env!("CARGO_MANIFEST_DIR")).join("src").as_path());
    let modules: BTreeSet<ModPath> = files.iter().map(|f| f.module.clone()).collect();

    let mut problems = Vec::new();
    for file in &files {
        let lines = code_lines(&file.code);
        if lines > MAX_CODE_LINES {
            problems.push(format!(
                "{} has {lines} lines of code outside tests (at most {MAX_CODE_LINES})",
                file.path.display()
            ));
        }
    }

    let graphs = dependency_graphs(&files, &modules);
    let report = std::env::var_os("PGSHADOW_ARCH_REPORT").is_some();
    for (level, graph) in &graphs {
        if report {
            for ((from, to), at) in graph {
                println!("{}: {from} -> {to}   ({at})", name_of(level));
            }
        }
        for cycle in cycles(graph) {
            let mut text = format!(
                "import cycle between the files of `{}`: {}",
                name_of(level),
                cycle.join(", ")
            );
            for ((from, to), at) in graph {
                if cycle.contains(from) && cycle.contains(to) {
                    text.push_str(&format!("\n    {from} -> {to}   ({at})"));
                }
            }
            problems.push(text);
        }
    }

    assert!(
        problems.is_empty(),
        "the crate's shape breaks ARCHITECTURE.md's rules:\n{}",
        problems.join("\n")
    );
}

/// The checker itself: a cycle through `super::`, a `crate::` path and a
/// child module named bare is found, a re-export is not a dependency, and
/// comments, strings and tests are not read.
#[test]
fn the_checker_finds_cycles_through_every_kind_of_path_and_ignores_tests() {
    let file = |path: &str, module: &[&str], text: &str| SourceFile {
        path: PathBuf::from(path),
        module: module.iter().map(|s| s.to_string()).collect(),
        code: clean(text),
    };
    let files = vec![
        file("a/mod.rs", &["a"], "pub use x::Thing;\nmod x;\nmod y;\n"),
        file("a/x.rs", &["a", "x"], "use super::y::Other;\n"),
        file(
            "a/y.rs",
            &["a", "y"],
            "fn f() { crate::a::x::g(); }\n// crate::b::h\nconst S: &str = \"crate::b::h\";\n\
             #[cfg(test)]\nmod tests { use crate::b::h; }\n",
        ),
        file("b/mod.rs", &["b"], "use crate::c::{d::{self, E}, F};\n"),
        file("c/mod.rs", &["c"], "pub fn k() { d::m(); }\nmod d;\n"),
        file("c/d.rs", &["c", "d"], "fn m() { super::super::b::n(); }\n"),
        file(
            "c/e.rs",
            &["c", "e"],
            "pub mod inner { use super::Q; }\nstruct Q;\n",
        ),
    ];
    let modules: BTreeSet<ModPath> = files.iter().map(|f| f.module.clone()).collect();
    let graphs = dependency_graphs(&files, &modules);

    let a = &graphs[&vec!["a".to_string()]];
    assert_eq!(cycles(a), vec![vec!["x".to_string(), "y".to_string()]]);
    assert!(!a.keys().any(|(from, _)| from == "mod.rs"), "{a:?}");

    let root = &graphs[&Vec::new()];
    assert_eq!(cycles(root), vec![vec!["b".to_string(), "c".to_string()]]);
    assert!(!root.contains_key(&("a".to_string(), "b".to_string())));

    let c = &graphs[&vec!["c".to_string()]];
    assert!(c.contains_key(&("mod.rs".to_string(), "d".to_string())));
    assert!(
        !c.keys().any(|(from, _)| from == "e"),
        "inline module's super is its file: {c:?}"
    );
    assert_eq!(
        test_module_declarations(&vec!["a".to_string()], "#[cfg(test)]\nmod tests;\nmod x;\n"),
        vec![vec!["a".to_string(), "tests".to_string()]]
    );
    assert_eq!(
        code_lines(&clean(
            "fn a() {}\n\n// note\n/* x\n y */\nlet s = \"\n\";\n"
        )),
        3
    );
}

fn name_of(level: &ModPath) -> String {
    if level.is_empty() {
        "crate".to_string()
    } else {
        level.join("::")
    }
}

/// Every `.rs` file under `src/` but `main.rs` (the binary's own crate),
/// with its module path; files of `#[cfg(test)] mod name;` left out.
fn read_crate(src: &Path) -> Vec<SourceFile> {
    let mut paths = Vec::new();
    walk(src, &mut paths);
    paths.sort();
    let mut test_modules: BTreeSet<ModPath> = BTreeSet::new();
    let mut files: Vec<SourceFile> = paths
        .into_iter()
        .filter_map(|path| {
            let relative = path.strip_prefix(src).ok()?.to_path_buf();
            let module = module_of(&relative)?;
            let blanked = blank_comments_and_literals(&fs::read_to_string(&path).ok()?);
            test_modules.extend(test_module_declarations(&module, &blanked));
            Some(SourceFile {
                path: relative,
                module,
                code: without_tests(&blanked),
            })
        })
        .collect();
    files.retain(|f| !test_modules.iter().any(|t| f.module.starts_with(t)));
    files
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            walk(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn module_of(relative: &Path) -> Option<ModPath> {
    let mut parts: Vec<String> = relative
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let last = parts.pop()?;
    let stem = last.strip_suffix(".rs")?;
    match (parts.is_empty(), stem) {
        (true, "main") => None,
        (true, "lib") => Some(Vec::new()),
        (_, "mod") => Some(parts),
        _ => {
            parts.push(stem.to_string());
            Some(parts)
        }
    }
}

/// `#[cfg(test)] mod name;` in a file (comments and literals blanked):
/// the module path of `name`.
fn test_module_declarations(module: &ModPath, code: &str) -> Vec<ModPath> {
    let mut out = Vec::new();
    let mut rest = code;
    while let Some(at) = rest.find("#[cfg(test)]") {
        rest = &rest[at + "#[cfg(test)]".len()..];
        let mut tokens = tokens(rest.split(';').next().unwrap_or(""));
        tokens.retain(|t| *t != Token::Newline);
        if let [Token::Ident(m), Token::Ident(name)] = tokens.as_slice() {
            if m == "mod" {
                let mut path = module.clone();
                path.push(name.clone());
                out.push(path);
            }
        }
    }
    out
}

/// Comments and literals blanked, `#[cfg(test)]` items and inner
/// `#![cfg(test)]` files removed.
fn clean(text: &str) -> String {
    without_tests(&blank_comments_and_literals(text))
}

/// Blanked code without its `#[cfg(test)]` items (all of it for a file
/// that starts with `#![cfg(test)]`).
fn without_tests(code: &str) -> String {
    if code.trim_start().starts_with("#![cfg(test)]") {
        return code
            .chars()
            .map(|c| if c == '\n' { '\n' } else { ' ' })
            .collect();
    }
    remove_test_items(code)
}

/// Replaces comments by spaces and the insides of string and char literals
/// by `#`, keeping every newline, so line numbers and code lines survive.
fn blank_comments_and_literals(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    let blank = |c: char| if c == '\n' { '\n' } else { ' ' };
    let fill = |c: char| if c == '\n' { '\n' } else { '#' };
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        let prev_ident = i > 0 && (chars[i - 1].is_alphanumeric() || chars[i - 1] == '_');
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                out.push(' ');
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    out.push_str("  ");
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    out.push_str("  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    out.push(blank(chars[i]));
                    i += 1;
                }
            }
        } else if !prev_ident && (c == 'r' || (c == 'b' && next == Some('r'))) && {
            let start = if c == 'b' { i + 2 } else { i + 1 };
            let hashes = chars[start.min(chars.len())..]
                .iter()
                .take_while(|&&h| h == '#')
                .count();
            chars.get(start + hashes) == Some(&'"')
        } {
            let start = if c == 'b' { i + 2 } else { i + 1 };
            let hashes = chars[start..].iter().take_while(|&&h| h == '#').count();
            for &ch in &chars[i..start + hashes + 1] {
                out.push(ch);
            }
            i = start + hashes + 1;
            loop {
                if i >= chars.len() {
                    break;
                }
                if chars[i] == '"'
                    && chars[i + 1..]
                        .iter()
                        .take(hashes)
                        .filter(|&&h| h == '#')
                        .count()
                        == hashes
                {
                    out.push('"');
                    i += 1 + hashes;
                    (0..hashes).for_each(|_| out.push('#'));
                    break;
                }
                out.push(fill(chars[i]));
                i += 1;
            }
        } else if c == '"' {
            out.push('"');
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                if chars[i] == '\\' && i + 1 < chars.len() {
                    out.push('#');
                    i += 1;
                }
                out.push(fill(chars[i]));
                i += 1;
            }
            out.push('"');
            i += 1;
        } else if c == '\'' && !prev_ident {
            // A char literal ('x', '\n', '\u{..}') or a lifetime ('a).
            let close = if next == Some('\\') {
                chars[i + 2..]
                    .iter()
                    .position(|&ch| ch == '\'')
                    .map(|p| i + 2 + p)
            } else if chars.get(i + 2) == Some(&'\'') {
                Some(i + 2)
            } else {
                None
            };
            match close {
                Some(end) => {
                    out.push_str("'#'");
                    i = end + 1;
                }
                None => {
                    out.push('\'');
                    i += 1;
                }
            }
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

/// Blanks every item that follows `#[cfg(test)]`: up to its `;` or its
/// balanced `{ … }` block.
fn remove_test_items(code: &str) -> String {
    let mut out: Vec<char> = code.chars().collect();
    let text: String = out.iter().collect();
    let mut from = 0;
    while let Some(found) = text[from..].find("#[cfg(test)]") {
        let start_byte = from + found;
        let start = text[..start_byte].chars().count();
        let mut i = start + "#[cfg(test)]".len();
        let mut depth = 0i32;
        while i < out.len() {
            match out[i] {
                '(' | '[' => depth += 1,
                ')' | ']' => depth -= 1,
                ';' if depth == 0 => break,
                '{' if depth == 0 => {
                    let mut braces = 0;
                    while i < out.len() {
                        match out[i] {
                            '{' => braces += 1,
                            '}' => {
                                braces -= 1;
                                if braces == 0 {
                                    break;
                                }
                            }
                            _ => {}
                        }
                        i += 1;
                    }
                    break;
                }
                _ => {}
            }
            i += 1;
        }
        let end = (i + 1).min(out.len());
        for ch in &mut out[start..end] {
            if *ch != '\n' {
                *ch = ' ';
            }
        }
        from = start_byte + "#[cfg(test)]".len();
    }
    out.into_iter().collect()
}

fn code_lines(code: &str) -> usize {
    code.lines().filter(|l| !l.trim().is_empty()).count()
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Ident(String),
    Path,
    Open,
    Close,
    Comma,
    Star,
    Semi,
    Newline,
    Other,
}

fn tokens(code: &str) -> Vec<Token> {
    let chars: Vec<char> = code.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_alphabetic() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            out.push(Token::Ident(chars[start..i].iter().collect()));
            continue;
        }
        out.push(match c {
            ':' if chars.get(i + 1) == Some(&':') => {
                i += 1;
                Token::Path
            }
            '{' => Token::Open,
            '}' => Token::Close,
            ',' => Token::Comma,
            '*' => Token::Star,
            ';' => Token::Semi,
            '\n' => Token::Newline,
            c if c.is_whitespace() => {
                i += 1;
                continue;
            }
            _ => Token::Other,
        });
        i += 1;
    }
    out
}

/// A path one file names, as written, with the line it is on and whether
/// it is a `pub use` re-export.
struct Named {
    segments: Vec<String>,
    line: usize,
    reexport: bool,
    /// The inline `mod name { … }` blocks the path is written in.
    inline: Vec<String>,
}

fn named_paths(code: &str) -> Vec<Named> {
    let all = tokens(code);
    let mut line = 1;
    let mut out = Vec::new();
    let mut i = 0;
    // Significant tokens only, each with its line.
    let mut toks = Vec::new();
    for t in all {
        if t == Token::Newline {
            line += 1;
        } else {
            toks.push((t, line));
        }
    }
    // Inline modules open around the current token: (name, brace depth).
    let mut inline: Vec<(String, usize)> = Vec::new();
    let mut depth = 0usize;
    while i < toks.len() {
        match &toks[i].0 {
            Token::Ident(word) if word == "mod" => {
                if let (Some((Token::Ident(name), _)), Some((Token::Open, _))) =
                    (toks.get(i + 1), toks.get(i + 2))
                {
                    inline.push((name.clone(), depth));
                    depth += 1;
                    i += 3;
                } else {
                    i += 1;
                }
            }
            Token::Open => {
                depth += 1;
                i += 1;
            }
            Token::Close => {
                depth = depth.saturating_sub(1);
                if inline.last().is_some_and(|(_, d)| *d == depth) {
                    inline.pop();
                }
                i += 1;
            }
            Token::Ident(word) if word == "use" => {
                let reexport = is_public(&toks[..i]);
                let line = toks[i].1;
                let mut paths = Vec::new();
                i = use_tree(&toks, i + 1, Vec::new(), &mut paths);
                let inner: Vec<String> = inline.iter().map(|(n, _)| n.clone()).collect();
                out.extend(paths.into_iter().map(|segments| Named {
                    segments,
                    line,
                    reexport,
                    inline: inner.clone(),
                }));
            }
            Token::Ident(first)
                if toks.get(i + 1).map(|t| &t.0) == Some(&Token::Path)
                    && !(i > 0 && toks[i - 1].0 == Token::Path) =>
            {
                let line = toks[i].1;
                let mut segments = vec![first.clone()];
                let mut j = i + 1;
                while toks.get(j).map(|t| &t.0) == Some(&Token::Path) {
                    match toks.get(j + 1).map(|t| &t.0) {
                        Some(Token::Ident(s)) => {
                            segments.push(s.clone());
                            j += 2;
                        }
                        _ => break,
                    }
                }
                let inline = inline.iter().map(|(n, _)| n.clone()).collect();
                out.push(Named {
                    segments,
                    line,
                    reexport: false,
                    inline,
                });
                i = j;
            }
            _ => i += 1,
        }
    }
    out
}

/// `pub use`, `pub(crate) use`, `pub(super) use`.
fn is_public(before: &[(Token, usize)]) -> bool {
    match before {
        [.., (Token::Ident(p), _)] => p == "pub",
        [.., (Token::Ident(p), _), (Token::Other, _), (Token::Ident(_), _), (Token::Other, _)] => {
            p == "pub"
        }
        _ => false,
    }
}

/// Parses one use tree starting at `i`; pushes every full path; returns the
/// index after the tree.
fn use_tree(
    toks: &[(Token, usize)],
    mut i: usize,
    mut prefix: Vec<String>,
    out: &mut Vec<Vec<String>>,
) -> usize {
    loop {
        match toks.get(i).map(|t| &t.0) {
            Some(Token::Path) => i += 1,
            Some(Token::Ident(s)) if s == "as" => {
                i += 2;
                out.push(prefix);
                return i;
            }
            Some(Token::Ident(s)) => {
                if s != "self" || prefix.is_empty() {
                    prefix.push(s.clone());
                }
                i += 1;
            }
            Some(Token::Open) => {
                i += 1;
                loop {
                    match toks.get(i).map(|t| &t.0) {
                        Some(Token::Close) => return i + 1,
                        Some(Token::Comma) => i += 1,
                        None => return i,
                        _ => i = use_tree(toks, i, prefix.clone(), out),
                    }
                }
            }
            Some(Token::Star) => {
                out.push(prefix);
                return i + 1;
            }
            _ => {
                out.push(prefix);
                return i;
            }
        }
    }
}

/// One graph per module that has files of its own children: nodes are the
/// children (and `mod.rs` for the module's own file); an edge says one
/// names the other, with the first place it does.
fn dependency_graphs(
    files: &[SourceFile],
    modules: &BTreeSet<ModPath>,
) -> BTreeMap<ModPath, BTreeMap<(String, String), String>> {
    let mut graphs: BTreeMap<ModPath, BTreeMap<(String, String), String>> = BTreeMap::new();
    for file in files {
        if file.module.is_empty() {
            continue;
        }
        for named in named_paths(&file.code) {
            let mut within = file.module.clone();
            within.extend(named.inline.iter().cloned());
            let Some(target) = resolve(&within, &named.segments, modules) else {
                continue;
            };
            let common = file
                .module
                .iter()
                .zip(&target)
                .take_while(|(a, b)| a == b)
                .count();
            if common == file.module.len() && common == target.len() {
                continue;
            }
            let node = |m: &ModPath| {
                m.get(common)
                    .cloned()
                    .unwrap_or_else(|| "mod.rs".to_string())
            };
            let (from, to) = (node(&file.module), node(&target));
            if from == "mod.rs" && named.reexport {
                continue;
            }
            if common == 0 && (from == "mod.rs" || to == "mod.rs") {
                continue;
            }
            graphs
                .entry(file.module[..common].to_vec())
                .or_default()
                .entry((from, to))
                .or_insert_with(|| format!("{}:{}", file.path.display(), named.line));
        }
    }
    graphs
}

/// The module a path names, from the file's module: `crate::`, `super::`,
/// `self::` or a child module's name first; `None` for anything else.
fn resolve(module: &ModPath, segments: &[String], modules: &BTreeSet<ModPath>) -> Option<ModPath> {
    let mut base: ModPath;
    let mut rest = segments;
    match segments.first().map(String::as_str) {
        Some("crate") => {
            base = Vec::new();
            rest = &segments[1..];
        }
        Some("super") | Some("self") => {
            base = module.clone();
            while let Some(s) = rest.first() {
                match s.as_str() {
                    "super" => {
                        base.pop()?;
                    }
                    "self" => {}
                    _ => break,
                }
                rest = &rest[1..];
            }
        }
        Some(first) => {
            let mut child = module.clone();
            child.push(first.to_string());
            if !modules.contains(&child) {
                return None;
            }
            base = module.clone();
        }
        None => return None,
    }
    let mut found = base.clone();
    for s in rest {
        base.push(s.clone());
        if modules.contains(&base) {
            found = base.clone();
        } else {
            break;
        }
    }
    // A path into an inline module names the file that holds it.
    while !modules.contains(&found) && found.pop().is_some() {}
    Some(found)
}

/// The strongly connected components of more than one node, each sorted.
fn cycles(graph: &BTreeMap<(String, String), String>) -> Vec<Vec<String>> {
    let nodes: BTreeSet<&String> = graph.keys().flat_map(|(a, b)| [a, b]).collect();
    let reaches = |from: &String| {
        let mut seen = BTreeSet::new();
        let mut stack = vec![from.clone()];
        while let Some(n) = stack.pop() {
            for (a, b) in graph.keys() {
                if *a == n && seen.insert(b.clone()) {
                    stack.push(b.clone());
                }
            }
        }
        seen
    };
    let reach: BTreeMap<&String, BTreeSet<String>> =
        nodes.iter().map(|n| (*n, reaches(n))).collect();
    let mut out: Vec<Vec<String>> = Vec::new();
    for n in &nodes {
        let mut component: Vec<String> = nodes
            .iter()
            .filter(|m| *m == n || (reach[*n].contains(**m) && reach[*m].contains(*n)))
            .map(|m| (*m).clone())
            .collect();
        component.sort();
        if component.len() > 1 && !out.contains(&component) {
            out.push(component);
        }
    }
    out
}

/// ARCHITECTURE.md and the README's "Repository layout" name every source
/// file of `src/` (every module) and no file that does not exist.
#[test]
fn the_docs_name_every_module_and_only_those() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let src = root.join("src");
    let mut paths = Vec::new();
    walk(&src, &mut paths);
    let existing: BTreeSet<String> = paths
        .iter()
        .filter_map(|p| p.strip_prefix(root).ok())
        .map(|p| p.to_string_lossy().into_owned())
        .collect();

    let architecture = fs::read_to_string(root.join("ARCHITECTURE.md")).unwrap_or_default();
    let readme = fs::read_to_string(root.join("README.md")).unwrap_or_default();
    let layout = block_after(&readme, "## Repository layout");

    let mut problems = Vec::new();
    for (doc, named) in [
        (
            "ARCHITECTURE.md",
            architecture_paths(&architecture)
                .union(&layout_paths(block_after(&architecture, "## Module map")))
                .cloned()
                .collect(),
        ),
        ("README.md's Repository layout", layout_paths(layout)),
    ] {
        for missing in existing.difference(&named) {
            problems.push(format!("{doc} does not name {missing}"));
        }
        for stale in named.difference(&existing) {
            if !root.join(stale).is_dir() {
                problems.push(format!("{doc} names {stale}, which does not exist"));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// Every `src/….rs` path a text spells out in full.
fn architecture_paths(text: &str) -> BTreeSet<String> {
    text.split(|c: char| !(c.is_alphanumeric() || c == '_' || c == '/' || c == '.'))
        .filter(|w| w.starts_with("src/") && w.ends_with(".rs"))
        .map(str::to_string)
        .collect()
}

/// A layout block (the README's, ARCHITECTURE.md's module map): an entry
/// starts at the line's first column with a directory (`src/shadow/`) or a
/// file (`src/lib.rs`); the `name.rs` words after a directory, on its line
/// and the indented lines that follow, are its files.
fn layout_paths(block: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut directory: Option<String> = None;
    for line in block.lines() {
        let mut words = line
            .split(|c: char| !(c.is_alphanumeric() || c == '_' || c == '/' || c == '.'))
            .filter(|w| !w.is_empty())
            .peekable();
        if !line.starts_with(char::is_whitespace) {
            directory = None;
            match words.next() {
                Some(file) if file.starts_with("src/") && file.ends_with(".rs") => {
                    out.insert(file.to_string());
                }
                Some(dir) if dir.starts_with("src/") && dir.ends_with('/') => {
                    directory = Some(dir.to_string());
                }
                _ => {}
            }
        }
        let Some(dir) = &directory else { continue };
        for word in words {
            let word = word.trim_end_matches('.');
            if word.ends_with(".rs") {
                out.insert(format!("{dir}{word}"));
            }
        }
    }
    out
}

/// The first code block after `heading`.
fn block_after<'t>(text: &'t str, heading: &str) -> &'t str {
    text.split(heading)
        .nth(1)
        .and_then(|rest| rest.split("```").nth(1))
        .unwrap_or_default()
}

/// ARCHITECTURE.md lists the top-level modules lowest first; every
/// dependency between them goes from a later one to an earlier one, and the
/// list holds every top-level module.
#[test]
fn the_top_level_modules_depend_in_the_order_architecture_md_lists_them() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let files = read_crate(root.join("src").as_path());
    let modules: BTreeSet<ModPath> = files.iter().map(|f| f.module.clone()).collect();
    let text = fs::read_to_string(root.join("ARCHITECTURE.md")).unwrap_or_default();
    let listed: Vec<String> = text
        .split("Top-level modules, lowest first")
        .nth(1)
        .and_then(|rest| rest.split("\n\n").next())
        .unwrap_or_default()
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect();
    let top: BTreeSet<String> = modules
        .iter()
        .filter(|m| m.len() == 1)
        .map(|m| m[0].clone())
        .collect();
    let mut problems: Vec<String> = top
        .iter()
        .filter(|m| !listed.contains(m))
        .map(|m| format!("ARCHITECTURE.md does not list top-level module `{m}`"))
        .collect();
    let rank = |m: &String| listed.iter().position(|l| l == m);
    let graphs = dependency_graphs(&files, &modules);
    for ((from, to), at) in graphs.get(&Vec::new()).into_iter().flatten() {
        if let (Some(f), Some(t)) = (rank(from), rank(to)) {
            if f < t {
                problems.push(format!("`{from}` uses `{to}`, listed above it ({at})"));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
