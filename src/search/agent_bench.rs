//! `rlal bench agent`: the pruning environment with a known optimum, in
//! seconds, without training a CNN: the real [`Budget`] of a graph (bounds,
//! cost model and state features exactly as in a run) and a synthetic accuracy
//! surface ([`super::surface`]: its families, run effects and optimum). The
//! episode schedule, the search policies and the selection rule are those of
//! `rlal prune` (recipe phases, [`crate::search::policy`], [`Incumbents`]).
use super::best::{Best, Incumbents, Selection};
use super::policy::{Ctx, SearchPolicy};
use super::recipe::{Policy, Recipe};
use super::surface::{optimum, Optimum, Surface, SurfaceConfig};
use crate::agent::Budget;
use crate::rng::{Rng, Stream};
use serde::Serialize;

/// What a benchmark run compares: a search policy of `rlal prune`
/// ([`crate::search::policy`]) with the recipe's settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    /// The recipe's agent (`policy: rlal`).
    Rlal,
    /// The recipe's agent without the environment model (z = 0, paper "w/o EE").
    NoEnvModel,
    /// Random search: uniformly random bounded episodes, the recipe's selection rule.
    Random,
    /// Uniform pruning (one architecture).
    Uniform,
    /// Regularised evolution (`policy: evolution`, the recipe's `evolution:`).
    Evolution,
    /// (1+λ) hill climbing around the incumbent (`policy: local`, the recipe's `local:`).
    Local,
}

/// The methods of a single `rlal bench agent` run when `--methods` is not given.
pub const DEFAULT_METHODS: [Method; 6] = [
    Method::Rlal,
    Method::NoEnvModel,
    Method::Random,
    Method::Evolution,
    Method::Local,
    Method::Uniform,
];

/// A method's name as `--methods` spells it.
pub fn method_name(m: Method) -> String {
    serde_json::to_value(m).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default()
}

impl Method {
    /// The method's name as the docs and tables write it (legends, progress lines).
    pub fn label(self) -> &'static str {
        match self {
            Method::Rlal => "RLAL",
            Method::NoEnvModel => "w/o EE",
            Method::Random => "random",
            Method::Uniform => "uniform",
            Method::Evolution => "evolution",
            Method::Local => "local",
        }
    }

    /// The method's search policy for recipe `r`, `layers` prunable layers and `seed`.
    pub fn policy(self, r: &Recipe, layers: usize, seed: u64) -> Box<dyn SearchPolicy> {
        let mut r = r.clone();
        r.policy = match self {
            Method::Rlal | Method::NoEnvModel => Policy::Rlal,
            Method::Random => Policy::Random,
            Method::Uniform => Policy::Uniform,
            Method::Evolution => Policy::Evolution,
            Method::Local => Policy::Local,
        };
        r.agent.env_model &= self != Method::NoEnvModel;
        super::policy::build(&r, layers, seed)
    }
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

/// Runs `method` on the surface of `seed` with the recipe's schedule, policy
/// settings and selection rule, as `rlal prune` does (the incumbents re-scored, then
/// the policy's episodes, its learning); `opt_final`: the optimum on the final surface.
pub fn run(
    r: &Recipe,
    budget: &Budget,
    surface: &Surface,
    opt_final: &Optimum,
    method: Method,
    seed: u64,
) -> Result<Trace, String> {
    let last = r.training.epochs.max(1) - 1;
    let mut policy = method.policy(r, budget.layers.len(), seed);
    let mut rng = Rng::stream(seed, Stream::Search);
    let mut noise = Rng::stream(seed, Stream::BenchNoise);
    let rescore = r.search.selection == Selection::Rescore && policy.keeps_best();
    let mut inc = Incumbents::default();
    let regret = |kept: &[usize]| opt_final.value - surface.value(last, kept);
    let mut rows = Vec::new();
    let mut sr = surface.run(seed);
    for t in 0..r.training.epochs {
        let phase = r.phase(t);
        sr.begin_epoch(t);
        if let Some(b) = inc.best() {
            sr.set_incumbent(&b.kept);
        }
        let mut row = EpochStat { epoch: t + 1, phase: phase.name().into(), ..Default::default() };
        if phase.searching() {
            if rescore {
                let _ = inc.rescore(t + 1, |kept| Ok::<_, ()>(sr.reward(kept, &mut noise)));
            }
            let mut ctx = Ctx {
                budget,
                net: None,
                rng: &mut rng,
                incumbent: inc.best(),
                phase,
                episodes: r.search.episodes_per_epoch,
            };
            let kept = policy.propose(t, &mut ctx).map_err(|e| format!("epoch {}: {e}", t + 1))?;
            let rewards: Vec<f64> = kept.iter().map(|k| sr.reward(k, &mut noise)).collect();
            policy.observe(t, &kept, &rewards);
            row.episodes(budget, &kept, &rewards);
            for (kept, reward) in kept.into_iter().zip(rewards) {
                let b = Best { reward, kept, epoch: t + 1 };
                match policy.keeps_best() {
                    true => inc.offer(b, r.kept_incumbents(), rescore),
                    false => inc.replace(b),
                }
            }
            if policy.learns(phase) {
                let learned =
                    policy.update(&mut rng).map_err(|e| format!("agent epoch {}: {e}", t + 1))?;
                if let Some(l) = learned {
                    (row.entropy, row.alpha) = (Some(l.stats.entropy), Some(l.alpha));
                }
                if let Some(g) = policy.greedy(budget, t) {
                    row.greedy_reward = Some(surface.value(t, &g));
                    row.greedy_macs = Some(macs_share(budget, &g));
                    row.greedy_regret = Some(regret(&g));
                }
            }
        }
        row.regret = inc.best().map(|b| regret(&b.kept));
        rows.push(row);
    }
    let changed = rescore
        && inc
            .rescore(r.training.epochs, |kept| Ok::<_, ()>(sr.reward(kept, &mut noise)))
            .unwrap_or(false);
    let final_kept =
        inc.best().map(|b| b.kept.clone()).unwrap_or_else(|| super::reward::uniform_kept(budget));
    Ok(Trace {
        method,
        seed,
        epochs: rows,
        final_regret: regret(&final_kept),
        final_kept,
        final_choice_changed: changed,
    })
}

