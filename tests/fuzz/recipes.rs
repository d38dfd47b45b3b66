//! Recipes: random edits of `recipes/*.yaml` through both recipe parsers and the schedules.
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

/// One edit of a recipe's text.
fn mutate_recipe(text: &str, keys: &[String], rng: &mut Rng) -> String {
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
            // A known field (perhaps nested, perhaps twice) with an absurd value.
            let key = &keys[rng.below_usize(keys.len())];
            let v = YAML_VALUES[rng.below_usize(YAML_VALUES.len())];
            lines.insert(rng.below_usize(lines.len() + 1), format!("{key}: {v}"));
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
                *l = format!("{}{l}", ["  ", "- ", "\t", "? ", "agent:\n  "][rng.below_usize(5)]);
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
    use rlal::train::schedule::Schedule;
    if let Ok(r) = rlal::search::recipe::Recipe::parse(text) {
        if r.check().is_ok() {
            let _ = (r.ratio(), r.metric(), r.agent.state_dim(), serde_yaml::to_string(&r));
            let t = r.train_recipe(r.epochs);
            let _ = t.check();
            let spe = 10;
            let s = Schedule {
                base_lr: r.lr,
                min_lr: r.min_lr,
                warmup_steps: (r.lr_warmup_epochs * spe as f64).round() as usize,
                steps_per_epoch: spe,
                total_steps: r.epochs * spe,
                decay: t.decay(),
            };
            for step in [0, 1, s.warmup_steps, s.total_steps / 2, s.total_steps.saturating_sub(1)] {
                let _ = s.lr(step);
            }
        }
    }
    if let Ok(t) = rlal::train::recipe::Recipe::parse(text) {
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
        let _ = serde_yaml::to_string(&t);
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
            keys.extend(
                t.lines()
                    .filter_map(|l| l.split_once(':'))
                    .map(|(k, _)| k.trim().to_string())
                    .filter(|k| !k.is_empty() && !k.starts_with('#')),
            );
            texts.push(t);
        }
    }
    keys.sort();
    keys.dedup();
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
