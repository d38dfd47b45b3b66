//! The crate's layering (src/lib.rs): no module names a stage downstream of it
//! outside its unit tests, so the pipeline order stays the dependency order.
//!
//! A file's code is read without its `#[cfg(test)]` items (the module, function or
//! `use` the attribute applies to; the rest of the file counts); a stage is named by
//! `crate::stage`, `crate::{stage, ..}` or a `super::` path that climbs to the crate
//! root (`super::super::stage` from `src/a/b.rs`).
use std::path::{Path, PathBuf};

const ORDER: [&str; 9] =
    ["ir", "onnx", "analysis", "data", "train", "agent", "rewrite", "validate", "search"];
/// Infrastructure below everything (rng, util).
const BELOW_ALL: [&str; 2] = ["rng", "util"];
/// Infrastructure below `train` (MPI/NCCL processes): stages before `train` may not use it.
const DIST: &str = "dist";

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            sources(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The end (exclusive) of the string, char or comment starting at `i`, if one does.
fn skip_literal(b: &[u8], i: usize) -> Option<usize> {
    let find = |from: usize, pat: &[u8]| {
        (from..b.len()).find(|&k| b[k..].starts_with(pat)).map_or(b.len(), |k| k + pat.len())
    };
    match b[i] {
        b'/' if b.get(i + 1) == Some(&b'/') => Some(find(i, b"\n")),
        b'/' if b.get(i + 1) == Some(&b'*') => Some(find(i + 2, b"*/")),
        b'r' if matches!(b.get(i + 1), Some(b'"' | b'#')) && (i == 0 || !ident(b[i - 1])) => {
            let hashes = b[i + 1..].iter().take_while(|&&c| c == b'#').count();
            if b.get(i + 1 + hashes) != Some(&b'"') {
                return None;
            }
            let close: Vec<u8> = std::iter::once(b'"').chain(vec![b'#'; hashes]).collect();
            Some(find(i + 2 + hashes, &close))
        }
        b'"' => {
            let mut k = i + 1;
            while k < b.len() && b[k] != b'"' {
                k += if b[k] == b'\\' { 2 } else { 1 };
            }
            Some(k + 1)
        }
        // A char literal ('x', '\n', '{'), not a lifetime ('a).
        b'\'' if b.get(i + 1) == Some(&b'\\') => Some(find(i + 3, b"'")),
        b'\'' if b.get(i + 2) == Some(&b'\'') => Some(i + 3),
        _ => None,
    }
}

fn ident(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

/// The end of the item starting at `i`: its `;` or its closing brace.
fn item_end(b: &[u8], mut i: usize) -> usize {
    let mut depth = 0usize;
    while i < b.len() {
        if let Some(end) = skip_literal(b, i) {
            i = end;
            continue;
        }
        match b[i] {
            b';' if depth == 0 => return i + 1,
            b'{' | b'(' | b'[' => depth += 1,
            b'}' if depth == 1 => return i + 1,
            b'}' | b')' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
        i += 1;
    }
    b.len()
}

/// `text` without its `#[cfg(test)]` items (string and comment contents kept).
fn strip_tests(text: &str) -> String {
    const ATTR: &str = "#[cfg(test)]";
    let b = text.as_bytes();
    let (mut out, mut i, mut from) = (String::new(), 0, 0);
    while i < b.len() {
        if let Some(end) = skip_literal(b, i) {
            i = end;
        } else if text[i..].starts_with(ATTR) {
            out.push_str(&text[from..i]);
            i = item_end(b, i + ATTR.len());
            from = i;
        } else {
            i += 1;
        }
    }
    out.push_str(&text[from.min(text.len())..]);
    out
}

/// The code of a file without its unit tests (files that are only tests are skipped).
fn code(p: &Path) -> String {
    let name = p.file_name().unwrap().to_string_lossy();
    if name.ends_with("_tests.rs") {
        return String::new();
    }
    strip_tests(&std::fs::read_to_string(p).unwrap())
}

/// The module path of a source file: `src/ir/ops/mod.rs` -> `[ir, ops]`.
fn module_of(p: &Path) -> Vec<String> {
    let rel = p.strip_prefix("src").unwrap();
    let mut m: Vec<String> = rel.iter().map(|s| s.to_string_lossy().into_owned()).collect();
    let last = m.pop().unwrap();
    let stem = last.trim_end_matches(".rs");
    if stem != "mod" && stem != "lib" {
        m.push(stem.to_string());
    }
    m
}

/// The names right after `prefix` at `i`: one identifier, or each first name of a `{..}` group.
fn names_after(text: &str, i: usize) -> Vec<String> {
    let rest = &text[i..];
    let word = |s: &str| s.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
    match rest.strip_prefix('{') {
        Some(group) => {
            let group = &group[..group.find('}').unwrap_or(group.len())];
            group.split(',').map(|s| word(s.trim())).filter(|s: &String| !s.is_empty()).collect()
        }
        None => vec![word(rest)],
    }
}

/// Top-level modules that `text` (the code of module `module`) names.
fn used(text: &str, module: &[String]) -> Vec<String> {
    let mut v: Vec<String> =
        text.match_indices("crate::").flat_map(|(i, _)| names_after(text, i + 7)).collect();
    for (i, _) in text.match_indices("super::") {
        if text.as_bytes()[..i].ends_with(b"super::") {
            continue; // counted from the first `super::` of the path
        }
        let mut at = i;
        let mut up = 0;
        while text[at..].starts_with("super::") {
            at += 7;
            up += 1;
        }
        // `super` from a file module climbs one level per `super`.
        match module.len().checked_sub(up) {
            Some(0) => v.extend(names_after(text, at)),
            Some(_) => v.push(module[0].clone()),
            None => v.push(format!("<above the crate root: {}>", &text[i..at])),
        }
    }
    v.sort();
    v.dedup();
    v
}

/// Violations in the files of stage `rank` of [`ORDER`].
fn stage_violations(rank: usize, bad: &mut Vec<String>) {
    let m = ORDER[rank];
    let mut files = Vec::new();
    sources(&Path::new("src").join(m), &mut files);
    assert!(!files.is_empty(), "src/{m} has no sources");
    let train = ORDER.iter().position(|o| *o == "train").unwrap();
    for f in files {
        for d in used(&code(&f), &module_of(&f)) {
            if ORDER.iter().position(|o| *o == d).is_some_and(|r| r > rank) {
                bad.push(format!("{} uses crate::{d}", f.display()));
            } else if d == DIST && rank < train {
                bad.push(format!("{} uses crate::{d} (infrastructure of train)", f.display()));
            } else if d.starts_with('<') {
                bad.push(format!("{} climbs {d}", f.display()));
            }
        }
    }
}

#[test]
fn no_module_reaches_downstream() {
    let mut bad = Vec::new();
    for rank in 0..ORDER.len() {
        stage_violations(rank, &mut bad);
    }
    let mut infra = Vec::new();
    sources(Path::new("src/dist"), &mut infra);
    infra.extend(BELOW_ALL.iter().map(|m| Path::new("src").join(format!("{m}.rs"))));
    for f in infra {
        let below_all = BELOW_ALL.iter().any(|m| f.ends_with(format!("{m}.rs")));
        for d in used(&code(&f), &module_of(&f)) {
            if ORDER.contains(&d.as_str()) || (below_all && d == DIST) {
                bad.push(format!("{} (infrastructure) uses crate::{d}", f.display()));
            }
        }
    }
    assert!(bad.is_empty(), "arrows pointing downstream:\n{}", bad.join("\n"));
}

#[test]
fn test_items_are_stripped_and_the_rest_is_kept() {
    let text = "use crate::ir;\n#[cfg(test)]\nmod tests {\n    fn f() { let s = \"}\"; let c = '{'; }\n    use crate::search;\n}\nfn g() { crate::train::x(); }\n#[cfg(test)]\nuse crate::agent;\nfn h() -> &'static str { \"crate::rewrite\" }\n";
    let kept = strip_tests(text);
    assert!(kept.contains("fn g()") && kept.contains("fn h()"), "{kept}");
    assert!(!kept.contains("crate::search") && !kept.contains("crate::agent"), "{kept}");
    let module = vec!["data".to_string(), "x".to_string()];
    let names = used(&kept, &module);
    assert!(names.contains(&"train".to_string()), "{names:?}");
}

#[test]
fn super_paths_resolve_from_the_file() {
    let module = module_of(Path::new("src/data/folder/x.rs"));
    assert_eq!(module, ["data", "folder", "x"]);
    let text =
        "use super::y; use super::super::Loader; use super::super::super::{train, agent::Sac};";
    assert_eq!(used(text, &module), ["agent", "data", "train"]);
    assert_eq!(module_of(Path::new("src/ir/ops/mod.rs")), ["ir", "ops"]);
    assert_eq!(
        used("super::super::super::x", &["ir".into()]),
        ["<above the crate root: super::super::super::>"]
    );
}

/// `text` with its strings, chars and comments blanked out.
fn without_literals(text: &str) -> String {
    let b = text.as_bytes();
    let (mut out, mut i, mut from) = (String::new(), 0, 0);
    while i < b.len() {
        match skip_literal(b, i) {
            Some(end) => {
                out.push_str(&text[from..i]);
                out.push(' ');
                i = end.min(b.len());
                from = i;
            }
            None => i += 1,
        }
    }
    out.push_str(&text[from.min(text.len())..]);
    out
}

/// The engines' crates and modules that `text` names as a path (`ort::..`, `..::tract`,
/// `{ort, ..}`).
fn engine_paths(text: &str) -> Vec<String> {
    const ENGINES: [&str; 4] = ["ort", "tract", "tract_onnx", "tract_core"];
    let code = without_literals(text);
    let b = code.as_bytes();
    let mut found = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if !ident(b[i]) || (i > 0 && ident(b[i - 1])) {
            i += 1;
            continue;
        }
        let end = (i..b.len()).find(|&k| !ident(b[k])).unwrap_or(b.len());
        let word = &code[i..end];
        let before = code[..i].trim_end();
        let path = code[end..].starts_with("::") || before.ends_with("::") || before.ends_with('{');
        if ENGINES.contains(&word) && path {
            found.push(word.to_string());
        }
        i = end;
    }
    found
}

/// Only the runtime layer (`src/validate`) names an engine's API: search, the CLI and
/// the stages below go through `validate` (a new runtime is a file there).
#[test]
fn engines_are_named_only_in_the_runtime_layer() {
    let mut files = Vec::new();
    sources(Path::new("src"), &mut files);
    let mut bad = Vec::new();
    for f in files.iter().filter(|f| !f.starts_with("src/validate")) {
        for e in engine_paths(&code(f)) {
            bad.push(format!("{} names {e}", f.display()));
        }
    }
    assert!(bad.is_empty(), "engine APIs outside src/validate:\n{}", bad.join("\n"));
    let text =
        "use rlal::validate::{ort, Runner}; let x = tract_onnx::onnx(); f.ort = 1; \"ort::x\"";
    assert_eq!(engine_paths(text), ["ort", "tract_onnx"]);
}
