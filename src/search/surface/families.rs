//! The surface families: where each layer's sensitivity, cliff and
//! interactions come from (see [`super::Family`]). `separable` draws exactly
//! what the first `rlal bench agent` drew (same numbers for the same seed); the
//! other families draw their extra parts from a separate stream.
use super::{Family, Pair, SurfaceConfig};
use crate::agent::Budget;
use crate::rng::Rng;

/// The drawn parts of a surface, before calibration.
pub(super) struct Params {
    pub sens: Vec<f64>,
    pub phi: Vec<f64>,
    pub power: Vec<f64>,
    pub pairs: Vec<Pair>,
    pub cliffs: Vec<usize>,
}

/// Standard deviation of ln s for s log-uniform over [0.01, 1] (two orders of magnitude).
const LOG_SPREAD: f64 = 1.329;

pub(super) fn draw(budget: &Budget, cfg: &SurfaceConfig, seed: u64) -> Params {
    let mut rng = Rng::new(seed).fork(0x5u64 << 32 | 0xacf);
    let mut extra = Rng::new(seed).fork(0xfa3_1e5);
    let n = budget.layers.len();
    let mut sens: Vec<f64> = (0..n).map(|_| (rng.range_f64(0.01f64.ln(), 0.0)).exp()).collect();
    let phi = (0..n).map(|_| rng.range_f64(-1.0, 1.0)).collect();
    let power = (0..n).map(|_| rng.range_f64(1.5, 3.0)).collect();
    if cfg.family == Family::Features {
        sens = feature_sensitivities(budget, cfg.idiosyncratic, &mut extra);
    }
    let pairs = match cfg.family {
        Family::Coupled => coupled_pairs(&sens, &mut extra),
        _ => adjacent_pairs(cfg.pairs, &sens, &mut rng),
    };
    let cliffs = match cfg.family {
        Family::Cliff => cliff_widths(budget, &sens, cfg.cliff_layers, &mut extra),
        _ => vec![0; n],
    };
    Params { sens, phi, power, pairs, cliffs }
}

fn pair(sens: &[f64], i: usize, j: usize, rng: &mut Rng) -> Pair {
    Pair { i, j, w: 0.5 * (sens[i] + sens[j]) * rng.range_f64(0.5, 1.0) }
}

/// Up to `count` disjoint pairs of consecutive layers, in layer order.
fn adjacent_pairs(count: usize, sens: &[f64], rng: &mut Rng) -> Vec<Pair> {
    let n = sens.len();
    let mut order: Vec<usize> = (0..n.saturating_sub(1)).collect();
    rng.shuffle(&mut order);
    let mut used = vec![false; n];
    let mut pairs = Vec::new();
    for i in order {
        if pairs.len() < count && !used[i] && !used[i + 1] {
            used[i] = true;
            used[i + 1] = true;
            pairs.push(pair(sens, i, i + 1, rng));
        }
    }
    pairs.sort_by_key(|p| p.i);
    pairs
}

/// One pair for each of half of the layers (rounded up), with a partner that is
/// a neighbour one time in four and any other layer otherwise; no pair twice.
fn coupled_pairs(sens: &[f64], rng: &mut Rng) -> Vec<Pair> {
    let n = sens.len();
    let mut order: Vec<usize> = (0..n).collect();
    rng.shuffle(&mut order);
    let mut pairs: Vec<Pair> = Vec::new();
    for &i in order.iter().take(if n < 2 { 0 } else { n.div_ceil(2) }) {
        let j = if rng.bernoulli(0.25) {
            if i + 1 < n {
                i + 1
            } else {
                i - 1
            }
        } else {
            (i + 1 + rng.below_usize(n - 1)) % n
        };
        let (a, b) = (i.min(j), i.max(j));
        if !pairs.iter().any(|p| (p.i, p.j) == (a, b)) {
            pairs.push(pair(sens, a, b, rng));
        }
    }
    pairs.sort_by_key(|p| (p.i, p.j));
    pairs
}

/// `v` shifted and scaled to mean 0 and standard deviation 1 (all 0 when constant).
fn standardised(v: &[f64]) -> Vec<f64> {
    let n = v.len().max(1) as f64;
    let mean = v.iter().sum::<f64>() / n;
    let sd = (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n).sqrt();
    v.iter().map(|x| if sd > 1e-12 { (x - mean) / sd } else { 0.0 }).collect()
}

/// What the agent's state shows of each layer (`Budget::state`'s static part):
/// depth, ln input and output width, stride, kernel, ln MACs.
pub(super) fn layer_features(budget: &Budget) -> Vec<[f64; 6]> {
    let n = budget.layers.len().max(1) as f64;
    let ln = |x: u64| (x.max(1) as f64).ln();
    let l = budget.layers.iter().enumerate();
    l.map(|(i, x)| {
        let strided = if x.stride > 1 { 1.0 } else { 0.0 };
        [
            i as f64 / n,
            ln(x.c_in as u64),
            ln(x.channels as u64),
            strided,
            x.kernel as f64,
            ln(x.macs),
        ]
    })
    .collect()
}

/// ln s = spread·(√(1−ι)·(w·z) + √ι·ε): z the standardised state features, w and
/// ε standard normal (w per seed, ε per layer), both parts standardised.
fn feature_sensitivities(budget: &Budget, idiosyncratic: f64, rng: &mut Rng) -> Vec<f64> {
    let feats = layer_features(budget);
    let cols: Vec<Vec<f64>> =
        (0..6).map(|k| standardised(&feats.iter().map(|f| f[k]).collect::<Vec<_>>())).collect();
    let w: Vec<f64> = (0..6).map(|_| rng.normal()).collect();
    let lin: Vec<f64> =
        (0..feats.len()).map(|l| cols.iter().zip(&w).map(|(c, w)| c[l] * w).sum()).collect();
    let (lin, eps) = (
        standardised(&lin),
        standardised(&(0..feats.len()).map(|_| rng.normal()).collect::<Vec<_>>()),
    );
    let (a, b) = ((1.0 - idiosyncratic).sqrt(), idiosyncratic.sqrt());
    lin.iter()
        .zip(&eps)
        .map(|(x, e)| (LOG_SPREAD * (a * x + b * e) + 0.01f64.sqrt().ln()).exp())
        .collect()
}

/// Cliff widths: the least sensitive `share` of the layers (the ones a smooth
/// model would prune hardest) collapse below 60-95% of uniform pruning's width.
fn cliff_widths(budget: &Budget, sens: &[f64], share: f64, rng: &mut Rng) -> Vec<usize> {
    let uniform = super::super::reward::uniform_kept(budget);
    let mut order: Vec<usize> = (0..sens.len()).collect();
    order.sort_by(|&a, &b| sens[a].total_cmp(&sens[b]));
    let mut cliffs = vec![0; sens.len()];
    for &l in order.iter().take((share * sens.len() as f64).round() as usize) {
        cliffs[l] = (uniform[l] as f64 * rng.range_f64(0.6, 0.95)).ceil() as usize;
    }
    cliffs
}
