//! The pruning environment's bookkeeping: per-layer state features (paper
//! Eq. 1) and action bounds (appendix A, Eq. 12–13), computed exactly with the
//! analysis' cost model, so every episode ends at or below the MACs target and
//! within one channel's granularity of it.
use crate::analysis::{CostModel, Layer};

/// Number of state features per layer.
pub const STATE_DIM: usize = 9;

/// What the budget limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Metric {
    /// Multiply-accumulates per sample (the paper's budget).
    Macs,
    /// Parameters (weights of convs, Gemm/MatMul, BN, biases).
    Params,
    /// Estimated inference latency (nanoseconds per batch) from a measured
    /// per-layer latency table ([`LatencyModel`]).
    Latency,
}

impl Metric {
    pub fn name(self) -> &'static str {
        match self {
            Metric::Macs => "MACs",
            Metric::Params => "params",
            Metric::Latency => "ns (estimated latency)",
        }
    }

    /// The recipe / report key: `macs`, `params`, `latency`.
    pub fn key(self) -> &'static str {
        match self {
            Metric::Macs => "macs",
            Metric::Params => "params",
            Metric::Latency => "latency",
        }
    }
}

/// A piecewise-linear, non-decreasing function on [0, 1]: measured latency
/// (ns) against a size fraction. Below the first point it is flat (latency
/// does not vanish with the work), above the last point too.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Curve {
    /// (fraction, ns), fractions strictly increasing, ns non-decreasing.
    pub points: Vec<(f64, f64)>,
}

impl Curve {
    /// A curve through measured points: sorted by fraction, points at the same
    /// fraction averaged, and made non-decreasing by a running maximum (timing
    /// noise must not make a narrower layer look slower than a wider one to
    /// the budget's bounds, which need monotone costs).
    pub fn fit(mut pts: Vec<(f64, f64)>) -> Curve {
        pts.retain(|(x, y)| x.is_finite() && y.is_finite());
        pts.sort_by(|a, b| a.0.total_cmp(&b.0));
        let mut out: Vec<(f64, f64, usize)> = Vec::new();
        for (x, y) in pts {
            match out.last_mut() {
                Some(l) if (l.0 - x).abs() < 1e-12 => {
                    l.1 += y.max(0.0);
                    l.2 += 1;
                }
                _ => out.push((x, y.max(0.0), 1)),
            }
        }
        let mut points: Vec<(f64, f64)> =
            out.into_iter().map(|(x, y, n)| (x, y / n as f64)).collect();
        for i in 1..points.len() {
            points[i].1 = points[i].1.max(points[i - 1].1);
        }
        Curve { points }
    }

    /// The value at fraction `x`.
    pub fn at(&self, x: f64) -> f64 {
        let p = &self.points;
        match p.len() {
            0 => 0.0,
            _ if x <= p[0].0 => p[0].1,
            n if x >= p[n - 1].0 => p[n - 1].1,
            _ => {
                let i = p.partition_point(|q| q.0 <= x);
                let ((x0, y0), (x1, y1)) = (p[i - 1], p[i]);
                y0 + (y1 - y0) * (x - x0) / (x1 - x0)
            }
        }
    }
}

/// Latency of a network as a function of its kept widths, from measurements:
/// one curve per weighted op (cost-model term) over that op's MACs fraction,
/// and one curve for everything else (activations, pooling, adds, runtime
/// overhead) over the whole model's MACs fraction. Built by
/// `rlal::search::latency` from ONNX Runtime timings of single-op models.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LatencyModel {
    /// Batch size the timings are for.
    pub batch: usize,
    /// Intra-op threads the timings used (0: the runtime's default).
    pub threads: usize,
    /// Name of the node of each cost-model term (same order as `CostModel::terms`).
    pub nodes: Vec<String>,
    /// Latency curve of each term.
    pub terms: Vec<Curve>,
    /// The rest of the network.
    pub rest: Curve,
    /// Measured whole-model latency (ns) per uniform keep fraction, for the report.
    pub measured: Vec<(f64, f64)>,
}

