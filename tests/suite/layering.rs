//! The crate's layering, checked: every import in `src/` points down or sideways in
//! the layer order below, never up, and every module doc that bans an import is true.
//!
//! The order is what the code is, bottom to top:
//!
//! | layer | modules |
//! |---|---|
//! | base | `clock`, `timer`, `id`, `priority`, `hash`, `name_table`, `layout`, `serde_util`, `agent_map`, `digest` |
//! | resource | `resource` |
//! | task | `task` |
//! | agent | `agent` |
//! | policy | `policy` |
//! | assignment | `assignment` |
//! | conflict | `conflict` |
//! | memory | `memory`: the agents' shared memory and its guard |
//! | workflow | `workflow` (definitions, runs, retries, errors) |
//! | coordinator | `coordinator` (a file now; any file under `src/coordinator/` later) |
//! | drivers | `workflow::executor`, `workflow::runbooks`, `workflow::builtins`: they drive the coordinator |
//! | monitor | `monitor`: operations beside the coordinator, fed with its events |
//! | health | `health` |
//! | alert | `alert` |
//! | audit | `audit`: the audit log and incidents, fed with the coordinator's events and the alert manager's notifications |
//! | maintenance | `maintenance`: the recurring checklists and the daily cleanup, which calls down into the coordinator, the runs and memory |
//! | dashboard | `dashboard`: draws the operations views |
//! | error | `error`: the crate's `Error` wraps every domain's error |
//! | root | `lib`, `prelude`: re-exports |
//!
//! A module's layer is that of the longest entry that is a prefix of its path
//! (`workflow::run` is `workflow`, `workflow::executor` is drivers). A module may
//! import from its own layer and the layers below it.
//!
//! What counts as an import: every `crate::` path in code (in `use` statements,
//! groups included, and inline, `crate::hash::FxHashMap::default()`), and paths into a
//! module's own children (`use retry::splitmix64;`, `self::run::Run`). A path through
//! a re-export is followed to where the item is defined (`crate::Resources` is
//! `resource::resources`, `crate::workflow::Executor` is `workflow::executor`).
//! Comments, doc comments (intra-doc links included) and string literals are not
//! code. A module's `pub use` of its own children is how it publishes them, not a
//! dependency of its code, so it is not checked; `super::super::` is refused (write
//! the `crate::` path) so that `super::` never leaves a module's directory.
//!
//! The module docs' bans are read from each module's header (`//!`) comment: a
//! sentence that says a module "must never import" (or "never depend on") names the
//! modules it bans in backticks after "never", or says "anything from the rest of the
//! crate" / "any other module". The ban covers the module's files in its own layer
//! (so the `workflow` module's claims do not cover its drivers).

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// The layers, bottom first: a name and the module paths in it.
const LAYERS: &[(&str, &[&str])] = &[
    (
        "base",
        &[
            "clock",
            "timer",
            "id",
            "priority",
            "hash",
            "name_table",
            "layout",
            "serde_util",
            "agent_map",
            "digest",
            "text",
        ],
    ),
    ("resource", &["resource"]),
    ("task", &["task"]),
    ("agent", &["agent"]),
    ("policy", &["policy"]),
    ("assignment", &["assignment"]),
    ("conflict", &["conflict"]),
    ("memory", &["memory"]),
    ("workflow", &["workflow"]),
    ("coordinator", &["coordinator"]),
    (
        "drivers",
        &[
            "workflow::executor",
            "workflow::runbooks",
            "workflow::builtins",
        ],
    ),
    // Operations: what a host runs beside the coordinator, fed with its events.
    ("monitor", &["monitor"]),
    ("health", &["health"]),
    ("alert", &["alert"]),
    ("audit", &["audit"]),
    ("maintenance", &["maintenance"]),
    ("dashboard", &["dashboard"]),
    ("error", &["error"]),
    ("root", &["", "prelude"]),
];

/// Crate-root items that are not re-exports, and why importing them is no upward
/// dependency.
const ROOT_EXCEPTIONS: &[(&str, &str)] = &[(
    "proptest_config",
    "a #[cfg(test)] helper for the unit proptests; no library code depends on it",
)];

// ----- the source tree ------------------------------------------------------------