/// MACs of `kept` / the unpruned MACs.
fn macs_share(budget: &Budget, kept: &[usize]) -> f64 {
    budget.macs(kept) as f64 / budget.full_macs().max(1) as f64
}

impl EpochStat {
    /// The mean and best reward and the mean MACs share of the epoch's episodes.
    fn episodes(&mut self, budget: &Budget, kept: &[Vec<usize>], rewards: &[f64]) {
        let n = rewards.len().max(1) as f64;
        self.mean_reward = Some(rewards.iter().sum::<f64>() / n);
        self.best_reward = rewards.iter().copied().reduce(f64::max);
        self.mean_macs = Some(kept.iter().map(|k| macs_share(budget, k)).sum::<f64>() / n);
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
    /// Where the searches started (`search.start-from`).
    pub start_from: super::policy::StartFrom,
    pub agent: crate::agent::AgentConfig,
    /// Per seed: the final surface's optimum, or where it cannot be computed
    /// exactly, the best architecture found (`exact`, `source`).
    pub optimum: Vec<Optimum>,
    /// Whether the optimum is exact on every seed; else regret is measured against
    /// the best architecture found (`optimum_source`: each seed's source).
    pub optimum_exact: bool,
    pub optimum_source: Vec<String>,
    /// Per seed: the final surface's value of uniform pruning.
    pub uniform_value: Vec<f64>,
    pub summaries: Vec<MethodSummary>,
    pub traces: Vec<Trace>,
    pub seconds: f64,
}

/// Where the optimum is not exact, the best final choice of the seed's `traces`
/// when it beats the reference: the reference becomes that choice and every
/// regret of the traces moves by the difference (regret >= 0 by construction).
fn settle(opt: Optimum, traces: &mut [Trace], surface: &Surface, last: usize) -> Optimum {
    let best = traces
        .iter()
        .map(|tr| (surface.value(last, &tr.final_kept), tr))
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .filter(|(v, _)| !opt.exact && *v > opt.value);
    let Some((value, tr)) = best else { return opt };
    let better = Optimum {
        value,
        kept: tr.final_kept.clone(),
        exact: false,
        source: format!("method:{}", method_name(tr.method)),
    };
    let d = value - opt.value;
    for tr in traces {
        tr.final_regret += d;
        for e in &mut tr.epochs {
            for x in [&mut e.regret, &mut e.greedy_regret].into_iter().flatten() {
                *x += d;
            }
        }
    }
    better
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
        let first = traces.len();
        for &m in methods {
            let ts = std::time::Instant::now();
            let tr = run(r, budget, &surface, &opt, m, seed)
                .map_err(|e| format!("seed {seed} {}: {e}", m.label()))?;
            if progress {
                eprintln!(
                    "seed {seed} {}: final regret {:.2} points ({:.1} s)",
                    m.label(),
                    100.0 * tr.final_regret,
                    ts.elapsed().as_secs_f64()
                );
            }
            traces.push(tr);
        }
        optima.push(settle(opt, &mut traces[first..], &surface, last));
    }
    let summaries = methods
        .iter()
        .map(|&m| summarise(m, &traces.iter().filter(|t| t.method == m).collect::<Vec<_>>()))
        .collect();
    Ok(BenchReport {
        model: r.model.as_ref().map(|p| p.display().to_string()).unwrap_or_default(),
        layers: budget.layers.len(),
        budget_ratio: r.budget().ratio,
        surface: scfg.clone(),
        epochs: r.training.epochs,
        warmup_epochs: r.search.weights_only_epochs,
        buffer_epochs: r.search.buffer_epochs,
        agent_epochs: r.search.agent_epochs,
        episodes_per_epoch: r.search.episodes_per_epoch,
        selection: r.search.selection,
        start_from: r.search.start_from,
        incumbents: r.kept_incumbents(),
        agent: r.agent.clone(),
        optimum_exact: optima.iter().all(|o| o.exact),
        optimum_source: optima.iter().map(|o| o.source.clone()).collect(),
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
        plotters::style::CYAN,
        plotters::style::RGBColor(255, 140, 0),
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
            .map(|(s, &c)| (s.method.label().to_string(), c, per_epoch(s.method, f)))
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
    use crate::search::surface::tests::budget;

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
        // The agent's own learning, from random episodes only: started from the
        // uniform architecture (the default) its greedy policy on this seed ends at
        // 4.54 points of regret against uniform's 3.78 (docs/BENCHMARKS.md).
        r.search.start_from = crate::search::policy::StartFrom::Random;
        let s = Surface::new(
            &b,
            r.training.epochs,
            &SurfaceConfig { reward_samples: 500, drift: 0.3, ..Default::default() },
            3,
        );
        let opt = optimum(&b, &s, r.training.epochs - 1).unwrap();
        let agent = run(&r, &b, &s, &opt, Method::Rlal, 3).unwrap();
        let random = run(&r, &b, &s, &opt, Method::Random, 3).unwrap();
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
}
