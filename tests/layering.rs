//! The crate's layering (src/lib.rs): no module names a stage downstream of it
//! outside its unit tests, so the pipeline order stays the dependency order.
use std::path::Path;

const ORDER: [&str; 9] =
    ["ir", "onnx", "analysis", "data", "train", "agent", "rewrite", "validate", "search"];
/// Infrastructure below `train` (dist) or below everything (rng, util).
const BELOW_ALL: [&str; 2] = ["rng", "util"];

fn sources(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            sources(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The code of a file before its unit tests (`#[cfg(test)]` modules come last here;
/// files that are only tests are skipped).
fn code(p: &Path) -> String {
    let name = p.file_name().unwrap().to_string_lossy();
    if name.ends_with("_tests.rs") {
        return String::new();
    }
    let t = std::fs::read_to_string(p).unwrap();
    match t.find("#[cfg(test)]") {
        Some(i) => t[..i].to_string(),
        None => t,
    }
}

fn used(text: &str) -> Vec<String> {
    let mut v: Vec<String> = text
        .match_indices("crate::")
        .map(|(i, _)| {
            text[i + 7..].chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect()
        })
        .collect();
    v.sort();
    v.dedup();
    v
}

#[test]
fn no_module_reaches_downstream() {
    let mut bad = Vec::new();
    for (rank, m) in ORDER.iter().enumerate() {
        let mut files = Vec::new();
        sources(&Path::new("src").join(m), &mut files);
        assert!(!files.is_empty(), "src/{m} has no sources");
        for f in files {
            for d in used(&code(&f)) {
                if ORDER.iter().position(|o| *o == d).is_some_and(|r| r > rank) {
                    bad.push(format!("{} uses crate::{d}", f.display()));
                }
            }
        }
    }
    let mut infra = Vec::new();
    sources(Path::new("src/dist"), &mut infra);
    infra.extend(BELOW_ALL.iter().map(|m| Path::new("src").join(format!("{m}.rs"))));
    for f in infra {
        for d in used(&code(&f)) {
            if ORDER.contains(&d.as_str()) {
                bad.push(format!("{} (infrastructure) uses crate::{d}", f.display()));
            }
        }
    }
    assert!(bad.is_empty(), "arrows pointing downstream:\n{}", bad.join("\n"));
}
