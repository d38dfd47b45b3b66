//! `rlal bench agent`: the pruning environment with a known optimum, in
//! seconds, without training a CNN. The real [`Budget`] of a graph (bounds,
//! cost model and state features exactly as in a run) and a synthetic accuracy
//! surface
//!
//! acc(t, k) = base(t) − Σ_l s_l(t)·f_l^p_l − Σ_pairs w·f_i·f_{i+1} + noise,
//!
//! f_l = removed fraction of layer l; sensitivities s_l spread over two orders
//! of magnitude and drift with the epoch t (their ranking changes: the
//! non-stationarity the environment model exists for); the noise is the
//! binomial noise of a reward subset of `reward-samples` images. The optimum
//! under the budget is computed by dynamic programming over the allowed widths
//! ([`optimum`]). The episode schedule, the agent and the selection rule are
//! those of `rlal prune` (recipe phases, [`Agent`], [`Incumbents`]).
use super::best::{Best, Incumbents, Selection};
use super::recipe::{Phase, Recipe};
use crate::agent::{Agent, Budget, Explore};
use crate::rng::{Rng, Stream};
use serde::Serialize;

/// Settings of the synthetic surface.
#[derive(Clone, Debug, Serialize)]
pub struct SurfaceConfig {
    /// Images of the reward subset (binomial noise of the rewards).
    pub reward_samples: usize,
    /// Each sensitivity is s_l·(1 + drift·φ_l·(1 − t/(T−1))), φ_l uniform in [−1, 1].
    pub drift: f64,
    /// Accuracy that uniform pruning to the budget loses on the final surface.
    pub uniform_drop: f64,
    /// Disjoint pairs of consecutive layers whose pruning interacts.
    pub pairs: usize,
}

impl Default for SurfaceConfig {
    fn default() -> Self {
        SurfaceConfig { reward_samples: 5000, drift: 0.8, uniform_drop: 0.08, pairs: 3 }
    }
}

/// A synthetic accuracy surface over the budget's layers (see the module documentation).
#[derive(Clone, Debug)]
pub struct Surface {
    epochs: usize,
    channels: Vec<usize>,
    sens: Vec<f64>,
    phi: Vec<f64>,
    power: Vec<f64>,
    /// (i, w): layers i and i + 1 interact with weight w.
    pairs: Vec<(usize, f64)>,
    drift: f64,
    samples: usize,
}

impl Surface {
    /// A surface drawn from `seed` for `budget`'s layers over `epochs` epochs, scaled
    /// so that uniform pruning to the budget loses `uniform_drop` at the last epoch.
    pub fn new(budget: &Budget, epochs: usize, cfg: &SurfaceConfig, seed: u64) -> Surface {
        let mut rng = Rng::new(seed).fork(0x5u64 << 32 | 0xacf);
        let n = budget.layers.len();
        let sens: Vec<f64> = (0..n).map(|_| (rng.range_f64(0.01f64.ln(), 0.0)).exp()).collect();
        let phi = (0..n).map(|_| rng.range_f64(-1.0, 1.0)).collect();
        let power = (0..n).map(|_| rng.range_f64(1.5, 3.0)).collect();
        let mut order: Vec<usize> = (0..n.saturating_sub(1)).collect();
        rng.shuffle(&mut order);
        let mut used = vec![false; n];
        let mut pairs = Vec::new();
        for i in order {
            if pairs.len() < cfg.pairs && !used[i] && !used[i + 1] {
                used[i] = true;
                used[i + 1] = true;
                pairs.push((i, 0.5 * (sens[i] + sens[i + 1]) * rng.range_f64(0.5, 1.0)));
            }
        }
        pairs.sort_by_key(|p| p.0);
        let channels = budget.layers.iter().map(|l| l.channels).collect();
        let mut s = Surface {
            epochs: epochs.max(1),
            channels,
            sens,
            phi,
            power,
            pairs,
            drift: cfg.drift,
            samples: cfg.reward_samples.max(1),
        };
        let t = s.epochs - 1;
        let uniform = super::reward::uniform_kept(budget);
        let drop = s.base(t) - s.value(t, &uniform);
        let scale = if drop > 0.0 { cfg.uniform_drop / drop } else { 1.0 };
        s.sens.iter_mut().for_each(|v| *v *= scale);
        s.pairs.iter_mut().for_each(|p| p.1 *= scale);
        s
    }

