//! The best architecture under the budget on a surface: exact by dynamic
//! programming when the surface is a sum over layers and disjoint pairs of
//! consecutive layers and the cost model is a sum over layers; otherwise the
//! best that a long reference search (simulated annealing over the allowed
//! widths, then exchange hill-climbing) finds, flagged as not exact.
use super::Surface;
use crate::agent::Budget;
use crate::rng::Rng;
use serde::Serialize;

/// The best architecture under the budget on a surface.
#[derive(Clone, Debug, Serialize)]
pub struct Optimum {
    pub value: f64,
    pub kept: Vec<usize>,
    /// Whether `value` is the optimum; false: the best architecture found (a lower
    /// bound of the optimum), by `source`.
    pub exact: bool,
    /// `dp` (exact), `dp+reference-search` (DP on coarsened costs or a
    /// non-separable metric, then the reference search), `reference-search`
    /// (a non-separable surface), or `method:NAME` (a benchmarked method's
    /// final choice beat the reference).
    pub source: String,
}

/// One DP item: a layer, or a pair of interacting layers; options (removed metric, value, widths).
type Options = Vec<(u64, f64, Vec<usize>)>;

/// Largest DP table (removal units) before costs are coarsened.
const DP_CAP: u64 = 200_000;
/// Largest DP work (table size × options) before costs are coarsened.
const DP_WORK: u64 = 1_000_000_000;
/// Reference search: annealing steps per start.
const ANNEAL_STEPS: usize = 40_000;

/// The optimum of `surface` at epoch t under `budget` (see the module
/// documentation). `None` when no vector of allowed widths meets the budget.
pub fn optimum(budget: &Budget, surface: &Surface, t: usize) -> Option<Optimum> {
    let chained = surface.chained();
    let (value, kept, exact) = dp(budget, surface, t, chained)?;
    if exact && chained {
        return Some(Optimum { value, kept, exact, source: "dp".into() });
    }
    let starts = [kept, super::super::reward::uniform_kept(budget)];
    let (value, kept) = reference_search(budget, surface, t, &starts, 0x0e7);
    let source = if chained { "dp+reference-search" } else { "reference-search" };
    Some(Optimum { value, kept, exact: false, source: source.into() })
}

/// The DP over layers (and pairs when `with_pairs`): (value, widths, exact).
fn dp(
    budget: &Budget,
    surface: &Surface,
    t: usize,
    with_pairs: bool,
) -> Option<(f64, Vec<usize>, bool)> {
    let n = budget.layers.len();
    let full: Vec<usize> = budget.layers.iter().map(|l| l.channels).collect();
    let full_m = budget.measure(&full);
    let removed = |l: usize, w: usize| {
        let mut k = full.clone();
        k[l] = w;
        full_m - budget.measure(&k)
    };
    let widths: Vec<Vec<usize>> = (0..n).map(|l| budget.allowed(l).collect()).collect();
    let mut exact = separable(budget, &widths, &removed, full_m);
    // rem[l][i]: the metric removed by layer l at its i-th width (the others full).
    let rem: Vec<Vec<u64>> = widths
        .iter()
        .enumerate()
        .map(|(l, w)| w.iter().map(|&a| removed(l, a)).collect())
        .collect();
    let paired = |l: usize| surface.pairs.iter().copied().find(|p| p.i == l).filter(|_| with_pairs);
    let loss = |l: usize, a: usize| surface.layer_loss(t, l, a);
    let mut items: Vec<Options> = Vec::new();
    let mut l = 0;
    while l < n {
        if let Some(p) = paired(l) {
            let mut o = Options::new();
            for (&a, ra) in widths[l].iter().zip(&rem[l]) {
                for (&b, rb) in widths[l + 1].iter().zip(&rem[l + 1]) {
                    let v = -loss(l, a) - loss(l + 1, b) - surface.pair_loss(p, a, b);
                    o.push((ra + rb, v, vec![a, b]));
                }
            }
            items.push(o);
            l += 2;
        } else {
            let opts = widths[l].iter().zip(&rem[l]).map(|(&a, &r)| (r, -loss(l, a), vec![a]));
            items.push(opts.collect());
            l += 1;
        }
    }
    let need = full_m.saturating_sub(budget.target);
    let g = items.iter().flatten().map(|o| o.0).fold(0, gcd).max(1);
    let items: Vec<Options> = items.into_iter().map(pareto).collect();
    let cap = DP_CAP.min(DP_WORK / items.iter().map(|o| o.len() as u64).sum::<u64>().max(1)).max(1);
    let (unit, coarse) = if need / g > cap { (need.div_ceil(cap), true) } else { (g, false) };
    exact &= !coarse;
    let (value, kept) = knapsack(&items, unit, need.div_ceil(unit) as usize)?;
    if budget.fits(&kept) && with_pairs {
        return Some((surface.base(t) + value, kept, exact));
    }
    // Pairs left out, or a non-separable metric optimised on its per-layer
    // approximation (repaired to meet the budget): not exact.
    let kept = repair(budget, surface, t, &widths, kept)?;
    Some((surface.value(t, &kept), kept, false))
}