/// One source file as a module: `agent::registry` for `src/agent/registry.rs`, `agent`
/// for `src/agent/mod.rs`, the empty path for `src/lib.rs`.
struct Module {
    path: String,
    file: PathBuf,
    /// The text with comments and literals blanked (line structure kept).
    code: String,
    /// The `//!` header, as text.
    header: String,
}

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("a directory entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|x| x == "rs") {
            out.push(path);
        }
    }
}

fn module_path(relative: &Path) -> String {
    let mut parts: Vec<String> = relative
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let last = parts.pop().expect("a file name");
    let stem = last.strip_suffix(".rs").expect("a .rs file");
    if !(stem == "mod" || (parts.is_empty() && stem == "lib")) {
        parts.push(stem.to_owned());
    }
    parts.join("::")
}

impl Module {
    /// The module at `file` (`src/...`), of source `text`.
    fn new(file: PathBuf, text: &str) -> Module {
        let relative = file.strip_prefix(src_dir()).unwrap_or(&file).to_owned();
        Module {
            path: module_path(&relative),
            code: blank_comments_and_literals(text),
            header: text
                .lines()
                .take_while(|l| l.starts_with("//!"))
                .map(|l| l.trim_start_matches("//!").trim())
                .collect::<Vec<_>>()
                .join(" "),
            file,
        }
    }
}

fn load() -> Vec<Module> {
    let mut files = Vec::new();
    rust_files(&src_dir(), &mut files);
    files
        .into_iter()
        .map(|file| {
            let text = fs::read_to_string(&file).expect("readable source");
            Module::new(file, &text)
        })
        .collect()
}

/// `text` with every comment and every string and character literal replaced by
/// spaces, newlines kept, so that what is left is code at its original lines.
fn blank_comments_and_literals(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let blank = |c: char| if c == '\n' { '\n' } else { ' ' };
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
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
        } else if let Some(len) = raw_string_len(&chars, i) {
            for &ch in &chars[i..i + len] {
                out.push(blank(ch));
            }
            i += len;
        } else if c == '"' {
            out.push(' ');
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                let step = if chars[i] == '\\' { 2 } else { 1 };
                for _ in 0..step {
                    if i < chars.len() {
                        out.push(blank(chars[i]));
                        i += 1;
                    }
                }
            }
            out.push(' ');
            i += 1;
        } else if c == '\'' && next == Some('\\') {
            // An escaped character literal: '\n', '\'', '\\', '\u{1F600}'. The quote,
            // the backslash and the escaped character, then up to the closing quote.
            out.push_str("   ");
            i += 3;
            while i < chars.len() {
                out.push(' ');
                i += 1;
                if chars[i - 1] == '\'' {
                    break;
                }
            }
        } else if c == '\'' && chars.get(i + 2) == Some(&'\'') {
            out.push_str("   ");
            i += 3;
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

/// The length of the raw string (`r"..."`, `r#"..."#`, `br"..."`) starting at
/// `chars[i]`, if one does.
fn raw_string_len(chars: &[char], i: usize) -> Option<usize> {
    let ident = |k: usize| chars[k].is_alphanumeric() || chars[k] == '_';
    let starts = chars[i] == 'r'
        && (i == 0 || !ident(i - 1) || (chars[i - 1] == 'b' && (i == 1 || !ident(i - 2))));
    if !starts {
        return None;
    }
    let hashes = chars[i + 1..].iter().take_while(|&&h| h == '#').count();
    if chars.get(i + 1 + hashes) != Some(&'"') {
        return None;
    }
    let body = i + 2 + hashes;
    let closes = |k: usize| {
        chars[k] == '"'
            && chars[k + 1..]
                .iter()
                .take(hashes)
                .filter(|&&h| h == '#')
                .count()
                == hashes
    };
    let close = (body..chars.len())
        .find(|&k| closes(k))
        .unwrap_or(chars.len());
    Some((close + 1 + hashes).min(chars.len()) - i)
}

// ----- tokens and paths -----------------------------------------------------------

#[derive(Debug, Clone, PartialEq)]
struct Token {
    text: String,
    line: usize,
}

fn tokens(code: &str) -> Vec<Token> {
    let mut out = Vec::new();
    for (n, line) in code.lines().enumerate() {
        let chars: Vec<char> = line.chars().collect();
        let mut i = 0;
        while i < chars.len() {
            let c = chars[i];
            if c.is_whitespace() {
                i += 1;
            } else if c.is_alphanumeric() || c == '_' {
                let start = i;
                while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                    i += 1;
                }
                out.push(Token {
                    text: chars[start..i].iter().collect(),
                    line: n + 1,
                });
            } else if c == ':' && chars.get(i + 1) == Some(&':') {
                out.push(Token {
                    text: "::".into(),
                    line: n + 1,
                });
                i += 2;
            } else {
                out.push(Token {
                    text: c.to_string(),
                    line: n + 1,
                });
                i += 1;
            }
        }
    }
    out
}