    /// Accuracy of the unpruned network at epoch t (0.32 rising to about 0.92).
    pub fn base(&self, t: usize) -> f64 {
        0.92 - 0.6 * (-(t as f64) / (0.15 * self.epochs as f64).max(1.0)).exp()
    }

    fn frac(&self, l: usize, k: usize) -> f64 {
        1.0 - k as f64 / self.channels[l] as f64
    }

    /// Loss of layer l kept at k channels at epoch t.
    fn layer_loss(&self, t: usize, l: usize, k: usize) -> f64 {
        let late = 1.0 - t as f64 / (self.epochs.max(2) - 1) as f64;
        let s = self.sens[l] * (1.0 + self.drift * self.phi[l] * late.max(0.0));
        s * self.frac(l, k).powf(self.power[l])
    }

    fn pair_loss(&self, (i, w): (usize, f64), ki: usize, kj: usize) -> f64 {
        w * self.frac(i, ki) * self.frac(i + 1, kj)
    }

    /// Noise-free accuracy of per-layer widths `kept` at epoch t.
    pub fn value(&self, t: usize, kept: &[usize]) -> f64 {
        let layers: f64 = kept.iter().enumerate().map(|(l, &k)| self.layer_loss(t, l, k)).sum();
        let pairs: f64 =
            self.pairs.iter().map(|&p| self.pair_loss(p, kept[p.0], kept[p.0 + 1])).sum();
        self.base(t) - layers - pairs
    }

    /// A reward: the accuracy measured on `reward-samples` images (binomial noise,
    /// normal approximation, a multiple of 1/n like a real accuracy).
    pub fn sample(&self, t: usize, kept: &[usize], rng: &mut Rng) -> f64 {
        let v = self.value(t, kept).clamp(0.0, 1.0);
        let n = self.samples as f64;
        let sd = (v.clamp(1e-3, 1.0 - 1e-3) * (1.0 - v.clamp(1e-3, 1.0 - 1e-3)) / n).sqrt();
        ((v + sd * rng.normal()).clamp(0.0, 1.0) * n).round() / n
    }
}

/// The best architecture under the budget on a surface.
#[derive(Clone, Debug, Serialize)]
pub struct Optimum {
    pub value: f64,
    pub kept: Vec<usize>,
    /// False when the cost model is not a sum of per-layer terms or the DP had to
    /// coarsen the costs: then `value` is a feasible lower bound of the optimum.
    pub exact: bool,
}

/// Widths the search can give layer l: [min_keep, c], multiples of the budget's
/// channel multiple (or the full width).
fn allowed(budget: &Budget, l: usize) -> Vec<usize> {
    let (c, m) = (budget.layers[l].channels, budget.multiple.max(1));
    (budget.min_keep[l]..=c).filter(|&w| w == c || w % m == 0).collect()
}

/// One DP item: a layer, or a pair of interacting layers; options (removed metric, value, widths).
type Options = Vec<(u64, f64, Vec<usize>)>;

/// Largest DP table (removal units) before costs are coarsened.
const DP_CAP: u64 = 200_000;

