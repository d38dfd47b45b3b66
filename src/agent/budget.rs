//! The pruning environment's bookkeeping: per-layer state features (paper
//! Eq. 1) and action bounds (appendix A, Eq. 12–13), computed exactly with the
//! analysis' cost model, so every episode ends at or below the MACs target and
//! within one channel's granularity of it.
use crate::analysis::{CostModel, Layer};

/// Number of state features per layer.
pub const STATE_DIM: usize = 9;

/// The layers the agent prunes and the budget it prunes them to.
#[derive(Clone, Debug)]
pub struct Budget {
    pub cost: CostModel,
    /// Group id of each agent layer, in graph order.
    pub groups: Vec<usize>,
    pub layers: Vec<Layer>,
    /// Target MACs per sample.
    pub target: u64,
    /// Fewest channels a layer may keep (from the recipe's max pruning ratio, at least 1).
    pub min_keep: Vec<usize>,
    full_macs: u64,
    max_c: f32,
    max_k: f32,
    max_s: f32,
}

/// Why a budget is impossible.
#[derive(Debug, thiserror::Error)]
pub enum BudgetError {
    #[error("MACs budget ratio {ratio} must be in (0, 1)")]
    Ratio { ratio: f64 },
    #[error("impossible budget: target {target} MACs ({ratio:.3} of {full}) is below {floor} MACs, what the model costs with every prunable layer at its minimum width (fixed layers alone cost {fixed})")]
    Infeasible { target: u64, ratio: f64, full: u64, floor: u64, fixed: u64 },
    #[error("the model has no prunable layers: nothing to search")]
    NoLayers,
}

impl Budget {
    /// `ratio`: target MACs / full MACs; `max_prune`: largest fraction of a layer's channels that may go.
    pub fn new(cost: CostModel, layers: Vec<Layer>, ratio: f64, max_prune: f64) -> Result<Budget, BudgetError> {
        if !(ratio > 0.0 && ratio < 1.0) {
            return Err(BudgetError::Ratio { ratio });
        }
        if layers.is_empty() {
            return Err(BudgetError::NoLayers);
        }
        let full_macs = cost.full_macs();
        let target = (full_macs as f64 * ratio).floor() as u64;
        let min_keep: Vec<usize> = layers.iter().map(|l| ((l.channels as f64 * (1.0 - max_prune)).ceil() as usize).clamp(1, l.channels)).collect();
        let groups: Vec<usize> = layers.iter().map(|l| l.group).collect();
        let b = Budget {
            max_c: layers.iter().map(|l| l.channels.max(l.c_in)).max().unwrap_or(1) as f32,
            max_k: layers.iter().map(|l| l.kernel).max().unwrap_or(1) as f32,
            max_s: layers.iter().map(|l| l.stride).max().unwrap_or(1) as f32,
            cost,
            groups,
            layers,
            target,
            min_keep,
            full_macs,
        };
        let floor = b.macs_with(&[], |j| b.min_keep[j]);
        if floor > target {
            let mut zero = b.cost.full.clone();
            for &g in &b.groups {
                zero[g] = 0;
            }
            return Err(BudgetError::Infeasible { target, ratio, full: full_macs, floor, fixed: b.cost.macs(&zero) });
        }
        Ok(b)
    }

    pub fn full_macs(&self) -> u64 {
        self.full_macs
    }

    /// MACs with layers `0..kept.len()` at `kept` and the later ones at `rest(j)`.
    fn macs_with(&self, kept: &[usize], rest: impl Fn(usize) -> usize) -> u64 {
        let mut k = self.cost.full.clone();
        for (j, &g) in self.groups.iter().enumerate() {
            k[g] = if j < kept.len() { kept[j] } else { rest(j) };
        }
        self.cost.macs(&k)
    }

    /// Full per-group kept vector from per-layer kept counts.
    pub fn kept_vector(&self, kept: &[usize]) -> Vec<usize> {
        let mut k = self.cost.full.clone();
        for (j, &g) in self.groups.iter().enumerate() {
            if j < kept.len() {
                k[g] = kept[j];
            }
        }
        k
    }

    /// Achieved MACs of a complete episode.
    pub fn macs(&self, kept: &[usize]) -> u64 {
        self.cost.macs(&self.kept_vector(kept))
    }

    /// Bounds on the channels layer `l = kept.len()` may keep: at most what
    /// still lets the remaining layers (at their minimum) meet the target
    /// (Eq. 12), at least what still reaches the target with the remaining
    /// layers intact (Eq. 13). Feasibility wins when both cannot hold.
    pub fn keep_bounds(&self, kept: &[usize]) -> (usize, usize) {
        let l = kept.len();
        let c = self.layers[l].channels;
        let lo = self.min_keep[l];
        let with = |k: usize, rest_full: bool| {
            let mut v = kept.to_vec();
            v.push(k);
            self.macs_with(&v, |j| if rest_full { self.layers[j].channels } else { self.min_keep[j] })
        };
        // Largest k with macs(min rest) <= target (monotone in k).
        let (mut a, mut b) = (lo, c);
        if with(lo, false) > self.target {
            return (lo, lo);
        }
        while a < b {
            let m = (a + b).div_ceil(2);
            if with(m, false) <= self.target {
                a = m;
            } else {
                b = m - 1;
            }
        }
        let kmax = a;
        // Smallest k in [lo, kmax] with macs(full rest) >= target.
        let (mut a, mut b) = (lo, kmax);
        if with(kmax, true) < self.target {
            return (kmax, kmax);
        }
        while a < b {
            let m = (a + b) / 2;
            if with(m, true) >= self.target {
                b = m;
            } else {
                a = m + 1;
            }
        }
        (a, kmax)
    }

