//! The budget of a prune recipe as one value, [`BudgetSpec`]
//! (`budget: {metric: macs, ratio: 0.5}`), and its spelling before 2026-12-07 (the
//! top-level `macs-ratio: 0.5`, `params-ratio`, `latency-ratio`, `latency-batch`),
//! still read: [`fold_old`] turns it into the one value when a recipe is parsed
//! (docs/RECIPES.md, "The budget").
use crate::agent::Metric;
use crate::train::recipe::{place, RecipeError};
use serde::{Deserialize, Serialize};

/// What the search prunes to (`budget:`): the pruned model's `metric` at most
/// `ratio` of the unpruned model's.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(from = "BudgetFields", into = "BudgetFields")]
pub struct BudgetSpec {
    /// `macs` (the paper's budget), `params`, or `latency`: estimated from a per-layer
    /// ONNX Runtime latency table measured at the start of the run on this machine
    /// (BN folded, `training.threads`; docs/METHOD.md).
    pub metric: Metric,
    /// Target figure / the unpruned model's, in (0, 1).
    pub ratio: f64,
    /// The batch size the latency table (and the reported budget latency) is measured
    /// at. Only a latency budget reads it (and only its recipe may give it). Default 1.
    pub batch: usize,
}

impl BudgetSpec {
    /// `metric` at `ratio`, batch 1.
    pub fn new(metric: Metric, ratio: f64) -> BudgetSpec {
        BudgetSpec { metric, ratio, batch: 1 }
    }
}

/// `budget:` as written: `batch` given for `metric: latency` only (a recipe
/// that gives it for another metric is refused by [`fold_old`], at its line).
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping {metric: macs|params|latency, ratio: R}")]
struct BudgetFields {
    metric: Metric,
    ratio: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    batch: Option<usize>,
}

impl From<BudgetFields> for BudgetSpec {
    fn from(b: BudgetFields) -> BudgetSpec {
        BudgetSpec { batch: b.batch.unwrap_or(1), ..BudgetSpec::new(b.metric, b.ratio) }
    }
}

impl From<BudgetSpec> for BudgetFields {
    fn from(b: BudgetSpec) -> BudgetFields {
        let batch = (b.metric == Metric::Latency).then_some(b.batch);
        BudgetFields { metric: b.metric, ratio: b.ratio, batch }
    }
}

/// A top-level field of the budget's spelling before 2026-12-07: read from a recipe's
/// text and taken by [`Recipe::parse`](super::Recipe::parse) into the budget
/// ([`fold_old`]); its value is private, so nothing else reads it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Old<T>(Option<T>);

impl<T> Old<T> {
    /// The value given, leaving none.
    pub(super) fn take(&mut self) -> Option<T> {
        self.0.take()
    }
}

/// The old spelling's top-level fields of the ratio, by metric.
pub const OLD_RATIOS: [(Metric, &str); 3] = [
    (Metric::Macs, "macs-ratio"),
    (Metric::Params, "params-ratio"),
    (Metric::Latency, "latency-ratio"),
];

/// The budget of recipe `text` that gives `new` (`budget:`), the old `ratios`
/// (by [`OLD_RATIOS`]) and the old `latency-batch`. The old fields read as before:
/// `macs-ratio: R` is `budget: {metric: macs, ratio: R}`, and `latency-batch` is the
/// batch (which only a latency budget reads, so `--latency-ratio` over a recipe
/// with `macs-ratio` and `latency-batch` measures at that batch, as before).
/// Errors (naming the fields and lines): two ratios, both spellings, a
/// `latency-batch` without any ratio, or `budget.batch` for another metric than latency.
pub fn fold_old(
    new: Option<BudgetSpec>,
    ratios: [Option<f64>; 3],
    batch: Option<usize>,
    text: &str,
) -> Result<Option<BudgetSpec>, RecipeError> {
    let given: Vec<(Metric, &str, f64)> =
        OLD_RATIOS.iter().zip(ratios).filter_map(|(&(m, f), r)| Some((m, f, r?))).collect();
    let bad = |field: &str, why: String| Err(RecipeError::field(field, why).in_text(text));
    let batch_given = place::find_key(text, &["budget"], &|k| k == "batch").is_some();
    match (new, &given[..], batch) {
        (Some(b), _, _) if batch_given && b.metric != Metric::Latency => bad(
            "budget.batch",
            format!("is the batch of a latency budget's measurements; a {} budget has none", b.metric.key()),
        ),
        (new, [], None) => Ok(new),
        (None, [], Some(_)) => bad(
            "latency-batch",
            "is the batch of a latency budget, and the recipe gives none: write `budget: {metric: latency, ratio: R, batch: B}`".into(),
        ),
        (Some(_), [(_, old, _), ..], _) => {
            bad("budget", format!("is given twice: '{old}'{} is its spelling before 2026-12-07; keep one (docs/RECIPES.md)", at(text, old)))
        }
        (Some(_), [], Some(_)) => bad(
            "budget",
            format!("is given twice: 'latency-batch'{} is the spelling of budget.batch before 2026-12-07; keep one (docs/RECIPES.md)", at(text, "latency-batch")),
        ),
        (None, [(_, first, _), (_, second, _), ..], _) => bad(
            second,
            format!("give one budget: '{first}'{} is a budget too", at(text, first)),
        ),
        (None, [(metric, _, ratio)], batch) => {
            Ok(Some(BudgetSpec { batch: batch.unwrap_or(1), ..BudgetSpec::new(*metric, *ratio) }))
        }
    }
}