/// The optimum of `surface` at epoch t under `budget`, by dynamic programming over
/// the allowed widths (multiple-choice knapsack on the metric each layer removes).
/// `None` when no vector of allowed widths meets the budget.
pub fn optimum(budget: &Budget, surface: &Surface, t: usize) -> Option<Optimum> {
    let n = budget.layers.len();
    let full: Vec<usize> = budget.layers.iter().map(|l| l.channels).collect();
    let full_m = budget.measure(&full);
    let removed = |l: usize, w: usize| {
        let mut k = full.clone();
        k[l] = w;
        full_m - budget.measure(&k)
    };
    let widths: Vec<Vec<usize>> = (0..n).map(|l| allowed(budget, l)).collect();
    let mut exact = separable(budget, &widths, &removed, full_m);
    let paired: Vec<Option<f64>> =
        (0..n).map(|i| surface.pairs.iter().find(|p| p.0 == i).map(|p| p.1)).collect();
    let mut items: Vec<Options> = Vec::new();
    let mut l = 0;
    while l < n {
        if let Some(w) = paired[l] {
            let mut o = Options::new();
            for &a in &widths[l] {
                for &b in &widths[l + 1] {
                    let v = -surface.layer_loss(t, l, a)
                        - surface.layer_loss(t, l + 1, b)
                        - surface.pair_loss((l, w), a, b);
                    o.push((removed(l, a) + removed(l + 1, b), v, vec![a, b]));
                }
            }
            items.push(o);
            l += 2;
        } else {
            items.push(
                widths[l]
                    .iter()
                    .map(|&a| (removed(l, a), -surface.layer_loss(t, l, a), vec![a]))
                    .collect(),
            );
            l += 1;
        }
    }
    let need = full_m.saturating_sub(budget.target);
    let g = items.iter().flatten().map(|o| o.0).fold(0, gcd).max(1);
    let (unit, coarse) = if need / g > DP_CAP { (need.div_ceil(DP_CAP), true) } else { (g, false) };
    exact &= !coarse;
    let r_max = need.div_ceil(unit) as usize;
    let (value, kept) = knapsack(&items, unit, r_max)?;
    if budget.fits(&kept) {
        return Some(Optimum { value: surface.base(t) + value, kept, exact });
    }
    // A non-separable metric was optimised on its per-layer approximation: repair.
    let kept = repair(budget, surface, t, &widths, kept)?;
    Some(Optimum { value: surface.value(t, &kept), kept, exact: false })
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

/// What a benchmark run compares.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    /// The recipe's agent.
    Rlal,
    /// The recipe's agent without the environment model (z = 0, paper "w/o EE").
    NoEnvModel,
    /// Random search: uniformly random bounded episodes, the recipe's selection rule.
    Random,
    /// Uniform pruning (one architecture).
    Uniform,
}

/// One epoch of one run.
#[derive(Clone, Debug, Default, Serialize)]
pub struct EpochStat {
    pub epoch: usize,
    pub phase: String,
    /// Mean and best reward of the epoch's episodes (noisy, as the agent saw them).
    pub mean_reward: Option<f64>,
    pub best_reward: Option<f64>,
    /// Noise-free accuracy of the greedy policy's architecture on this epoch's surface.
    pub greedy_reward: Option<f64>,
    /// Optimum − final-surface value of the greedy policy's architecture.
    pub greedy_regret: Option<f64>,
    /// Optimum − final-surface value of the architecture the search would prune to now.
    pub regret: Option<f64>,
    /// The policy's entropy (mean over the epoch's updates) and α of the epoch.
    pub entropy: Option<f64>,
    pub alpha: Option<f64>,
    /// MACs / full MACs: mean over the epoch's episodes, and of the greedy policy's.
    pub mean_macs: Option<f64>,
    pub greedy_macs: Option<f64>,
}

/// One method on one seed.
#[derive(Clone, Debug, Serialize)]
pub struct Trace {
    pub method: Method,
    pub seed: u64,
    pub epochs: Vec<EpochStat>,
    pub final_kept: Vec<usize>,
    /// Optimum − final-surface value of the pruned architecture.
    pub final_regret: f64,
    /// Whether re-scoring on the final weights changed the chosen architecture.
    pub final_choice_changed: bool,
}

