//! Recipes: random edits of `recipes/*.yaml` (fields inserted in their sections) through
//! both recipe parsers and the schedules.
use super::{cases, guarded, root, seed, Failures, Outcome, DEFAULT_CASES, LIMIT};
use rlal::rng::Rng;
use std::time::Instant;

/// Values that break assumptions, as YAML.
const YAML_VALUES: [&str; 24] = [
    "-1",
    "0",
    "1e308",
    ".nan",
    ".inf",
    "-.inf",
    "\"\"",
    "[]",
    "{}",
    "18446744073709551616",
    "18446744073709551615",
    "-0.0",
    "1e-300",
    "abc",
    "3.5",
    "true",
    "null",
    "[0, -1, 1e9]",
    "[.nan]",
    "{a: 1}",
    "!!binary aGk=",
    "&a [*a]",
    "'\u{0}'",
    "999999999999",
];

/// A field of the recipes: its section (`None`: top level) and its name.
type Key = (Option<String>, String);

/// Every field of `text` with its section (a top-level `name:` line without a value opens one).
fn recipe_keys(text: &str) -> Vec<Key> {
    let mut section = None;
    let mut keys = Vec::new();
    for l in text.lines().filter(|l| !l.trim_start().starts_with('#')) {
        let Some((k, v)) = l.split_once(':') else { continue };
        let indented = l.starts_with(' ');
        if !indented {
            let opens = v.split('#').next().unwrap_or("").trim().is_empty();
            section = opens.then(|| k.trim().to_string());
        }
        if !k.trim().is_empty() && (indented || section.is_none()) {
            keys.push((section.clone().filter(|_| indented), k.trim().to_string()));
        }
    }
    keys
}

/// Every field of both recipe shapes, from their defaults (also those no file in recipes/ sets).
fn all_keys() -> Vec<Key> {
    let prune = serde_yaml::to_value(rlal::search::Recipe::default()).unwrap();
    let train = serde_yaml::to_value(rlal::train::recipe::Recipe::default()).unwrap();
    let mut keys = Vec::new();
    for v in [prune, train] {
        for (k, v) in v.as_mapping().unwrap() {
            let k = k.as_str().unwrap().to_string();
            match v.as_mapping() {
                Some(m) => keys
                    .extend(m.keys().map(|f| (Some(k.clone()), f.as_str().unwrap().to_string()))),
                None => keys.push((None, k)),
            }
        }
    }
    keys
}

/// Inserts `key: value` into `lines`: a top-level field anywhere, a section's field
/// just under the section's line (the section is added at the end when missing).
fn insert_field(lines: &mut Vec<String>, (section, key): &Key, value: &str, rng: &mut Rng) {
    match section {
        None => lines.insert(rng.below_usize(lines.len() + 1), format!("{key}: {value}")),
        Some(s) => match lines.iter().position(|l| l.trim_end() == format!("{s}:")) {
            Some(i) => lines.insert(i + 1, format!("  {key}: {value}")),
            None => lines.push(format!("{s}:\n  {key}: {value}")),
        },
    }
}