impl LatencyModel {
    /// Estimated latency (ns per batch) at per-group kept counts `kept`.
    pub fn eval(&self, cost: &CostModel, kept: &[usize]) -> u64 {
        let mut ns = 0.0;
        for (t, c) in cost.terms.iter().zip(&self.terms) {
            let full = t.weight.numel(&cost.full).max(1) as f64;
            ns += c.at(t.weight.numel(kept) as f64 / full);
        }
        ns += self.rest.at(cost.macs(kept) as f64 / cost.full_macs().max(1) as f64);
        ns.round() as u64
    }
}

/// The layers the agent prunes and the budget it prunes them to.
#[derive(Clone, Debug)]
pub struct Budget {
    pub cost: CostModel,
    /// Group id of each agent layer, in graph order.
    pub groups: Vec<usize>,
    pub layers: Vec<Layer>,
    /// What `target` counts.
    pub metric: Metric,
    /// The latency table of a [`Metric::Latency`] budget.
    pub latency: Option<LatencyModel>,
    /// Target of the metric (MACs per sample or parameters).
    pub target: u64,
    /// Fewest channels a layer may keep (from the recipe's max pruning ratio, at least 1).
    pub min_keep: Vec<usize>,
    /// Kept channel counts are rounded to multiples of this (or the full width) when the
    /// bounds allow: runtimes' blocked conv kernels (ONNX Runtime's NCHWc: 8 or 16) run
    /// unaligned widths slowly. 1 (default): the paper's floor rule only.
    pub multiple: usize,
    full_macs: u64,
    /// Requested ratio of the metric (for errors).
    ratio: f64,
    /// The metric of the unpruned model.
    full: u64,
    max_c: f32,
    max_k: f32,
    max_s: f32,
}

/// Why a budget is impossible.
#[derive(Debug, thiserror::Error)]
pub enum BudgetError {
    #[error("budget ratio {ratio} must be in (0, 1)")]
    Ratio { ratio: f64 },
    #[error("impossible budget: target {target} {metric} ({ratio:.3} of {full}) is below {floor} {metric}, what the model costs with every prunable layer at its minimum width (fixed layers alone cost {fixed})")]
    Infeasible { metric: &'static str, target: u64, ratio: f64, full: u64, floor: u64, fixed: u64 },
    #[error("the model has no prunable layers: nothing to search")]
    NoLayers,
    #[error("impossible latency budget: target {target} ns ({ratio:.3} of the estimated {full} ns per batch) is below {floor} ns, the latency table's estimate with every prunable layer at its minimum width (time that pruning channels cannot remove, e.g. per-op overhead; try a larger latency-ratio or latency-batch)")]
    LatencyFloor { target: u64, ratio: f64, full: u64, floor: u64 },
    #[error("a latency budget needs a measured latency table")]
    NoTable,
    #[error("the latency table has {terms} weighted ops but the model has {want}: it was measured on another model")]
    Table { terms: usize, want: usize },
}

impl Budget {
    /// `ratio`: target MACs / full MACs; `max_prune`: largest fraction of a layer's channels that may go.
    pub fn new(
        cost: CostModel,
        layers: Vec<Layer>,
        ratio: f64,
        max_prune: f64,
    ) -> Result<Budget, BudgetError> {
        Budget::with_metric(cost, layers, Metric::Macs, ratio, max_prune)
    }

    /// A budget on `metric` (MACs or params): target = floor(ratio × the unpruned model's figure).
    pub fn with_metric(
        cost: CostModel,
        layers: Vec<Layer>,
        metric: Metric,
        ratio: f64,
        max_prune: f64,
    ) -> Result<Budget, BudgetError> {
        if metric == Metric::Latency {
            return Err(BudgetError::NoTable);
        }
        Budget::build(cost, layers, metric, None, ratio, max_prune)
    }