fn is_ident(t: &str) -> bool {
    t.chars()
        .next()
        .is_some_and(|c| c.is_alphabetic() || c == '_')
}

/// Parses a use tree from `tokens[i]`, appending every leaf path (prefix included)
/// with its line; returns the index after the tree.
fn use_tree(
    tokens: &[Token],
    mut i: usize,
    mut prefix: Vec<String>,
    out: &mut Vec<(Vec<String>, usize)>,
) -> usize {
    loop {
        let Some(tok) = tokens.get(i) else { return i };
        match tok.text.as_str() {
            "{" => {
                i += 1;
                while i < tokens.len() && tokens[i].text != "}" {
                    i = use_tree(tokens, i, prefix.clone(), out);
                    if tokens.get(i).is_some_and(|t| t.text == ",") {
                        i += 1;
                    }
                }
                return i + 1;
            }
            "*" => {
                out.push((prefix, tok.line));
                return i + 1;
            }
            "::" if prefix.is_empty() => i += 1, // `use ::std::...`: external.
            t if is_ident(t) => {
                if t != "self" || prefix.is_empty() {
                    prefix.push(t.to_owned());
                }
                i += 1;
                if tokens.get(i).is_some_and(|t| t.text == "::") {
                    i += 1;
                    continue;
                }
                if tokens.get(i).is_some_and(|t| t.text == "as") {
                    i += 2;
                }
                out.push((prefix, tok.line));
                return i;
            }
            _ => return i + 1,
        }
    }
}

/// A path as written in one file: its segments and line, whether it is part of a
/// `pub use` (a re-export), and the inline modules (`mod tests { ... }`) it is in.
struct WrittenPath {
    segments: Vec<String>,
    line: usize,
    in_pub_use: bool,
    inline: Vec<String>,
}

impl WrittenPath {
    /// The module the path is written in: the file's, then its inline modules.
    fn written_in(&self, file_module: &str) -> String {
        let mut m = file_module.to_owned();
        for name in &self.inline {
            if !m.is_empty() {
                m.push_str("::");
            }
            m.push_str(name);
        }
        m
    }
}

fn written_paths(code: &str) -> Vec<WrittenPath> {
    let toks = tokens(code);
    let mut out = Vec::new();
    // Inline modules open at a brace depth: (name, depth inside its braces).
    let mut inline: Vec<(String, usize)> = Vec::new();
    let mut depth = 0;
    let mut i = 0;
    while i < toks.len() {
        let t = toks[i].text.as_str();
        match t {
            "{" => {
                depth += 1;
                if i >= 2 && toks[i - 2].text == "mod" && is_ident(&toks[i - 1].text) {
                    inline.push((toks[i - 1].text.clone(), depth));
                }
            }
            "}" => {
                if inline.last().is_some_and(|(_, d)| *d == depth) {
                    inline.pop();
                }
                depth = depth.saturating_sub(1);
            }
            _ => {}
        }
        let inline_names = || inline.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
        if t == "use" {
            // `pub use`, `pub(crate) use`, `pub(in path) use`.
            let in_pub_use = (i >= 1 && toks[i - 1].text == "pub")
                || (i >= 2
                    && toks[i - 1].text == ")"
                    && toks[..i - 1]
                        .iter()
                        .rev()
                        .take_while(|t| t.text != "(")
                        .count()
                        < 6
                    && toks[..i - 1]
                        .iter()
                        .rposition(|t| t.text == "(")
                        .is_some_and(|p| p >= 1 && toks[p - 1].text == "pub"));
            let mut paths = Vec::new();
            i = use_tree(&toks, i + 1, Vec::new(), &mut paths);
            out.extend(paths.into_iter().map(|(segments, line)| WrittenPath {
                segments,
                line,
                in_pub_use,
                inline: inline_names(),
            }));
            continue;
        }
        let path_start = is_ident(t)
            && toks.get(i + 1).is_some_and(|n| n.text == "::")
            && !(i >= 1 && matches!(toks[i - 1].text.as_str(), "::" | "$" | "in"));
        if path_start {
            let line = toks[i].line;
            let mut segments = vec![t.to_owned()];
            i += 1;
            while toks.get(i).is_some_and(|n| n.text == "::")
                && toks.get(i + 1).is_some_and(|n| is_ident(&n.text))
            {
                segments.push(toks[i + 1].text.clone());
                i += 2;
            }
            out.push(WrittenPath {
                segments,
                line,
                in_pub_use: false,
                inline: inline_names(),
            });
            continue;
        }
        i += 1;
    }
    out
}