    /// Channels kept for action `a` (pruning ratio in [0,1]) on layer `kept.len()`:
    /// remove floor(a·c), then clip to the bounds.
    pub fn apply(&self, kept: &[usize], a: f32) -> usize {
        let c = self.layers[kept.len()].channels;
        let removed = ((a.clamp(0.0, 1.0) as f64) * c as f64).floor() as usize;
        let (lo, hi) = self.keep_bounds(kept);
        (c - removed.min(c)).clamp(lo, hi)
    }

    /// MACs of layer `j`'s terms at the given per-group kept vector.
    fn layer_macs(&self, j: usize, kv: &[usize]) -> u64 {
        let g = self.groups[j];
        self.cost.terms.iter().filter(|t| t.weight.axes.iter().any(|a| matches!(a, Some((x, _)) if *x == g))).map(|t| t.factor * t.weight.numel(kv)).sum()
    }

    /// State of layer `l = kept.len()` (Eq. 1), normalised:
    /// [l/L, C_in, C, stride, k, MACs[l], MACs of pruned layers, MACs of the rest, a_{l-1}].
    pub fn state(&self, kept: &[usize], prev_action: f32) -> [f32; STATE_DIM] {
        let l = kept.len();
        let layer = &self.layers[l];
        let kv = self.kept_vector(kept);
        let total = self.full_macs.max(1) as f32;
        let done: u64 = (0..l).map(|j| self.layer_macs(j, &kv)).sum();
        let rest: u64 = (l + 1..self.layers.len()).map(|j| self.layer_macs(j, &kv)).sum();
        [
            l as f32 / self.layers.len() as f32,
            layer.c_in as f32 / self.max_c,
            layer.channels as f32 / self.max_c,
            layer.stride as f32 / self.max_s,
            layer.kernel as f32 / self.max_k,
            self.layer_macs(l, &kv) as f32 / total,
            done as f32 / total,
            rest as f32 / total,
            prev_action,
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;
    use std::path::Path;

    fn budget(file: &str, ratio: f64) -> Budget {
        let (_, a) = crate::analysis::import(&Path::new(env!("CARGO_MANIFEST_DIR")).join("graphs").join(file), &Default::default()).unwrap();
        Budget::new(a.cost, a.layers, ratio, 0.9).unwrap()
    }

    #[test]
    fn every_episode_ends_at_or_just_below_the_target() {
        for (file, ratio) in [("resnet56_cifar.onnx", 0.5), ("mobilenetv2_cifar.onnx", 0.5), ("mnist_cnn.onnx", 0.3), ("resnet20_cifar.onnx", 0.7)] {
            let b = budget(file, ratio);
            let mut rng = Rng::new(3);
            for ep in 0..40 {
                let mut kept = Vec::new();
                for _ in 0..b.layers.len() {
                    let a = if ep == 0 { 0.0 } else if ep == 1 { 1.0 } else { rng.uniform_f32() };
                    kept.push(b.apply(&kept, a));
                }
                let m = b.macs(&kept);
                assert!(m <= b.target, "{file} episode {ep}: {m} > {}", b.target);
                // One more channel on the last layer would cross the target.
                let last = kept.len() - 1;
                if kept[last] < b.layers[last].channels {
                    let mut more = kept.clone();
                    more[last] += 1;
                    assert!(b.macs(&more) > b.target, "{file} episode {ep}: {m} is more than one channel below {}", b.target);
                }
            }
        }
    }

    #[test]
    fn impossible_budgets_are_rejected_with_the_floor() {
        let (_, a) = crate::analysis::import(&Path::new(env!("CARGO_MANIFEST_DIR")).join("graphs/resnet20_cifar.onnx"), &Default::default()).unwrap();
        let e = Budget::new(a.cost.clone(), a.layers.clone(), 0.05, 0.9).unwrap_err().to_string();
        assert!(e.contains("impossible budget") && e.contains("fixed layers alone cost"), "{e}");
        assert!(Budget::new(a.cost.clone(), a.layers.clone(), 1.0, 0.9).is_err());
        assert!(Budget::new(a.cost, vec![], 0.5, 0.9).is_err());
    }

    #[test]
    fn state_features_are_normalised() {
        let b = budget("resnet56_cifar.onnx", 0.5);
        let s = b.state(&[], 0.0);
        assert_eq!(s[0], 0.0);
        assert!(s.iter().all(|v| (0.0..=1.0).contains(v)), "{s:?}");
        let kept: Vec<usize> = b.layers[..10].iter().map(|l| l.channels / 2).collect();
        let s = b.state(&kept, 0.5);
        assert!(s[6] > 0.0 && s[7] > 0.0 && s[8] == 0.5);
    }
}