    /// A latency budget: target = floor(ratio × the table's estimate for the unpruned model).
    pub fn with_latency(
        cost: CostModel,
        layers: Vec<Layer>,
        table: LatencyModel,
        ratio: f64,
        max_prune: f64,
    ) -> Result<Budget, BudgetError> {
        if table.terms.len() != cost.terms.len() {
            return Err(BudgetError::Table { terms: table.terms.len(), want: cost.terms.len() });
        }
        Budget::build(cost, layers, Metric::Latency, Some(table), ratio, max_prune)
    }

    fn build(
        cost: CostModel,
        layers: Vec<Layer>,
        metric: Metric,
        latency: Option<LatencyModel>,
        ratio: f64,
        max_prune: f64,
    ) -> Result<Budget, BudgetError> {
        if !(ratio > 0.0 && ratio < 1.0) {
            return Err(BudgetError::Ratio { ratio });
        }
        if layers.is_empty() {
            return Err(BudgetError::NoLayers);
        }
        let full_macs = cost.full_macs();
        let full = match (metric, &latency) {
            (Metric::Macs, _) => full_macs,
            (Metric::Params, _) => cost.full_params(),
            (Metric::Latency, Some(t)) => t.eval(&cost, &cost.full),
            (Metric::Latency, None) => return Err(BudgetError::NoTable),
        };
        let target = (full as f64 * ratio).floor() as u64;
        let min_keep: Vec<usize> = layers
            .iter()
            .map(|l| ((l.channels as f64 * (1.0 - max_prune)).ceil() as usize).clamp(1, l.channels))
            .collect();
        let groups: Vec<usize> = layers.iter().map(|l| l.group).collect();
        let b = Budget {
            max_c: layers.iter().map(|l| l.channels.max(l.c_in)).max().unwrap_or(1) as f32,
            max_k: layers.iter().map(|l| l.kernel).max().unwrap_or(1) as f32,
            max_s: layers.iter().map(|l| l.stride).max().unwrap_or(1) as f32,
            cost,
            groups,
            layers,
            metric,
            latency,
            target,
            min_keep,
            multiple: 1,
            full_macs,
            ratio,
            full,
        };
        b.check_floor()?;
        Ok(b)
    }

    /// Whether the model fits the target with every prunable layer at its minimum width.
    fn check_floor(&self) -> Result<(), BudgetError> {
        let (target, full, metric, ratio) = (self.target, self.full, self.metric, self.ratio);
        let floor = self.measure_with(&[], |j| self.min_width(j));
        if floor > target && metric == Metric::Latency {
            return Err(BudgetError::LatencyFloor { target, ratio, full, floor });
        }
        if floor > target {
            let mut zero = self.cost.full.clone();
            for &g in &self.groups {
                zero[g] = 0;
            }
            return Err(BudgetError::Infeasible {
                metric: metric.name(),
                target,
                ratio,
                full,
                floor,
                fixed: self.eval(&zero),
            });
        }
        Ok(())
    }

    pub fn full_macs(&self) -> u64 {
        self.full_macs
    }

    /// The unpruned model's figure of the budget's metric.
    pub fn full(&self) -> u64 {
        self.full
    }

    /// The metric at a full per-group kept vector.
    fn eval(&self, kv: &[usize]) -> u64 {
        match (self.metric, &self.latency) {
            (Metric::Macs, _) => self.cost.macs(kv),
            (Metric::Params, _) => self.cost.params(kv),
            (Metric::Latency, Some(t)) => t.eval(&self.cost, kv),
            (Metric::Latency, None) => {
                unreachable!("a latency budget is only built with its table")
            }
        }
    }

    /// The metric with layers `0..kept.len()` at `kept` and the later ones at `rest(j)`.
    fn measure_with(&self, kept: &[usize], rest: impl Fn(usize) -> usize) -> u64 {
        let mut k = self.cost.full.clone();
        for (j, &g) in self.groups.iter().enumerate() {
            k[g] = if j < kept.len() { kept[j] } else { rest(j) };
        }
        self.eval(&k)
    }