// ----- resolving paths to modules -------------------------------------------------

fn parent(module: &str) -> &str {
    module.rsplit_once("::").map_or("", |(p, _)| p)
}

fn join(module: &str, rest: &[String]) -> Vec<String> {
    let mut v: Vec<String> = if module.is_empty() {
        Vec::new()
    } else {
        module.split("::").map(str::to_owned).collect()
    };
    v.extend(rest.iter().cloned());
    v
}

/// Where a path written in `from` points, as crate-absolute segments; `None` for a
/// path outside the crate (std, serde, a local type's associated item).
fn absolute(from: &str, path: &[String], modules: &BTreeSet<String>) -> Option<Vec<String>> {
    match path.first().map(String::as_str)? {
        "crate" => Some(path[1..].to_vec()),
        "self" => Some(join(from, &path[1..])),
        "super" => Some(join(parent(from), &path[1..])),
        first => {
            let child = if from.is_empty() {
                first.to_owned()
            } else {
                format!("{from}::{first}")
            };
            modules.contains(&child).then(|| join(from, path))
        }
    }
}

struct Crate {
    modules: BTreeSet<String>,
    /// Per module, the names it re-exports and the absolute paths they stand for.
    reexports: BTreeMap<String, BTreeMap<String, Vec<String>>>,
}

impl Crate {
    fn new(files: &[Module]) -> Crate {
        let modules: BTreeSet<String> = files.iter().map(|m| m.path.clone()).collect();
        let mut reexports: BTreeMap<String, BTreeMap<String, Vec<String>>> = BTreeMap::new();
        for m in files {
            for p in written_paths(&m.code).into_iter().filter(|p| p.in_pub_use) {
                if let Some(abs) = absolute(&p.written_in(&m.path), &p.segments, &modules) {
                    if let Some(name) = abs.last() {
                        reexports
                            .entry(m.path.clone())
                            .or_default()
                            .insert(name.clone(), abs.clone());
                    }
                }
            }
        }
        Crate { modules, reexports }
    }

    /// The module where the item at `path` (crate-absolute) is defined: the longest
    /// module prefix, then through re-exports.
    fn module_of(&self, path: &[String]) -> String {
        let mut path = path.to_vec();
        for _ in 0..16 {
            let k = (0..=path.len())
                .rev()
                .find(|&k| k == 0 || self.modules.contains(&path[..k].join("::")))
                .unwrap_or(0);
            let module = path[..k].join("::");
            let next = path.get(k).and_then(|name| {
                self.reexports
                    .get(&module)
                    .and_then(|names| names.get(name))
                    .filter(|target| **target != path[..=k])
            });
            match next {
                Some(target) => {
                    let mut p = target.clone();
                    p.extend(path[k + 1..].iter().cloned());
                    path = p;
                }
                None => return module,
            }
        }
        panic!("re-exports of {path:?} go round in circles")
    }
}

/// The layer of `module`: its index, name and the entry that matched (longest prefix).
fn layer_of(module: &str) -> Option<(usize, &'static str, &'static str)> {
    LAYERS
        .iter()
        .enumerate()
        .flat_map(|(i, (name, entries))| entries.iter().map(move |e| (i, *name, *e)))
        .filter(|(_, _, e)| {
            module == *e || (!e.is_empty() && module.starts_with(&format!("{e}::")))
        })
        .max_by_key(|(_, _, e)| e.len())
}