/// Runs `method` on the surface of `seed` with the recipe's schedule, agent and
/// selection rule; `opt_final`: the optimum on the final surface.
pub fn run(
    r: &Recipe,
    budget: &Budget,
    surface: &Surface,
    opt_final: &Optimum,
    method: Method,
    seed: u64,
) -> Trace {
    let last = r.training.epochs.max(1) - 1;
    let mut cfg = r.agent.clone();
    cfg.env_model &= method != Method::NoEnvModel;
    let mut agent = Agent::new(cfg, budget.layers.len(), r.training.epochs, seed);
    let mut rng = Rng::stream(seed, Stream::Search);
    let mut noise = Rng::stream(seed, Stream::BenchNoise);
    let (k, rescore) = (r.kept_incumbents(), r.search.selection == Selection::Rescore);
    let mut inc = Incumbents::default();
    // Uniform pruning's one architecture (the others ignore it).
    let uniform = super::reward::uniform_kept(budget);
    let regret = |kept: &[usize]| opt_final.value - surface.value(last, kept);
    let mut rows = Vec::new();
    for t in 0..r.training.epochs {
        let phase = r.phase(t);
        let mut row = EpochStat { epoch: t + 1, phase: phase.name().into(), ..Default::default() };
        if phase.searching() {
            if rescore {
                let _ = inc.rescore(t + 1, |kept| Ok::<_, ()>(surface.sample(t, kept, &mut noise)));
            }
            agent.begin_epoch(t, r.agent_span());
            let explore = if phase == Phase::Agent { Explore::Policy } else { Explore::Random };
            let (mut rewards, mut macs) = (Vec::new(), Vec::new());
            for _ in 0..if method == Method::Uniform { 1 } else { r.search.episodes_per_epoch } {
                let (kept, ep) = match method {
                    Method::Uniform => (uniform.clone(), None),
                    _ => {
                        let ep = agent.episode(
                            budget,
                            t,
                            &mut rng,
                            if method == Method::Random { Explore::Random } else { explore },
                        );
                        (ep.kept.clone(), Some(ep))
                    }
                };
                let acc = surface.sample(t, &kept, &mut noise);
                if let (Some(ep), Method::Rlal | Method::NoEnvModel) = (&ep, method) {
                    agent.remember(ep, acc as f32);
                }
                rewards.push(acc);
                macs.push(budget.macs(&kept) as f64 / budget.full_macs().max(1) as f64);
                inc.offer(Best { reward: acc, kept, epoch: t + 1 }, k, rescore);
            }
            row.mean_reward = Some(rewards.iter().sum::<f64>() / rewards.len() as f64);
            row.best_reward = rewards.iter().copied().reduce(f64::max);
            row.mean_macs = Some(macs.iter().sum::<f64>() / macs.len() as f64);
            if phase == Phase::Agent && matches!(method, Method::Rlal | Method::NoEnvModel) {
                row.entropy = Some(agent.update(&mut rng).entropy);
                row.alpha = Some(agent.sac.cfg.alpha);
                let g = agent.episode(budget, t, &mut Rng::new(0), Explore::Greedy);
                row.greedy_reward = Some(surface.value(t, &g.kept));
                row.greedy_macs =
                    Some(budget.macs(&g.kept) as f64 / budget.full_macs().max(1) as f64);
                row.greedy_regret = Some(regret(&g.kept));
            }
        }
        row.regret = inc.best().map(|b| regret(&b.kept));
        rows.push(row);
    }
    let changed = rescore
        && inc
            .rescore(r.training.epochs, |kept| Ok::<_, ()>(surface.sample(last, kept, &mut noise)))
            .unwrap_or(false);
    let final_kept = inc.best().map(|b| b.kept.clone()).unwrap_or(uniform);
    Trace {
        method,
        seed,
        epochs: rows,
        final_regret: regret(&final_kept),
        final_kept,
        final_choice_changed: changed,
    }
}

/// Summary of one method over the seeds.
#[derive(Clone, Debug, Serialize)]
pub struct MethodSummary {
    pub method: Method,
    pub final_regret: Vec<f64>,
    pub median_final_regret: f64,
    /// Mean episode reward over the first and the last 10 agent epochs (seed means).
    pub mean_reward_first_agent_epochs: Option<f64>,
    pub mean_reward_last_agent_epochs: Option<f64>,
    /// Median final-surface regret of the greedy policy at the last agent epoch.
    pub median_greedy_regret: Option<f64>,
    pub final_choice_changed: usize,
}

/// Median of a non-empty list.
pub fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        s[n / 2]
    } else {
        0.5 * (s[n / 2 - 1] + s[n / 2])
    }
}