/// The options no other option dominates (removes at least as much for at least
/// the value): the knapsack's answer is the same without the others.
fn pareto(mut o: Options) -> Options {
    o.sort_by(|a, b| b.0.cmp(&a.0).then(b.1.total_cmp(&a.1)));
    let mut best = f64::NEG_INFINITY;
    o.retain(|x| {
        let keep = x.1 > best;
        best = best.max(x.1);
        keep
    });
    o
}

/// Narrows `kept` one allowed width at a time, where it loses the least value per
/// unit of the metric removed, until it meets the budget (`None`: it cannot).
fn repair(
    budget: &Budget,
    surface: &Surface,
    t: usize,
    widths: &[Vec<usize>],
    mut kept: Vec<usize>,
) -> Option<Vec<usize>> {
    while !budget.fits(&kept) {
        let (v, m) = (surface.value(t, &kept), budget.measure(&kept));
        let mut best: Option<(f64, usize, usize)> = None;
        for (l, w) in widths.iter().enumerate() {
            let Some(&down) = w.iter().rev().find(|&&x| x < kept[l]) else { continue };
            let mut k = kept.clone();
            k[l] = down;
            let cost =
                (v - surface.value(t, &k)) / m.saturating_sub(budget.measure(&k)).max(1) as f64;
            if best.is_none_or(|b| cost < b.0) {
                best = Some((cost, l, down));
            }
        }
        let (_, l, down) = best?;
        kept[l] = down;
    }
    Some(kept)
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// Whether the metric is the unpruned figure minus a sum of per-layer removals
/// (checked on the extreme and a few mixed width vectors).
fn separable(
    budget: &Budget,
    widths: &[Vec<usize>],
    removed: &dyn Fn(usize, usize) -> u64,
    full_m: u64,
) -> bool {
    let mut rng = Rng::new(7);
    (0..12).all(|i| {
        let k: Vec<usize> = widths
            .iter()
            .map(|w| match i {
                0 => w[0],
                1 => w[w.len() - 1],
                _ => w[rng.below_usize(w.len())],
            })
            .collect();
        let sum: u64 = k.iter().enumerate().map(|(l, &w)| removed(l, w)).sum();
        full_m.checked_sub(sum) == Some(budget.measure(&k))
    })
}

/// Maximum total value with at least `r_max` units removed (removal saturates at r_max).
fn knapsack(items: &[Options], unit: u64, r_max: usize) -> Option<(f64, Vec<usize>)> {
    let mut dp = vec![f64::NEG_INFINITY; r_max + 1];
    dp[0] = 0.0;
    let mut back: Vec<Vec<(u32, u32)>> = Vec::with_capacity(items.len());
    for opts in items {
        let mut next = vec![f64::NEG_INFINITY; r_max + 1];
        let mut bp = vec![(u32::MAX, 0u32); r_max + 1];
        for (r, &v) in dp.iter().enumerate() {
            if v == f64::NEG_INFINITY {
                continue;
            }
            for (oi, o) in opts.iter().enumerate() {
                let r2 = (r + (o.0 / unit) as usize).min(r_max);
                if v + o.1 > next[r2] {
                    next[r2] = v + o.1;
                    bp[r2] = (oi as u32, r as u32);
                }
            }
        }
        dp = next;
        back.push(bp);
    }
    if dp[r_max] == f64::NEG_INFINITY {
        return None;
    }
    let mut kept = Vec::new();
    let mut r = r_max;
    for (opts, bp) in items.iter().zip(&back).rev() {
        let (oi, prev) = bp[r];
        kept.splice(0..0, opts[oi as usize].2.iter().copied());
        r = prev as usize;
    }
    Some((dp[r_max], kept))
}

/// Indices into each layer's allowed widths, and back.
struct Grid {
    widths: Vec<Vec<usize>>,
}

impl Grid {
    fn kept(&self, idx: &[usize]) -> Vec<usize> {
        idx.iter().zip(&self.widths).map(|(&i, w)| w[i]).collect()
    }

    fn index(&self, kept: &[usize]) -> Vec<usize> {
        let pos =
            |(w, k): (&Vec<usize>, &usize)| w.iter().position(|x| x >= k).unwrap_or(w.len() - 1);
        self.widths.iter().zip(kept).map(pos).collect()
    }
}

/// The best architecture under the budget that simulated annealing from each of
/// `starts` (each meeting the budget) and then exchange hill-climbing find on
/// the noise-free surface at epoch t: (value, widths).
pub fn reference_search(
    budget: &Budget,
    surface: &Surface,
    t: usize,
    starts: &[Vec<usize>],
    seed: u64,
) -> (f64, Vec<usize>) {
    let grid =
        Grid { widths: (0..budget.layers.len()).map(|l| budget.allowed(l).collect()).collect() };
    let mut rng = Rng::new(seed).fork(0x5ea5c4);
    let score = |idx: &[usize]| {
        let k = grid.kept(idx);
        if budget.fits(&k) {
            surface.value(t, &k)
        } else {
            f64::NEG_INFINITY
        }
    };
    let mut best = (f64::NEG_INFINITY, Vec::new());
    for s in starts.iter().filter(|s| budget.fits(s)) {
        let idx = anneal(&grid, &score, grid.index(s), &mut rng);
        let idx = climb(&grid, &score, idx);
        let v = score(&idx);
        if v > best.0 {
            best = (v, grid.kept(&idx));
        }
    }
    best
}

/// A move: one layer up to s steps wider, another up to 3s narrower (s: a
/// twentieth of the widest layer's allowed widths, at least 1).
fn neighbour(grid: &Grid, idx: &[usize], rng: &mut Rng) -> Vec<usize> {
    let n = idx.len();
    let s = grid.widths.iter().map(|w| w.len() / 20).max().unwrap_or(0).max(1);
    let mut c = idx.to_vec();
    let a = rng.below_usize(n);
    c[a] = (c[a] + 1 + rng.below_usize(s)).min(grid.widths[a].len() - 1);
    if n > 1 {
        let b = (a + 1 + rng.below_usize(n - 1)) % n;
        c[b] = c[b].saturating_sub(1 + rng.below_usize(3 * s));
    }
    c
}

fn anneal(
    grid: &Grid,
    score: &dyn Fn(&[usize]) -> f64,
    mut idx: Vec<usize>,
    rng: &mut Rng,
) -> Vec<usize> {
    let (t0, t1) = (3e-3f64, 1e-6f64);
    let mut v = score(&idx);
    let mut best = (v, idx.clone());
    for step in 0..ANNEAL_STEPS {
        let temp = t0 * (t1 / t0).powf(step as f64 / ANNEAL_STEPS as f64);
        let c = neighbour(grid, &idx, rng);
        let cv = score(&c);
        if cv >= v || rng.uniform_f64() < ((cv - v) / temp).exp() {
            (idx, v) = (c, cv);
            if v > best.0 {
                best = (v, idx.clone());
            }
        }
    }
    best.1
}

/// Best-improvement exchange steps (one layer one step wider, another 1-3 steps
/// narrower, or one layer one step wider alone) until none improves.
fn climb(grid: &Grid, score: &dyn Fn(&[usize]) -> f64, mut idx: Vec<usize>) -> Vec<usize> {
    let n = idx.len();
    let mut v = score(&idx);
    loop {
        let mut best: Option<(f64, Vec<usize>)> = None;
        for a in 0..n {
            if idx[a] + 1 >= grid.widths[a].len() {
                continue;
            }
            let mut up = idx.clone();
            up[a] += 1;
            let moves = (0..n).filter(|&b| b != a).flat_map(|b| (1..=3).map(move |d| (b, d)));
            let cands = std::iter::once(up.clone()).chain(moves.filter(|&(b, d)| idx[b] >= d).map(
                |(b, d)| {
                    let mut c = up.clone();
                    c[b] -= d;
                    c
                },
            ));
            for c in cands {
                let cv = score(&c);
                if cv > v + 1e-12 && best.as_ref().is_none_or(|b| cv > b.0) {
                    best = Some((cv, c));
                }
            }
        }
        match best {
            Some((bv, b)) => (v, idx) = (bv, b),
            None => return idx,
        }
    }
}