fn shown(module: &str) -> &str {
    if module.is_empty() { "lib" } else { module }
}

fn relative(file: &Path) -> String {
    file.strip_prefix(env!("CARGO_MANIFEST_DIR"))
        .unwrap_or(file)
        .display()
        .to_string()
}

/// Every import of every file: (file, line, the path as written, the module it
/// reaches).
fn imports(files: &[Module], krate: &Crate) -> Vec<(usize, usize, String, String)> {
    let mut out = Vec::new();
    for (f, m) in files.iter().enumerate() {
        for p in written_paths(&m.code) {
            let Some(abs) = absolute(&p.written_in(&m.path), &p.segments, &krate.modules) else {
                continue;
            };
            let own_child = !matches!(p.segments[0].as_str(), "crate" | "self" | "super");
            if p.in_pub_use && own_child {
                continue; // a module publishing its children
            }
            out.push((f, p.line, p.segments.join("::"), krate.module_of(&abs)));
        }
    }
    out
}

// ----- the checks -----------------------------------------------------------------

#[test]
fn every_module_has_a_layer() {
    let files = load();
    let missing: Vec<String> = files
        .iter()
        .filter(|m| layer_of(&m.path).is_none())
        .map(|m| {
            format!(
                "{}: module `{}` is in no layer; add it to LAYERS",
                relative(&m.file),
                m.path
            )
        })
        .collect();
    assert!(missing.is_empty(), "\n{}", missing.join("\n"));
}

/// Every import that points up, and every `super::super::`, as messages naming the
/// file, the line and the path.
fn upward_imports(files: &[Module]) -> Vec<String> {
    let krate = Crate::new(files);
    let mut problems = Vec::new();
    for (f, line, written, target) in imports(files, &krate) {
        let m = &files[f];
        let (Some(from), Some(to)) = (layer_of(&m.path), layer_of(&target)) else {
            continue; // reported by every_module_has_a_layer
        };
        let item = written.rsplit("::").next().unwrap_or_default();
        if target.is_empty() && ROOT_EXCEPTIONS.iter().any(|(name, _)| *name == item) {
            continue;
        }
        if to.0 > from.0 {
            problems.push(format!(
                "{}:{line}: `{}` (layer {}) imports `{written}` from `{}` (layer {}), which is above it",
                relative(&m.file),
                shown(&m.path),
                from.1,
                shown(&target),
                to.1,
            ));
        }
    }
    for m in files {
        for p in written_paths(&m.code) {
            if p.segments
                .starts_with(&["super".to_owned(), "super".to_owned()])
            {
                problems.push(format!(
                    "{}:{}: `{}`: write the `crate::` path instead of `super::super::`",
                    relative(&m.file),
                    p.line,
                    p.segments.join("::")
                ));
            }
        }
    }
    problems
}

#[test]
fn imports_never_point_up() {
    let problems = upward_imports(&load());
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
}

/// The modules a module's header says it must never import, or `None` for "anything
/// outside itself"; `Err` with the sentence for a ban that names no module.
fn header_bans(header: &str, modules: &BTreeSet<String>) -> Result<Vec<Option<String>>, String> {
    let mut bans = Vec::new();
    for sentence in header.split(". ") {
        let lower = sentence.to_lowercase();
        let Some(never) = lower.find("never") else {
            continue;
        };
        if !(lower.contains("import") || lower.contains("depend on")) {
            continue;
        }
        if lower.contains("anything from the rest of the crate")
            || lower.contains("any other module")
        {
            bans.push(None);
            continue;
        }
        // From "never" to the end of its clause: "may import `a`; never `b`".
        let clause = sentence[never..].split(';').next().unwrap_or_default();
        let before = bans.len();
        for (k, word) in clause.split('`').enumerate() {
            if k % 2 == 1 && modules.contains(word) {
                bans.push(Some(word.to_owned()));
            }
        }
        if bans.len() == before {
            return Err(sentence.to_owned());
        }
    }
    Ok(bans)
}

fn within(module: &str, root: &str) -> bool {
    root.is_empty() || module == root || module.starts_with(&format!("{root}::"))
}