/// Per-method summary of traces (all of one method).
pub fn summarise(method: Method, traces: &[&Trace]) -> MethodSummary {
    let regrets: Vec<f64> = traces.iter().map(|t| t.final_regret).collect();
    let agent_means = |tr: &Trace| -> Vec<f64> {
        tr.epochs.iter().filter(|e| e.phase == "agent").filter_map(|e| e.mean_reward).collect()
    };
    let window = |first: bool| -> Option<f64> {
        let v: Vec<f64> = traces
            .iter()
            .filter_map(|tr| {
                let m = agent_means(tr);
                let w = 10.min(m.len());
                let s = if first { &m[..w] } else { &m[m.len() - w..] };
                (w > 0).then(|| s.iter().sum::<f64>() / w as f64)
            })
            .collect();
        (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
    };
    let greedy: Vec<f64> = traces
        .iter()
        .filter_map(|tr| tr.epochs.iter().rev().find_map(|e| e.greedy_regret))
        .collect();
    MethodSummary {
        method,
        median_final_regret: median(&regrets),
        final_regret: regrets,
        mean_reward_first_agent_epochs: window(true),
        mean_reward_last_agent_epochs: window(false),
        median_greedy_regret: (!greedy.is_empty()).then(|| median(&greedy)),
        final_choice_changed: traces.iter().filter(|t| t.final_choice_changed).count(),
    }
}

/// Everything `rlal bench agent` measured.
#[derive(Clone, Debug, Serialize)]
pub struct BenchReport {
    pub model: String,
    pub layers: usize,
    pub budget_ratio: f64,
    pub surface: SurfaceConfig,
    /// Schedule and agent of the recipe.
    pub epochs: usize,
    pub warmup_epochs: usize,
    pub buffer_epochs: usize,
    pub agent_epochs: usize,
    pub episodes_per_epoch: usize,
    pub selection: Selection,
    pub incumbents: usize,
    pub agent: crate::agent::AgentConfig,
    /// Per seed: the final surface's optimum (and whether it is exact).
    pub optimum: Vec<Optimum>,
    /// Per seed: the final surface's value of uniform pruning.
    pub uniform_value: Vec<f64>,
    pub summaries: Vec<MethodSummary>,
    pub traces: Vec<Trace>,
    pub seconds: f64,
}

/// Runs every method on every seed's surface. `progress`: one line per run.
pub fn bench(
    r: &Recipe,
    budget: &Budget,
    scfg: &SurfaceConfig,
    methods: &[Method],
    seeds: &[u64],
    progress: bool,
) -> Result<BenchReport, String> {
    let t0 = std::time::Instant::now();
    let last = r.training.epochs.max(1) - 1;
    let (mut optima, mut uniform, mut traces) = (Vec::new(), Vec::new(), Vec::new());
    for &seed in seeds {
        let surface = Surface::new(budget, r.training.epochs, scfg, seed);
        let opt = optimum(budget, &surface, last).ok_or("no architecture of allowed widths (channel-multiple, max-prune-ratio) meets the budget")?;
        uniform.push(surface.value(last, &super::reward::uniform_kept(budget)));
        for &m in methods {
            let ts = std::time::Instant::now();
            let tr = run(r, budget, &surface, &opt, m, seed);
            if progress {
                eprintln!(
                    "seed {seed} {:?}: final regret {:.2} points ({:.1} s)",
                    m,
                    100.0 * tr.final_regret,
                    ts.elapsed().as_secs_f64()
                );
            }
            traces.push(tr);
        }
        optima.push(opt);
    }
    let summaries = methods
        .iter()
        .map(|&m| summarise(m, &traces.iter().filter(|t| t.method == m).collect::<Vec<_>>()))
        .collect();
    Ok(BenchReport {
        model: r.model.as_ref().map(|p| p.display().to_string()).unwrap_or_default(),
        layers: budget.layers.len(),
        budget_ratio: r.ratio(),
        surface: scfg.clone(),
        epochs: r.training.epochs,
        warmup_epochs: r.search.weights_only_epochs,
        buffer_epochs: r.search.buffer_epochs,
        agent_epochs: r.search.agent_epochs,
        episodes_per_epoch: r.search.episodes_per_epoch,
        selection: r.search.selection,
        incumbents: r.kept_incumbents(),
        agent: r.agent.clone(),
        optimum: optima,
        uniform_value: uniform,
        summaries,
        traces,
        seconds: t0.elapsed().as_secs_f64(),
    })
}

/// Writes `agent_bench.json`, `regret.svg` (median regret of the chosen
/// architecture per epoch) and `rewards.svg` (mean episode reward per epoch).
pub fn write(dir: &std::path::Path, rep: &BenchReport) -> anyhow::Result<()> {
    use anyhow::Context;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let json = serde_json::to_vec_pretty(rep)?;
    crate::util::write_atomic(&dir.join("agent_bench.json"), &json)
        .with_context(|| format!("writing {}", dir.join("agent_bench.json").display()))?;
    let colors = [
        plotters::style::RED,
        plotters::style::BLUE,
        plotters::style::GREEN,
        plotters::style::BLACK,
        plotters::style::MAGENTA,
    ];
    let per_epoch = |m: Method, f: &dyn Fn(&EpochStat) -> Option<f64>| -> Vec<(f64, f64)> {
        (0..rep.epochs)
            .filter_map(|e| {
                let v: Vec<f64> = rep
                    .traces
                    .iter()
                    .filter(|t| t.method == m)
                    .filter_map(|t| f(&t.epochs[e]))
                    .collect();
                (!v.is_empty()).then(|| ((e + 1) as f64, median(&v)))
            })
            .collect()
    };
    let series = |f: &dyn Fn(&EpochStat) -> Option<f64>| -> Vec<super::plot::Series> {
        rep.summaries
            .iter()
            .zip(colors.iter().cycle())
            .map(|(s, &c)| (format!("{:?}", s.method), c, per_epoch(s.method, f)))
            .collect()
    };
    super::plot::lines(
        &dir.join("regret.svg"),
        "regret of the chosen architecture (median over seeds)",
        "epoch",
        "regret",
        &series(&|e| e.regret),
    )?;
    super::plot::lines(
        &dir.join("rewards.svg"),
        "mean episode reward (median over seeds)",
        "epoch",
        "reward",
        &series(&|e| e.mean_reward),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn budget(file: &str, ratio: f64, multiple: usize) -> Budget {
        let (_, a) = crate::analysis::import(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("graphs").join(file),
            &Default::default(),
        )
        .unwrap();
        let mut b = Budget::new(a.cost, a.layers, ratio, 0.9).unwrap();
        b.set_multiple(multiple).unwrap();
        b
    }

    /// Exhaustive search over every allowed width vector (small graphs only).
    fn brute(b: &Budget, s: &Surface, t: usize) -> f64 {
        let widths: Vec<Vec<usize>> = (0..b.layers.len()).map(|l| allowed(b, l)).collect();
        let mut best = f64::NEG_INFINITY;
        let mut idx = vec![0usize; widths.len()];
        loop {
            let k: Vec<usize> = idx.iter().zip(&widths).map(|(&i, w)| w[i]).collect();
            if b.fits(&k) {
                best = best.max(s.value(t, &k));
            }
            let mut l = 0;
            while l < idx.len() {
                idx[l] += 1;
                if idx[l] < widths[l].len() {
                    break;
                }
                idx[l] = 0;
                l += 1;
            }
            if l == idx.len() {
                return best;
            }
        }
    }

    #[test]
    fn dp_optimum_equals_exhaustive_search() {
        // ResNet-20 (9 separable layers) in multiples of 8: 2 x 4 x 8 widths per stage, enumerable.
        for (ratio, pairs, seed) in [(0.5, 0, 1), (0.4, 2, 2), (0.6, 3, 3)] {
            let b = budget("resnet20_mnist.onnx", ratio, 8);
            let s = Surface::new(&b, 10, &SurfaceConfig { pairs, ..Default::default() }, seed);
            let o = optimum(&b, &s, 9).unwrap();
            assert!(b.fits(&o.kept) && o.exact);
            assert!((o.value - s.value(9, &o.kept)).abs() < 1e-9);
            let want = brute(&b, &s, 9);
            assert!((o.value - want).abs() < 1e-9, "DP {} vs exhaustive {want}", o.value);
        }
        // A metric that is not a sum over layers (a conv between two prunable groups):
        // a feasible architecture, flagged as not exact.
        let b = budget("mnist_cnn.onnx", 0.5, 4);
        let s = Surface::new(&b, 10, &SurfaceConfig::default(), 1);
        let o = optimum(&b, &s, 9).unwrap();
        assert!(b.fits(&o.kept) && !o.exact && o.value <= brute(&b, &s, 9) + 1e-12);
    }

    /// Mean episode reward over the last `n` agent epochs.
    fn late_mean(t: &Trace, n: usize) -> f64 {
        let m: Vec<f64> =
            t.epochs.iter().filter(|e| e.phase == "agent").filter_map(|e| e.mean_reward).collect();
        m[m.len() - n..].iter().sum::<f64>() / n as f64
    }

    #[test]
    fn the_agent_learns_on_a_small_surface() {
        // ResNet-20 (9 layers) at 40% MACs; 12 agent epochs of 10 episodes on a drifting surface.
        let b = budget("resnet20_mnist.onnx", 0.4, 1);
        let mut r = Recipe::default();
        r.training.epochs = 16;
        r.search = crate::search::recipe::Search {
            weights_only_epochs: 1,
            buffer_epochs: 3,
            agent_epochs: 16,
            episodes_per_epoch: 10,
            ..Default::default()
        };
        r.agent.updates_per_epoch = 100;
        let s = Surface::new(
            &b,
            r.training.epochs,
            &SurfaceConfig { reward_samples: 500, drift: 0.3, ..Default::default() },
            3,
        );
        let opt = optimum(&b, &s, r.training.epochs - 1).unwrap();
        let agent = run(&r, &b, &s, &opt, Method::Rlal, 3);
        let random = run(&r, &b, &s, &opt, Method::Random, 3);
        let uniform =
            opt.value - s.value(r.training.epochs - 1, &crate::search::reward::uniform_kept(&b));
        // Policy episodes beat random ones on the same surface at the same epochs...
        let (a, x) = (late_mean(&agent, 5), late_mean(&random, 5));
        assert!(
            a > x + 0.005,
            "mean reward of the last 5 agent epochs: agent {a:.4}, random {x:.4}"
        );
        // ...and the greedy policy is better than uniform pruning.
        let g = agent.epochs.iter().rev().find_map(|e| e.greedy_regret).unwrap();
        assert!(g + 0.005 < uniform, "greedy regret {g:.4}, uniform {uniform:.4}");
    }

    #[test]
    fn surface_is_calibrated_noisy_and_drifts() {
        let b = budget("resnet56_cifar.onnx", 0.5, 1);
        let s = Surface::new(&b, 50, &SurfaceConfig::default(), 4);
        let u = crate::search::reward::uniform_kept(&b);
        assert!((s.base(49) - s.value(49, &u) - 0.08).abs() < 1e-9);
        let o = optimum(&b, &s, 49).unwrap();
        assert!(o.exact && b.fits(&o.kept));
        assert!(
            o.value > s.value(49, &u) + 0.01,
            "the allocation must matter: optimum {} uniform {}",
            o.value,
            s.value(49, &u)
        );
        // The early optimum differs from the final one (the drift matters).
        assert_ne!(optimum(&b, &s, 0).unwrap().kept, o.kept);
        let mut rng = Rng::new(1);
        let xs: Vec<f64> = (0..400).map(|_| s.sample(49, &u, &mut rng)).collect();
        let mean = xs.iter().sum::<f64>() / 400.0;
        let sd = (xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / 399.0).sqrt();
        let v = s.value(49, &u);
        let want = (v * (1.0 - v) / 5000.0).sqrt();
        assert!(
            (mean - v).abs() < 4.0 * want / 20.0 && (sd / want - 1.0).abs() < 0.2,
            "mean {mean} sd {sd} vs {v} {want}"
        );
    }
}
