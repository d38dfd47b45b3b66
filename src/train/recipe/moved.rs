//! Recipe fields that moved when recipes got sections (2026-12): one table for
//! `rlal train` and `rlal prune` recipes, and [`check`], which turns an old flat
//! field into an error naming its new place at the field's line (serde_yaml's
//! location of the key; see docs/RECIPES.md for the table in prose).
use std::fmt;

/// The command whose recipe is read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    Train,
    Prune,
}

/// The fields of the `training:` section, top-level fields of both commands'
/// recipes before 2026-12 (same names).
pub const TRAINING: [&str; 29] = [
    "epochs",
    "batch-size",
    "lr",
    "min-lr",
    "schedule",
    "milestones",
    "gamma",
    "lr-warmup-epochs",
    "momentum",
    "nesterov",
    "weight-decay",
    "label-smoothing",
    "seed",
    "threads",
    "workers",
    "scale",
    "mean",
    "std",
    "crop-pad",
    "crop-fraction",
    "random-resized-crop",
    "hflip",
    "insert-bn",
    "keep-bn",
    "eval-every",
    "train-samples",
    "device",
    "precision",
    "channels-last",
];

/// Top-level fields of prune recipes before 2026-12 now in `search:` (same names).
pub const SEARCH: [&str; 14] = [
    "buffer-epochs",
    "agent-epochs",
    "episodes-per-epoch",
    "reward-samples",
    "reward-batch-size",
    "reward-bn-samples",
    "reward-engine",
    "reward-ort-batch",
    "reward-ort-pad",
    "selection",
    "incumbents",
    "alignment",
    "beta",
    "criterion",
];

/// Renamed top-level fields: (the command whose recipes had it, old name, new path).
pub const RENAMED: [(Command, &str, &str); 4] = [
    (Command::Prune, "warmup-epochs", "search.weights-only-epochs"),
    (Command::Prune, "finetune-epochs", "finetune.epochs"),
    (Command::Prune, "finetune-lr", "finetune.lr"),
    // Train recipes called the learning-rate warm-up `warmup-epochs` before `lr-warmup-epochs`.
    (Command::Train, "warmup-epochs", "training.lr-warmup-epochs"),
];

/// Where top-level field `old` of a `cmd` recipe before 2026-12 is now (`None`: not moved).
pub fn new_place(old: &str, cmd: Command) -> Option<String> {
    if TRAINING.contains(&old) {
        return Some(format!("training.{old}"));
    }
    if cmd == Command::Prune && SEARCH.contains(&old) {
        return Some(format!("search.{old}"));
    }
    RENAMED.iter().find(|(c, o, _)| *c == cmd && *o == old).map(|(_, _, new)| new.to_string())
}

/// An old flat field in a recipe: where it is now, and where it was found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MovedField {
    pub old: String,
    pub new: String,
    /// 1-based line and column of the field (serde_yaml's location of the key).
    pub line: usize,
    pub column: usize,
}

impl fmt::Display for MovedField {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "'{}' is now '{}' (recipes have sections since 2026-12; see docs/RECIPES.md) at line {} column {}",
            self.old, self.new, self.line, self.column
        )
    }
}

/// The first top-level key of `text` that is an old flat field of `cmd` recipes;
/// `Ok` otherwise, also for text that is no mapping or no YAML (the recipe's own
/// parse reports those).
pub fn check(text: &str, cmd: Command) -> Result<(), MovedField> {
    let found = super::place::find_key(text, &[], &|k| new_place(k, cmd).is_some());
    match found.and_then(|(old, at)| Some((new_place(&old, cmd)?, old, at))) {
        Some((new, old, at)) => Err(MovedField { old, new, line: at.line, column: at.column }),
        None => Ok(()),
    }
}

/// The top-level fields of prune recipes before 2026-12-07 that spelled `field` of
/// the budget, still read: `macs-ratio: R` is `budget: {metric: macs, ratio: R}`
/// (likewise `params-ratio`, `latency-ratio`), `latency-batch: B` a latency
/// budget's `batch: B` (docs/RECIPES.md). Empty for other fields.
pub fn old_budget_fields(field: &str) -> &'static [&'static str] {
    const RATIOS: &[&str] = &["macs-ratio", "params-ratio", "latency-ratio"];
    match field {
        "budget" | "budget.metric" | "budget.ratio" => RATIOS,
        "budget.batch" => &["latency-batch"],
        _ => &[],
    }
}

/// The serialised field names of a section's defaults, sorted (the tests keep the
/// tables above in step with the structs).
#[cfg(test)]
pub fn field_names<T: serde::Serialize>(section: &T) -> Vec<String> {
    let v = serde_yaml::to_value(section).expect("a section serialises");
    let mut fields: Vec<String> = v
        .as_mapping()
        .expect("a mapping")
        .keys()
        .filter_map(|k| k.as_str())
        .map(String::from)
        .collect();
    fields.sort();
    fields
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moved_fields_error_at_their_line() {
        let e = check("model: m.onnx\n# comment\nlr: 0.1\n", Command::Prune).unwrap_err();
        assert_eq!((e.old.as_str(), e.new.as_str(), e.line, e.column), ("lr", "training.lr", 3, 1));
        assert_eq!(e.to_string(), "'lr' is now 'training.lr' (recipes have sections since 2026-12; see docs/RECIPES.md) at line 3 column 1");
        // The first field of the text (serde_yaml's own messages leave its position out).
        let e = check("seed: 1\n", Command::Train).unwrap_err();
        assert!(e.to_string().ends_with("at line 1 column 1"), "{e}");
        let e = check("model: m\nwarmup-epochs: 2\n", Command::Prune).unwrap_err();
        assert!(
            e.to_string().contains("'warmup-epochs' is now 'search.weights-only-epochs'"),
            "{e}"
        );
        let e = check("model: m\nwarmup-epochs: 2\n", Command::Train).unwrap_err();
        assert!(
            e.to_string().contains("'warmup-epochs' is now 'training.lr-warmup-epochs'"),
            "{e}"
        );
        let e = check("finetune-lr: 0.01\n", Command::Prune).unwrap_err();
        assert!(e.to_string().contains("is now 'finetune.lr'"), "{e}");
    }

    #[test]
    fn new_shapes_and_other_errors_pass() {
        let ok = "model: m\ntraining:\n  lr: 0.1\nsearch:\n  beta: 0.01\n";
        check(ok, Command::Prune).unwrap();
        // Prune-only fields are not moved train fields (the parse calls them unknown).
        check("beta: 0.01\n", Command::Train).unwrap();
        for not_a_recipe in ["- 1\n- 2\n", "just text\n", "a: [\n", "1: x\n", "? [a]\n: 1\n"] {
            check(not_a_recipe, Command::Prune).unwrap();
        }
    }
}