/// Every import a module's docs ban, as messages, and how many bans were read.
fn broken_bans(files: &[Module]) -> (Vec<String>, usize) {
    let krate = Crate::new(files);
    let all = imports(files, &krate);
    let mut problems = Vec::new();
    let mut claims = 0;
    for claimant in files {
        let bans = match header_bans(&claimant.header, &krate.modules) {
            Ok(bans) => bans,
            Err(sentence) => {
                problems.push(format!(
                    "{}: the docs ban an import without naming the module in backticks \
                     (so this test cannot check it): {sentence:?}",
                    relative(&claimant.file)
                ));
                continue;
            }
        };
        claims += bans.len();
        let Some(key) = layer_of(&claimant.path).map(|l| l.2) else {
            continue;
        };
        for ban in bans {
            for (f, line, written, target) in &all {
                let m = &files[*f];
                let in_scope = within(&m.path, &claimant.path)
                    && layer_of(&m.path).is_some_and(|l| l.2 == key);
                let broken = match &ban {
                    Some(banned) => within(target, banned),
                    None => !within(target, &claimant.path),
                };
                if in_scope && broken {
                    problems.push(format!(
                        "{}:{line}: imports `{written}` from `{}`, but the docs of `{}` ({}) say it never imports {}",
                        relative(&m.file),
                        shown(target),
                        shown(&claimant.path),
                        relative(&claimant.file),
                        ban.as_deref().map_or("anything outside it".to_owned(), |b| format!("`{b}`")),
                    ));
                }
            }
        }
    }
    (problems, claims)
}

#[test]
fn module_docs_that_ban_an_import_are_true() {
    let (problems, claims) = broken_bans(&load());
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
    // The parser still finds the claims (so that a rewording cannot switch it off).
    assert!(
        claims >= 10,
        "only {claims} import bans found in the module docs"
    );
}

// ----- the checker's own tests ----------------------------------------------------

#[test]
fn paths_are_found_in_use_trees_and_inline_but_not_in_comments_or_strings() {
    let code = blank_comments_and_literals(
        r##"
use crate::a::{b::C, d::{self, E as F}, *};
pub use child::Thing;
pub(crate) use crate::g::H;
// use crate::commented::Out;
/// [`X`](crate::doc::Link)
let s = "crate::in_string::X"; let r = r#"crate::raw::Y"#; let c = '"'; let q = '\\';
let e = '\''; let u = '\u{1F600}'; fn f<'a>(x: &'a str) {}
let v = crate::inline::f(crate::arg::G::new());
macro_rules! m { () => { $crate::macro_path::Z } }
"##,
    );
    let found: Vec<(String, bool)> = written_paths(&code)
        .into_iter()
        .map(|p| (p.segments.join("::"), p.in_pub_use))
        .collect();
    let expect = [
        ("crate::a::b::C", false),
        ("crate::a::d", false),
        ("crate::a::d::E", false),
        ("crate::a", false),
        ("child::Thing", true),
        ("crate::g::H", true),
        ("crate::inline::f", false),
        ("crate::arg::G::new", false),
    ];
    let expect: Vec<(String, bool)> = expect.iter().map(|(p, b)| (p.to_string(), *b)).collect();
    assert_eq!(found, expect);
}

#[test]
fn module_paths_and_layers_follow_the_files() {
    assert_eq!(module_path(Path::new("lib.rs")), "");
    assert_eq!(module_path(Path::new("agent/mod.rs")), "agent");
    assert_eq!(
        module_path(Path::new("agent/registry.rs")),
        "agent::registry"
    );
    assert_eq!(
        module_path(Path::new("assignment/lap/dense.rs")),
        "assignment::lap::dense"
    );
    // The coordinator may become a directory of files: all of them are its layer.
    for m in [
        "coordinator",
        "coordinator::core",
        "coordinator::claims::queue",
    ] {
        assert_eq!(layer_of(m).map(|l| l.1), Some("coordinator"), "{m}");
    }
    assert_eq!(layer_of("workflow::run").map(|l| l.1), Some("workflow"));
    assert_eq!(layer_of("workflow::executor").map(|l| l.1), Some("drivers"));
    assert_eq!(layer_of("").map(|l| l.1), Some("root"));
    assert_eq!(layer_of("error").map(|l| l.1), Some("error"));
    assert_eq!(layer_of("nonexistent"), None);
    // A re-export is followed to the module that defines the item.
    let files = load();
    let krate = Crate::new(&files);
    let of = |p: &str| krate.module_of(&p.split("::").map(str::to_owned).collect::<Vec<_>>());
    assert_eq!(of("workflow::Executor"), "workflow::executor");
    assert_eq!(of("Resources"), "resource::resources");
    assert_eq!(of("task::Priority"), "priority");
    assert_eq!(of("hash::FxHashMap"), "hash");
}