    /// The budget's metric of a complete episode (what must stay <= `target`).
    pub fn measure(&self, kept: &[usize]) -> u64 {
        self.eval(&self.kept_vector(kept))
    }

    /// Whether a complete episode meets the budget.
    pub fn fits(&self, kept: &[usize]) -> bool {
        self.measure(kept) <= self.target
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

    /// Sets [`Budget::multiple`]: every kept width becomes a multiple of `m` or the
    /// full width, and each layer's minimum rounds up to one (`min_keep`). Fails when
    /// the rounded-up minimums no longer fit the target.
    pub fn set_multiple(&mut self, m: usize) -> Result<(), BudgetError> {
        self.multiple = m.max(1);
        for (k, l) in self.min_keep.iter_mut().zip(&self.layers) {
            *k = round_up(*k, self.multiple, l.channels);
        }
        self.check_floor()
    }

    /// Narrowest width layer `l` may keep: `min_keep[l]`, rounded up to an allowed width.
    pub fn min_width(&self, l: usize) -> usize {
        round_up(self.min_keep[l], self.multiple, self.layers[l].channels)
    }

    /// The widths layer `l` may keep, narrowest first: with `multiple = m`, the
    /// multiples of m from [`Budget::min_width`] up, then the full width (m = 1:
    /// every width from `min_keep`).
    pub fn allowed(&self, l: usize) -> impl Iterator<Item = usize> {
        let (lo, c, m) = (self.min_width(l), self.layers[l].channels, self.multiple.max(1));
        (0..(c - lo).div_ceil(m) + 1).map(move |i| (lo + i * m).min(c))
    }

    /// The allowed width of layer `l` next above `k` (`k` itself when `k` is the full width).
    pub fn next_allowed(&self, l: usize, k: usize) -> usize {
        let c = self.layers[l].channels;
        round_up(k + 1, self.multiple, c).max(self.min_width(l)).min(c)
    }

    /// The allowed width of layer `l` next below `k` (the minimum width at most).
    pub fn prev_allowed(&self, l: usize, k: usize) -> usize {
        let m = self.multiple.max(1);
        (k.saturating_sub(1) / m * m).max(self.min_width(l))
    }

    /// Bounds on the channels layer `l = kept.len()` may keep: at most what
    /// still lets the remaining layers (at their minimum) meet the target
    /// (in the budget's metric)
    /// (Eq. 12), at least what still reaches the target with the remaining
    /// layers intact (Eq. 13). Both bounds are allowed widths (multiples of
    /// [`Budget::multiple`] or the full width), searched over the allowed
    /// widths only, so an episode ends within one allowed step of the target.
    /// Feasibility wins when both cannot hold.
    pub fn keep_bounds(&self, kept: &[usize]) -> (usize, usize) {
        let l = kept.len();
        let c = self.layers[l].channels;
        let (lo, m) = (self.min_width(l), self.multiple.max(1));
        // Allowed width number i (0 = the minimum, n - 1 = the full width).
        let w = |i: usize| (lo + i * m).min(c);
        let n = (c - lo).div_ceil(m) + 1;
        let with = |k: usize, rest_full: bool| {
            let mut v = kept.to_vec();
            v.push(k);
            self.measure_with(&v, |j| {
                if rest_full {
                    self.layers[j].channels
                } else {
                    self.min_width(j)
                }
            })
        };
        // Largest allowed k with macs(min rest) <= target (monotone in k).
        let (mut a, mut b) = (0, n - 1);
        if with(lo, false) > self.target {
            return (lo, lo);
        }
        while a < b {
            let mid = (a + b).div_ceil(2);
            if with(w(mid), false) <= self.target {
                a = mid;
            } else {
                b = mid - 1;
            }
        }
        let imax = a;
        let kmax = w(imax);
        // Smallest allowed k in [lo, kmax] with macs(full rest) >= target.
        let (mut a, mut b) = (0, imax);
        if with(kmax, true) < self.target {
            return (kmax, kmax);
        }
        while a < b {
            let mid = (a + b) / 2;
            if with(w(mid), true) >= self.target {
                b = mid;
            } else {
                a = mid + 1;
            }
        }
        (w(a), kmax)
    }

    /// Channels kept for action `a` (pruning ratio in `[0, 1]`) on layer `kept.len()`:
    /// remove floor(a·c), clip to the bounds, then move to the nearest multiple of
    /// [`Budget::multiple`] (or the full width) inside the bounds (there always is one:
    /// both bounds are allowed widths).
    pub fn apply(&self, kept: &[usize], a: f32) -> usize {
        self.apply_within(kept, a, self.keep_bounds(kept))
    }

    /// [`Budget::apply`] with the layer's bounds already computed by [`Budget::keep_bounds`].
    pub fn apply_within(&self, kept: &[usize], a: f32, (lo, hi): (usize, usize)) -> usize {
        let c = self.layers[kept.len()].channels;
        let removed = ((a.clamp(0.0, 1.0) as f64) * c as f64).floor() as usize;
        let k = (c - removed.min(c)).clamp(lo, hi);
        self.aligned(k, c, lo, hi)
    }

    /// `k` moved to the nearest aligned width in `[lo, hi]` (ties: the smaller), else `k`
    /// (only when `[lo, hi]` holds no aligned width, which [`Budget::keep_bounds`]'s never do).
    pub fn aligned(&self, k: usize, c: usize, lo: usize, hi: usize) -> usize {
        let m = self.multiple;
        if m <= 1 || k == c || k % m == 0 {
            return k;
        }
        let down = k / m * m;
        let up = (down + m).min(c);
        let ok = |x: usize| x >= lo.max(1) && x <= hi;
        match (ok(down), ok(up)) {
            (true, true) => {
                if k - down <= up - k {
                    down
                } else {
                    up
                }
            }
            (true, false) => down,
            (false, true) => up,
            (false, false) => k,
        }
    }

    /// MACs of layer `j`'s terms at the given per-group kept vector.
    fn layer_macs(&self, j: usize, kv: &[usize]) -> u64 {
        let g = self.groups[j];
        self.cost
            .terms
            .iter()
            .filter(|t| t.weight.follows(g))
            .map(|t| t.factor * t.weight.numel(kv))
            .sum()
    }

    /// State of layer `l = kept.len()` (Eq. 1), normalised:
    /// `[l/L, C_in, C, stride, k, MACs[l], MACs of pruned layers, MACs of the rest, a_{l-1}]`.
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

/// `k` rounded up to a multiple of `m`, capped at the full width `c` (at least 1).
fn round_up(k: usize, m: usize, c: usize) -> usize {
    k.max(1).div_ceil(m.max(1)).saturating_mul(m.max(1)).min(c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;
    use std::path::Path;

    fn budget(file: &str, ratio: f64) -> Budget {
        let (_, a) = crate::analysis::import(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("graphs").join(file),
            &Default::default(),
        )
        .unwrap();
        Budget::new(a.cost, a.layers, ratio, 0.9).unwrap()
    }

    #[test]
    fn every_episode_ends_at_or_just_below_the_target() {
        for (file, ratio) in [
            ("resnet56_cifar.onnx", 0.5),
            ("mobilenetv2_cifar.onnx", 0.5),
            ("mnist_cnn.onnx", 0.3),
            ("resnet20_cifar.onnx", 0.7),
        ] {
            let b = budget(file, ratio);
            let mut rng = Rng::new(3);
            for ep in 0..40 {
                let mut kept = Vec::new();
                for _ in 0..b.layers.len() {
                    let a = if ep == 0 {
                        0.0
                    } else if ep == 1 {
                        1.0
                    } else {
                        rng.uniform_f32()
                    };
                    kept.push(b.apply(&kept, a));
                }
                let m = b.macs(&kept);
                assert!(m <= b.target, "{file} episode {ep}: {m} > {}", b.target);
                // One more channel on the last layer would cross the target.
                let last = kept.len() - 1;
                if kept[last] < b.layers[last].channels {
                    let mut more = kept.clone();
                    more[last] += 1;
                    assert!(
                        b.macs(&more) > b.target,
                        "{file} episode {ep}: {m} is more than one channel below {}",
                        b.target
                    );
                }
            }
        }
    }

    #[test]
    fn params_budgets_bound_every_episode_too() {
        let (_, a) = crate::analysis::import(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("graphs/resnet20_cifar.onnx"),
            &Default::default(),
        )
        .unwrap();
        let b = Budget::with_metric(a.cost, a.layers, Metric::Params, 0.4, 0.9).unwrap();
        assert_eq!(b.target, (b.full() as f64 * 0.4).floor() as u64);
        let mut rng = Rng::new(9);
        for _ in 0..30 {
            let mut kept = Vec::new();
            for _ in 0..b.layers.len() {
                kept.push(b.apply(&kept, rng.uniform_f32()));
            }
            assert!(b.fits(&kept), "{} > {}", b.measure(&kept), b.target);
            let last = kept.len() - 1;
            if kept[last] < b.layers[last].channels {
                let mut more = kept.clone();
                more[last] += 1;
                assert!(!b.fits(&more), "more than one channel below the params target");
            }
        }
    }

    #[test]
    fn curves_are_monotone_and_interpolate() {
        let c = Curve::fit(vec![(1.0, 10.0), (0.5, 6.0), (0.25, 7.0), (0.5, 4.0), (f64::NAN, 1.0)]);
        // Averaged at 0.5 (5), running maximum lifts it to 7 after 0.25.
        assert_eq!(c.points, vec![(0.25, 7.0), (0.5, 7.0), (1.0, 10.0)]);
        assert_eq!((c.at(0.0), c.at(0.25), c.at(0.75), c.at(2.0)), (7.0, 7.0, 8.5, 10.0));
        assert_eq!(Curve::fit(vec![]).at(0.5), 0.0);
    }

    #[test]
    fn latency_budgets_bound_every_episode() {
        let (_, a) = crate::analysis::import(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("graphs/resnet56_cifar.onnx"),
            &Default::default(),
        )
        .unwrap();
        // A synthetic table: each op costs 2 µs + 1 µs per MACs-fraction unit, plus 50 µs fixed.
        let n = a.cost.terms.len();
        let t = LatencyModel {
            batch: 1,
            threads: 1,
            nodes: vec![String::new(); n],
            terms: vec![Curve::fit(vec![(0.0, 2000.0), (1.0, 3000.0)]); n],
            rest: Curve::fit(vec![(0.0, 50_000.0), (1.0, 50_000.0)]),
            measured: vec![],
        };
        assert!(Budget::with_metric(a.cost.clone(), a.layers.clone(), Metric::Latency, 0.5, 0.9)
            .is_err());
        let mut short = t.clone();
        short.terms.pop();
        assert!(Budget::with_latency(a.cost.clone(), a.layers.clone(), short, 0.9, 0.9)
            .unwrap_err()
            .to_string()
            .contains("another model"));
        // Fixed costs make 50% impossible: the error gives the floor.
        let e = Budget::with_latency(a.cost.clone(), a.layers.clone(), t.clone(), 0.5, 0.9)
            .unwrap_err()
            .to_string();
        assert!(e.contains("impossible latency budget") && e.contains("minimum width"), "{e}");
        let b = Budget::with_latency(a.cost.clone(), a.layers.clone(), t, 0.85, 0.9).unwrap();
        assert_eq!(b.full(), 50_000 + 3000 * n as u64);
        let mut rng = Rng::new(5);
        for _ in 0..30 {
            let mut kept = Vec::new();
            for _ in 0..b.layers.len() {
                kept.push(b.apply(&kept, rng.uniform_f32()));
            }
            assert!(b.fits(&kept), "{} > {}", b.measure(&kept), b.target);
            assert!(
                b.measure(&kept) * 100 >= b.target * 99,
                "{} far below {}",
                b.measure(&kept),
                b.target
            );
        }
    }

    #[test]
    fn aligned_widths_are_always_aligned_and_meet_the_budget() {
        for (file, ratio) in [
            ("resnet56_cifar.onnx", 0.5),
            ("mobilenetv2_cifar.onnx", 0.5),
            ("resnet20_mnist.onnx", 0.4),
        ] {
            for m in [4, 8] {
                let mut b = budget(file, ratio);
                b.set_multiple(m).unwrap();
                let ok = |l: usize, k: usize| {
                    k == b.layers[l].channels || (k % m == 0 && k >= b.min_keep[l])
                };
                assert!(
                    (0..b.layers.len()).all(|l| ok(l, b.min_keep[l])),
                    "{file} m={m}: min_keep {:?}",
                    b.min_keep
                );
                let mut rng = Rng::new(m as u64);
                let mut near = 0;
                for ep in 0..60 {
                    let mut kept = Vec::new();
                    for l in 0..b.layers.len() {
                        let (lo, hi) = b.keep_bounds(&kept);
                        assert!(
                            ok(l, lo) && ok(l, hi) && lo <= hi,
                            "{file} m={m} episode {ep} layer {l}: bounds ({lo}, {hi})"
                        );
                        let a = if ep == 0 {
                            0.0
                        } else if ep == 1 {
                            1.0
                        } else {
                            rng.uniform_f32()
                        };
                        let k = b.apply(&kept, a);
                        assert!(ok(l, k), "{file} m={m} episode {ep} layer {l}: width {k} of {} is not a multiple of {m}", b.layers[l].channels);
                        kept.push(k);
                    }
                    assert!(
                        b.fits(&kept),
                        "{file} m={m} episode {ep}: {} > {}",
                        b.measure(&kept),
                        b.target
                    );
                    // The next allowed width of the last layer would cross the target: the
                    // episode ends within one multiple's MACs of it.
                    let last = kept.len() - 1;
                    if kept[last] < b.layers[last].channels {
                        let mut more = kept.clone();
                        more[last] = b.next_allowed(last, kept[last]);
                        assert_eq!(
                            more[last],
                            kept[last] + m.min(b.layers[last].channels - kept[last])
                        );
                        assert!(
                            !b.fits(&more),
                            "{file} m={m} episode {ep}: {} is more than one multiple below {}",
                            b.measure(&kept),
                            b.target
                        );
                        near += 1;
                    }
                }
                assert!(near > 0, "{file} m={m}: the last layer was never below its full width");
            }
        }
    }

    #[test]
    fn allowed_widths_and_rounded_minimums() {
        let mut b = budget("resnet20_mnist.onnx", 0.5);
        let c = b.layers[0].channels;
        assert_eq!(
            b.allowed(0).collect::<Vec<_>>(),
            (b.min_keep[0]..=c).collect::<Vec<_>>(),
            "m = 1: every width"
        );
        b.set_multiple(8).unwrap();
        let w: Vec<usize> = b.allowed(0).collect();
        assert_eq!(w.first(), Some(&b.min_keep[0]));
        assert_eq!(w.last(), Some(&c));
        assert!(w.iter().all(|k| k % 8 == 0 || *k == c), "{w:?}");
        assert_eq!(
            (round_up(2, 8, 16), round_up(2, 8, 6), round_up(0, 4, 16), round_up(9, 1, 16)),
            (8, 6, 4, 9)
        );
        // A multiple so coarse that the rounded-up minimums no longer fit is an input error.
        let mut b = budget("resnet20_mnist.onnx", 0.3);
        assert!(b.set_multiple(64).unwrap_err().to_string().contains("impossible budget"));
    }

    #[test]
    fn impossible_budgets_are_rejected_with_the_floor() {
        let (_, a) = crate::analysis::import(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("graphs/resnet20_cifar.onnx"),
            &Default::default(),
        )
        .unwrap();
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