/// ` (line N)` of top-level `field` in `text` (empty when not found).
fn at(text: &str, field: &str) -> String {
    place::locate(text, field).map(|l| format!(" (line {})", l.line)).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::recipe::moved;

    fn fold(text: &str) -> Result<Option<BudgetSpec>, String> {
        let v: serde_yaml::Value = serde_yaml::from_str(text).unwrap();
        let new = v.get("budget").map(|b| serde_yaml::from_value(b.clone()).unwrap());
        let ratios = OLD_RATIOS.map(|(_, f)| v.get(f).and_then(|r| r.as_f64()));
        let batch = v.get("latency-batch").and_then(|b| b.as_u64()).map(|b| b as usize);
        fold_old(new, ratios, batch, text).map_err(|e| e.to_string())
    }

    #[test]
    fn the_old_spelling_is_the_same_budget() {
        let macs = Some(BudgetSpec::new(Metric::Macs, 0.5));
        assert_eq!(fold("macs-ratio: 0.5\n"), Ok(macs));
        assert_eq!(fold("budget: {metric: macs, ratio: 0.5}\n"), Ok(macs));
        let lat = BudgetSpec { batch: 8, ..BudgetSpec::new(Metric::Latency, 0.7) };
        assert_eq!(fold("latency-ratio: 0.7\nlatency-batch: 8\n"), Ok(Some(lat)));
        assert_eq!(fold("budget:\n  metric: latency\n  ratio: 0.7\n  batch: 8\n"), Ok(Some(lat)));
        assert_eq!(fold("params-ratio: 0.6\n").unwrap().unwrap().metric, Metric::Params);
        assert_eq!(fold("name: x\n"), Ok(None));
        // The names the recipe's errors look the old fields up by.
        assert_eq!(moved::old_budget_fields("budget.ratio"), OLD_RATIOS.map(|(_, f)| f));
    }

    #[test]
    fn two_budgets_are_refused_naming_both_fields() {
        let e = fold("macs-ratio: 0.5\nlatency-ratio: 0.6\n").unwrap_err();
        assert_eq!(e, "field 'latency-ratio' at line 2 column 1: give one budget: 'macs-ratio' (line 1) is a budget too");
        let e = fold("name: x\nbudget: {metric: macs, ratio: 0.5}\nmacs-ratio: 0.5\n").unwrap_err();
        assert!(e.starts_with("field 'budget' at line 2 column 1: is given twice: 'macs-ratio' (line 3) is its spelling before 2026-12-07"), "{e}");
        let e = fold("budget: {metric: latency, ratio: 0.5}\nlatency-batch: 4\n").unwrap_err();
        assert!(e.contains("'latency-batch' (line 2) is the spelling of budget.batch"), "{e}");
        let e = fold("latency-batch: 4\n").unwrap_err();
        assert!(
            e.starts_with(
                "field 'latency-batch' at line 1 column 1: is the batch of a latency budget"
            ),
            "{e}"
        );
    }

    #[test]
    fn batch_is_a_latency_budgets_only() {
        let e = fold("name: x\nbudget:\n  metric: macs\n  batch: 4\n  ratio: 0.5\n").unwrap_err();
        assert_eq!(e, "field 'budget.batch' at line 4 column 3: is the batch of a latency budget's measurements; a macs budget has none");
        let y =
            serde_yaml::to_string(&BudgetSpec { batch: 4, ..BudgetSpec::new(Metric::Macs, 0.5) });
        assert_eq!(y.unwrap(), "metric: macs\nratio: 0.5\n");
        let lat = BudgetSpec { batch: 4, ..BudgetSpec::new(Metric::Latency, 0.5) };
        let y = serde_yaml::to_string(&lat).unwrap();
        assert_eq!(serde_yaml::from_str::<BudgetSpec>(&y).unwrap(), lat);
    }
}