#[test]
fn an_upward_import_is_reported_with_file_line_and_path() {
    let src = src_dir();
    let files = [
        (
            "lib.rs",
            "pub use resource::Resources;\npub use task::Task;\n",
        ),
        (
            "resource/mod.rs",
            "mod ledger;\npub use resources::Resources;\n",
        ),
        ("resource/resources.rs", "pub struct Resources;\n"),
        (
            "resource/ledger.rs",
            "use crate::task::Task; // up\nuse super::Resources;\n\
             fn f() { crate::coordinator::go(); let _ = crate::Task::new; }\n\
             mod tests { use super::*; use super::super::task; }\n",
        ),
        (
            "task/mod.rs",
            "use crate::Resources; // down, through the root\npub struct Task;\n",
        ),
        ("coordinator/core.rs", "use crate::workflow::Run;\n"),
        ("coordinator/mod.rs", "mod core;\n"),
        (
            "workflow/mod.rs",
            "mod executor;\npub use executor::Executor;\npub struct Run;\n",
        ),
        (
            "workflow/executor.rs",
            "use crate::coordinator::core::go;\npub struct Executor;\n",
        ),
        ("workflow/run.rs", "use crate::workflow::Executor;\n"),
    ]
    .map(|(file, text)| Module::new(src.join(file), text));
    assert_eq!(
        upward_imports(&files),
        [
            "src/resource/ledger.rs:1: `resource::ledger` (layer resource) imports \
             `crate::task::Task` from `task` (layer task), which is above it",
            "src/resource/ledger.rs:3: `resource::ledger` (layer resource) imports \
             `crate::coordinator::go` from `coordinator` (layer coordinator), which is above it",
            "src/resource/ledger.rs:3: `resource::ledger` (layer resource) imports \
             `crate::Task::new` from `task` (layer task), which is above it",
            "src/workflow/run.rs:1: `workflow::run` (layer workflow) imports \
             `crate::workflow::Executor` from `workflow::executor` (layer drivers), which is above it",
            "src/resource/ledger.rs:4: `super::super::task`: write the `crate::` path instead \
             of `super::super::`",
        ]
    );
}

#[test]
fn a_broken_or_unreadable_ban_in_module_docs_is_reported() {
    let src = src_dir();
    let files = [
        ("lib.rs", ""),
        (
            "clock.rs",
            "//! Time. This module must never import any other module.\n",
        ),
        (
            "task/mod.rs",
            "//! Tasks. It may import `clock`; never `agent` or `coordinator`.\n\
             use crate::agent::Agent;\nuse crate::clock::Timestamp;\n",
        ),
        ("agent/mod.rs", "//! Agents. This must never import them.\n"),
        ("coordinator.rs", "//! The top. Nothing imports it.\n"),
        (
            "workflow/mod.rs",
            "//! Runs. It never imports `coordinator`.\nmod executor;\n",
        ),
        // A driver in its own layer: not covered by `workflow`'s ban.
        (
            "workflow/executor.rs",
            "use crate::coordinator::Coordinator;\n",
        ),
    ]
    .map(|(file, text)| Module::new(src.join(file), text));
    let (problems, claims) = broken_bans(&files);
    assert_eq!(
        problems,
        [
            "src/task/mod.rs:2: imports `crate::agent::Agent` from `agent`, but the docs of \
             `task` (src/task/mod.rs) say it never imports `agent`",
            "src/agent/mod.rs: the docs ban an import without naming the module in backticks \
             (so this test cannot check it): \"This must never import them.\"",
        ]
    );
    assert_eq!(claims, 4); // clock: anything; task: agent, coordinator; workflow: coordinator
}