/// One edit of a recipe's text.
fn mutate_recipe(text: &str, keys: &[Key], rng: &mut Rng) -> String {
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    let n = lines.len().max(1);
    match rng.below_usize(8) {
        0..=2 => {
            // A field gets an absurd value.
            let k = rng.below_usize(n);
            if let Some(l) = lines.get_mut(k) {
                if let Some(i) = l.find(": ") {
                    l.truncate(i + 2);
                    l.push_str(YAML_VALUES[rng.below_usize(YAML_VALUES.len())]);
                }
            }
        }
        3 => {
            // A known field (in its section, perhaps twice) with an absurd value.
            let key = &keys[rng.below_usize(keys.len())];
            let v = YAML_VALUES[rng.below_usize(YAML_VALUES.len())];
            insert_field(&mut lines, key, v, rng);
        }
        4 => {
            if !lines.is_empty() {
                lines.remove(rng.below_usize(n));
            }
        }
        5 => {
            let (a, b) = (rng.below_usize(n), rng.below_usize(n));
            if a < lines.len() && b < lines.len() {
                lines.swap(a, b);
            }
        }
        6 => {
            let k = rng.below_usize(n);
            if let Some(l) = lines.get_mut(k) {
                let prefixes =
                    ["  ", "- ", "\t", "? ", "agent:\n  ", "training:\n  ", "search:\n  "];
                *l = format!("{}{l}", prefixes[rng.below_usize(prefixes.len())]);
            }
        }
        _ => {
            // Bytes: a cut or a flipped byte (kept as UTF-8, lossily).
            let mut b = lines.join("\n").into_bytes();
            let p = rng.below_usize(b.len().max(1));
            if rng.bernoulli(0.5) {
                b.truncate(p);
            } else if let Some(x) = b.get_mut(p) {
                *x ^= 1 << rng.below_usize(8);
            }
            return String::from_utf8_lossy(&b).into_owned();
        }
    }
    lines.join("\n")
}

/// What `rlal prune` / `rlal train` do with a recipe before touching models or data.
pub(super) fn recipe_pipeline(text: &str) {
    if let Ok(r) = rlal::search::recipe::Recipe::parse(text) {
        if r.check().is_ok() {
            let _ = (r.budget(), r.agent.state_dim(9), serde_yaml::to_string(&r));
            for t in [&r.training, &r.finetune_training()] {
                let _ = t.check();
                schedule_lrs(t);
            }
        }
    }
    if let Ok(t) = rlal::train::recipe::Recipe::parse(text) {
        schedule_lrs(&t.training);
        let _ = serde_yaml::to_string(&t);
    }
}

/// The learning rates of a training section's schedule at its corners.
fn schedule_lrs(t: &rlal::train::recipe::Training) {
    use rlal::train::schedule::Schedule;
    let spe = 10;
    let s = Schedule {
        base_lr: t.lr,
        min_lr: t.min_lr,
        warmup_steps: (t.lr_warmup_epochs * spe as f64).round() as usize,
        steps_per_epoch: spe,
        total_steps: t.epochs * spe,
        decay: t.decay(),
    };
    for step in [0, 1, s.warmup_steps, s.total_steps / 2, s.total_steps.saturating_sub(1)] {
        let _ = s.lr(step);
    }
}

#[test]
fn fuzz_recipes() {
    let n = cases(DEFAULT_CASES) * 2;
    let mut texts = Vec::new();
    let mut keys = Vec::new();
    for e in std::fs::read_dir(root().join("recipes")).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "yaml") {
            let t = std::fs::read_to_string(&p).unwrap();
            keys.extend(recipe_keys(&t));
            texts.push(t);
        }
    }
    // The recipes/ files have every section; the defaults add the fields no file sets.
    for s in ["training", "search", "finetune", "agent"] {
        assert!(keys.iter().any(|(k, _)| k.as_deref() == Some(s)), "no {s} field in recipes/");
    }
    keys.extend(all_keys());
    keys.sort();
    keys.dedup();
    assert!(keys.iter().filter(|(k, _)| k.as_deref() == Some("training")).count() >= 29);
    assert!(keys.contains(&(Some("finetune".into()), "lr".into())));
    let mut rng = seed(2);
    let mut fails = Failures::new("recipe");
    let t0 = Instant::now();
    for case in 0..n {
        let mut text = texts[rng.below_usize(texts.len())].clone();
        for _ in 0..1 + rng.below_usize(3) {
            text = mutate_recipe(&text, &keys, &mut rng);
        }
        let t = text.clone();
        match guarded(move || recipe_pipeline(&t)) {
            Outcome::Done(()) => {}
            Outcome::Panic(m) => {
                fails.add(case, "recipe", format!("panicked: {m}"), Some(("yaml", text.as_bytes())))
            }
            Outcome::Hang => fails.add(
                case,
                "recipe",
                format!("ran longer than {LIMIT:?}"),
                Some(("yaml", text.as_bytes())),
            ),
        }
    }
    fails.check(n, t0);
}
