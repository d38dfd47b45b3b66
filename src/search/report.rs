//! Run-directory outputs: per-epoch metrics rows, `best_policy.yaml`, the
//! validation of the exported models with ONNX Runtime (tract when ONNX
//! Runtime is missing), `report.json`, `report.md` and the summary screen.
use super::best::Best;
use super::recipe::Recipe;
use crate::data::Loader;
use crate::ir::Graph;
use crate::validate;
use crate::validate::compare::{self, Setup, Timing};
use crate::validate::latency::Latency;
use anyhow::Context as _;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// One line of `metrics.jsonl`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct EpochRow {
    pub epoch: usize,
    /// `warmup`, `buffer`, `agent` (or `search` for baselines), `weights`.
    pub phase: String,
    pub lr: f64,
    pub train_loss: f64,
    pub train_acc: f64,
    /// Mean L_align over the epoch's batches (before β).
    pub align_loss: Option<f64>,
    pub test_acc: Option<f64>,
    /// Reward (reward-subset accuracy) of each episode.
    pub rewards: Vec<f64>,
    /// Achieved MACs of each episode.
    pub macs: Vec<u64>,
    pub mean_reward: Option<f64>,
    pub best_reward: Option<f64>,
    pub env_loss: Option<f64>,
    pub critic_loss: Option<f64>,
    pub actor_loss: Option<f64>,
    pub entropy: Option<f64>,
    /// Replay batches the agent learned from after the epoch's episodes (0: the
    /// replay held less than one batch, and no loss is reported).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_updates: Option<usize>,
    /// SAC entropy coefficient α used by the updates (fixed, paper 0.1).
    #[serde(default)]
    pub alpha: Option<f64>,
    /// Seconds of the weight-training epoch.
    pub train_seconds: f64,
    /// Seconds of the episodes and agent updates after it.
    pub search_seconds: f64,
    /// The agent updates (env model + SAC): part of `search_seconds`, unless
    /// `update_overlapped`.
    #[serde(default)]
    pub update_seconds: f64,
    /// The updates ran beside the next epoch's weight training (`agent.overlap`):
    /// `search_seconds` then counts only the time that training waited for them.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub update_overlapped: bool,
    /// Of `search_seconds`, the episodes' rewards by stage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reward_stages: Option<super::reward::RewardStages>,
}

impl EpochRow {
    /// Records the statistics of the epoch's agent updates.
    pub fn set_updates(
        &mut self,
        st: &crate::agent::UpdateStats,
        seconds: f64,
        env_model: bool,
        alpha: f64,
    ) {
        self.update_seconds = seconds;
        self.agent_updates = Some(st.updates);
        self.alpha = Some(alpha);
        if st.updates == 0 {
            return;
        }
        self.env_loss = env_model.then_some(st.env_loss);
        self.critic_loss = Some(st.critic_loss);
        self.actor_loss = Some(st.actor_loss);
        self.entropy = Some(st.entropy);
    }

    pub fn line(&self, total: usize) -> String {
        let f =
            |x: Option<f64>| x.map(|v| format!("{:.2}%", 100.0 * v)).unwrap_or_else(|| "-".into());
        let mut s = format!(
            "epoch {}/{} [{}] loss {:.4} acc {:.2}% test {}",
            self.epoch,
            total,
            self.phase,
            self.train_loss,
            100.0 * self.train_acc,
            f(self.test_acc)
        );
        if !self.rewards.is_empty() {
            s += &format!(
                " | {} episodes mean reward {} best {}",
                self.rewards.len(),
                f(self.mean_reward),
                f(self.best_reward)
            );
        }
        if self.agent_updates == Some(0) {
            s += " agent: no update (the replay holds less than one batch)";
        }
        if let Some(c) = self.critic_loss {
            s += &format!(
                " critic {:.4} actor {:.4} env {:.4}",
                c,
                self.actor_loss.unwrap_or(0.0),
                self.env_loss.unwrap_or(0.0)
            );
        }
        s + &format!(" ({:.1}s + {:.1}s search)", self.train_seconds, self.search_seconds)
    }
}

/// One layer of the chosen architecture.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LayerChoice {
    pub layer: usize,
    pub group: usize,
    pub name: String,
    pub channels: usize,
    pub kept: usize,
    /// kept / channels.
    pub ratio: f64,
    pub kept_channels: Vec<usize>,
}

#[derive(Serialize)]
struct PolicyFile<'a> {
    reward: f64,
    epoch: usize,
    macs: u64,
    /// What the budget limits (`macs`, `params`, `latency` in ns per batch) and its figures.
    budget: &'a str,
    target: u64,
    achieved: u64,
    layers: &'a [LayerChoice],
}

/// `best_policy.yaml`.
pub fn write_policy(
    dir: &Path,
    best: &Best,
    layers: &[LayerChoice],
    budget: &crate::agent::Budget,
) -> anyhow::Result<()> {
    let y = serde_yaml::to_string(&PolicyFile {
        reward: best.reward,
        epoch: best.epoch,
        macs: budget.macs(&best.kept),
        budget: budget.metric.key(),
        target: budget.target,
        achieved: budget.measure(&best.kept),
        layers,
    })?;
    crate::util::write_atomic(&dir.join("best_policy.yaml"), y.as_bytes())
        .context("writing best_policy.yaml")
}

/// Accuracy, MACs and params of one model.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Figures {
    pub accuracy: f64,
    pub macs: u64,
    pub params: u64,
    /// Median ms per batch of 1 and of `latency_batch`.
    pub latency_ms: f64,
    pub latency_batch_ms: f64,
}

/// A latency budget: the table's estimates against ONNX Runtime measurements
/// of the exported models (BN folded), at the table's batch and threads.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LatencyBudget {
    pub batch: usize,
    pub threads: usize,
    pub target_ms: f64,
    pub estimated_unpruned_ms: f64,
    pub estimated_pruned_ms: f64,
    pub measured_unpruned_ms: f64,
    pub measured_pruned_ms: f64,
}

/// `report.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Report {
    pub name: String,
    pub policy: String,
    /// The recipe's `search-space` (`all` or `blocks`).
    #[serde(default)]
    pub search_space: String,
    pub model: String,
    pub data: String,
    /// Accuracy of the fine-tuned pruned model on the test split (engine below).
    pub accuracy: f64,
    /// `macs`, `params` or `latency`: what the budget limits.
    pub budget: String,
    /// The latency budget's figures (latency budgets only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_budget: Option<LatencyBudget>,
    /// Requested ratio of the budget's metric.
    pub target_ratio: f64,
    pub macs_ratio: f64,
    pub params_ratio: f64,
    /// `start: pretrained`: the model as the user gave it, measured before any training.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub original: Option<Figures>,
    pub unpruned: Figures,
    pub pruned: Figures,
    /// Test accuracy of the jointly trained network's best sub-network before fine-tuning
    /// (removed channels masked; BN statistics re-estimated as for the rewards when `search.reward-bn-samples` > 0).
    pub masked_accuracy: f64,
    pub best_reward: f64,
    pub best_epoch: usize,
    /// `search.selection: rescore`: whether scoring the incumbents on the final weights changed the choice.
    #[serde(default)]
    pub final_choice_changed: Option<bool>,
    pub engine: String,
    pub test_samples: usize,
    pub latency_batch: usize,
    pub speedup: f64,
    /// When the pruned model is not faster: ONNX Runtime's profile of both at the
    /// latency batch, by op type (ms per run: op, unpruned, pruned), largest growth first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub slow_ops: Vec<(String, f64, f64)>,
    /// Seconds of weight training in the joint phase.
    pub train_seconds: f64,
    /// Seconds of episodes + agent updates in the joint phase.
    pub search_seconds: f64,
    /// search_seconds / train_seconds over the epochs that ran episodes.
    pub search_overhead: f64,
    pub finetune_seconds: f64,
    pub total_seconds: f64,
    /// The recipe's `channel-multiple` (1: widths unaligned).
    #[serde(default = "one")]
    pub channel_multiple: usize,
    pub layers: Vec<LayerChoice>,
}

fn one() -> usize {
    1
}

/// What [`validate`] needs from the run.
pub struct Context<'a> {
    pub recipe: &'a Recipe,
    /// `start: pretrained`: the model as the user gave it, measured before training.
    pub original: Option<Figures>,
    pub best: &'a Best,
    /// `search.selection: rescore`: whether scoring the incumbents on the final weights changed the choice.
    pub final_choice_changed: Option<bool>,
    pub layers: Vec<LayerChoice>,
    pub masked_acc: f64,
    pub search_seconds: f64,
    pub finetune_seconds: f64,
    pub total_seconds: f64,
    pub train_seconds: f64,
    /// search / training seconds over the epochs that ran episodes.
    pub search_overhead: f64,
}

/// The report's latency figures: batch 1, then `batch`.
fn timings(batch: usize) -> [Timing; 2] {
    [Timing { batch: 1, warmup: 3, runs: 20 }, Timing { batch, warmup: 2, runs: 10 }]
}

/// How the report runs a model of input `dims`: ONNX Runtime on the CPU (tract as the
/// fallback) with `threads`, accuracy on `test`.
fn setup<'a>(
    sample: &'a [usize],
    timings: &'a [Timing],
    test: &'a Loader,
    threads: usize,
) -> Setup<'a> {
    Setup { sample, threads, ep: validate::Ep::Cpu, timings, test: Some(test) }
}

/// A model's row from its graph (MACs, params) and what the engine measured.
fn row(
    g: &Graph,
    latency: &[Latency],
    accuracy: Option<validate::Accuracy>,
) -> anyhow::Result<Figures> {
    let facts =
        crate::ir::infer::infer(g, None).map_err(|e| anyhow::anyhow!("shape inference: {e}"))?;
    let an = crate::analysis::Analysis::new(g, facts, Vec::new());
    let median = |i: usize| latency.get(i).map_or(0.0, |l| l.median_ms);
    Ok(Figures {
        accuracy: accuracy.map_or(0.0, |a| a.rate()),
        macs: an.cost.full_macs(),
        params: an.cost.full_params(),
        latency_ms: median(0),
        latency_batch_ms: median(1),
    })
}

/// Accuracy on `test` (ONNX Runtime, tract as fallback), MACs, params and latency at
/// batch 1 and `batch` of model `g`, with the engine's name and the images scored.
pub fn figures(
    g: &Graph,
    test: &Loader,
    dims: [usize; 3],
    batch: usize,
    threads: usize,
) -> anyhow::Result<(Figures, String, usize)> {
    let (sample, timings) = ([1, dims[0], dims[1], dims[2]], timings(batch));
    let bytes = crate::onnx::to_bytes(g);
    let m = compare::Model { name: "given", bytes: &bytes };
    let f = compare::measure(m, &setup(&sample, &timings, test, threads))?;
    let n = f.accuracy.map_or(0, |a| a.samples);
    Ok((row(g, &f.latency, f.accuracy)?, f.engine, n))
}

/// Both models' ONNX Runtime profiles at input `shape`: (op type, unpruned ms, pruned ms)
/// per run, the op types whose time grew most first.
fn compare_profiles(
    unpruned: &Graph,
    pruned: &Graph,
    shape: &[usize],
    threads: usize,
) -> anyhow::Result<Vec<(String, f64, f64)>> {
    let prof =
        |g: &Graph| validate::profile::profile(&crate::onnx::to_bytes(g), shape, threads, 2, 10);
    let (u, p) = (prof(unpruned)?, prof(pruned)?);
    let mut ops: Vec<String> = u.by_op.iter().chain(&p.by_op).map(|(o, _)| o.clone()).collect();
    ops.sort();
    ops.dedup();
    let mut v: Vec<(String, f64, f64)> =
        ops.into_iter().map(|o| (o.clone(), u.ms(&o), p.ms(&o))).collect();
    v.sort_by(|a, b| (b.2 - b.1).total_cmp(&(a.2 - a.1)));
    Ok(v)
}

/// Validates both exported models (accuracy on the test split, MACs, params, latency).
pub fn validate(
    c: &Context,
    unpruned: &Graph,
    pruned: &Graph,
    test: &Loader,
    dims: [usize; 3],
    batch: usize,
) -> anyhow::Result<Report> {
    let threads = c.recipe.training.threads;
    let (sample, timings) = ([1, dims[0], dims[1], dims[2]], timings(batch));
    let (ub, pb) = (crate::onnx::to_bytes(unpruned), crate::onnx::to_bytes(pruned));
    let cmp = compare::compare(
        compare::Model { name: "unpruned", bytes: &ub },
        compare::Model { name: "pruned", bytes: &pb },
        None,
        &setup(&sample, &timings, test, threads),
    )
    .context("validating the exported models")?;
    let (ua, pa) = cmp.accuracy.unzip();
    let (u, p) = (row(unpruned, &cmp.before, ua)?, row(pruned, &cmp.after, pa)?);
    let (engine, n) = (cmp.engine, pa.map_or(0, |a| a.samples));
    let speedup = u.latency_batch_ms / p.latency_batch_ms.max(1e-9);
    let slow_ops = if speedup < 1.0 && engine.starts_with("ort") {
        let shape = [batch, dims[0], dims[1], dims[2]];
        compare_profiles(unpruned, pruned, &shape, threads)
            .context("profiling the models in ONNX Runtime")?
    } else {
        Vec::new()
    };
    Ok(Report {
        name: c.recipe.name.clone(),
        policy: c.recipe.policy.name().to_string(),
        search_space: format!("{:?}", c.recipe.search_space).to_lowercase(),
        model: c.recipe.model.as_ref().map(|m| m.display().to_string()).unwrap_or_default(),
        data: c.recipe.data.as_ref().map(|m| m.display().to_string()).unwrap_or_default(),
        accuracy: p.accuracy,
        budget: c.recipe.budget().metric.key().to_string(),
        latency_budget: None,
        target_ratio: c.recipe.budget().ratio,
        macs_ratio: p.macs as f64 / u.macs.max(1) as f64,
        params_ratio: p.params as f64 / u.params.max(1) as f64,
        speedup,
        slow_ops,
        original: c.original.clone(),
        unpruned: u,
        pruned: p,
        masked_accuracy: c.masked_acc,
        best_reward: c.best.reward,
        best_epoch: c.best.epoch,
        final_choice_changed: c.final_choice_changed,
        engine,
        test_samples: n,
        latency_batch: batch,
        search_seconds: c.search_seconds,
        train_seconds: c.train_seconds,
        search_overhead: c.search_overhead,
        finetune_seconds: c.finetune_seconds,
        total_seconds: c.total_seconds,
        channel_multiple: c.recipe.channel_multiple,
        layers: c.layers.clone(),
    })
}

/// The summary screen (also the body of `report.md`).
pub fn summary(r: &Report) -> String {
    let mut s = format!("# rlal prune: {} ({} policy)\n\n", r.name, r.policy);
    s += &format!(
        "model {} on {}; validated with {} on {} test images\n\n",
        r.model, r.data, r.engine, r.test_samples
    );
    s += "| | accuracy | MACs | params | latency b=1 (ms) | latency b=batch (ms) |\n|---|---|---|---|---|---|\n";
    let mut rows =
        vec![("unpruned (jointly trained)", &r.unpruned), ("pruned + fine-tuned", &r.pruned)];
    if let Some(o) = &r.original {
        rows[0].0 = "unpruned (trained on with the search)";
        rows.insert(0, ("original model (as given)", o));
    }
    for (n, f) in rows {
        s += &format!(
            "| {n} | {:.2}% | {} | {} | {:.3} | {:.3} |\n",
            100.0 * f.accuracy,
            f.macs,
            f.params,
            f.latency_ms,
            f.latency_batch_ms
        );
    }
    s += &format!(
        "\nMACs ratio {:.3}, params ratio {:.3} (budget: {} ratio {:.3}), speed-up {:.2}x at batch {}; masked accuracy before fine-tuning {:.2}%; best reward {:.2}% (epoch {}).\n",
        r.macs_ratio, r.params_ratio, r.budget, r.target_ratio, r.speedup, r.latency_batch, 100.0 * r.masked_accuracy, 100.0 * r.best_reward, r.best_epoch
    );
    if let Some(o) = &r.original {
        // Latency is compared with the unpruned row (same graph, measured beside the
        // pruned one); the original was timed at the start, under other load.
        s += &format!(
            "Against the original model: accuracy {:+.2} points, MACs ratio {:.3}.\n",
            100.0 * (r.pruned.accuracy - o.accuracy),
            r.pruned.macs as f64 / o.macs.max(1) as f64,
        );
    }
    if let Some(changed) = r.final_choice_changed {
        s += if changed {
            "Re-scored on the final weights, another incumbent beat the one that led before: the pruned architecture is that one (selection: rescore).\n"
        } else {
            "Re-scored on the final weights, the leading incumbent stayed the best (selection: rescore).\n"
        };
    }
    if let Some(l) = &r.latency_budget {
        s += &format!(
            "Latency budget at batch {} ({} threads): target {:.3} ms; table estimate {:.3} ms unpruned, {:.3} ms pruned; measured {:.3} ms unpruned, {:.3} ms pruned.\n",
            l.batch,
            l.threads,
            l.target_ms,
            l.estimated_unpruned_ms,
            l.estimated_pruned_ms,
            l.measured_unpruned_ms,
            l.measured_pruned_ms
        );
    }
    if let Some(h) = alignment_hint(r) {
        s += &h;
    }
    s += &format!("Time: weight training {:.1}s, search {:.1}s (episodes + agent updates; {:.1}% of the training time of the search epochs), fine-tuning {:.1}s, total {:.1}s.\n\n| layer | name | kept / channels |\n|---|---|---|\n", r.train_seconds, r.search_seconds, 100.0 * r.search_overhead, r.finetune_seconds, r.total_seconds);
    for l in &r.layers {
        s += &format!(
            "| {} | {} | {} / {} ({:.0}%) |\n",
            l.layer,
            l.name,
            l.kept,
            l.channels,
            100.0 * l.ratio
        );
    }
    s
}

/// When the pruned model runs slower than the unpruned one in ONNX Runtime: some
/// pruned widths are not multiples of 4 (which keeps ONNX Runtime's blocked NCHWc
/// CPU convolutions off those layers) and what to do about it, or, when the
/// recipe already aligns the widths, what was measured.
fn alignment_hint(r: &Report) -> Option<String> {
    if r.speedup >= 1.0 || !r.engine.starts_with("ort") {
        return None;
    }
    let odd: Vec<String> = r
        .layers
        .iter()
        .filter(|l| l.kept < l.channels && l.kept % 4 != 0)
        .map(|l| l.layer.to_string())
        .collect();
    let measured = format!(
        "{:.3} ms pruned against {:.3} ms unpruned per batch of {}",
        r.pruned.latency_batch_ms, r.unpruned.latency_batch_ms, r.latency_batch
    );
    let m = r.channel_multiple;
    match (odd.is_empty(), m > 1) {
        (true, false) => None,
        (false, false) => Some(format!(
            "Note: the pruned model runs slower than the unpruned one in ONNX Runtime ({measured}). Layers {} keep widths that are not multiples of 4, which keeps ONNX Runtime's blocked (NCHWc) CPU convolutions off them; `channel-multiple: 4` in the recipe (or `--channel-multiple 4`) searches aligned widths (docs/BENCHMARKS.md, search cost).\n",
            odd.join(", ")
        )),
        (false, true) => Some(format!(
            "Note: the pruned model runs slower than the unpruned one in ONNX Runtime ({measured}). The recipe's `channel-multiple: {m}` is not a multiple of 4, so layers {} keep widths that ONNX Runtime's blocked (NCHWc) CPU convolutions skip; a multiple of 4 (4, 8 or 16) aligns them.\n",
            odd.join(", ")
        )),
        (true, true) => Some(format!(
            "Note: the pruned model runs slower than the unpruned one in ONNX Runtime ({measured}), although every pruned width is a multiple of {m} (`channel-multiple: {m}`).\n"
        )),
    }
    .map(|h| h + &profile_hint(r))
}

/// What ONNX Runtime's profile says about a pruned model that is not faster, and what to
/// change: from the op types whose time grew (`Report::slow_ops`).
fn profile_hint(r: &Report) -> String {
    let grown: Vec<&(String, f64, f64)> =
        r.slow_ops.iter().filter(|(_, u, p)| p > u).take(3).collect();
    let mut s = String::new();
    if !grown.is_empty() {
        let list: Vec<String> =
            grown.iter().map(|(o, u, p)| format!("{o} {u:.3} -> {p:.3} ms")).collect();
        s += &format!(
            "ONNX Runtime's profile at batch {} (per run, unpruned -> pruned): {}. ",
            r.latency_batch,
            list.join(", ")
        );
        let top = grown[0].0.as_str();
        s += if top.starts_with("Reorder") {
            "The layout conversions around the blocked (NCHWc) convolutions grew: widths that are multiples of 4 but not of 8 or 16 switch layouts between layers; `channel-multiple: 8` (16 on AVX-512) keeps whole blocks. "
        } else if matches!(top, "Slice" | "Pad" | "Concat" | "Gather") {
            "Channel bookkeeping ops grew (the shortcut's Slice/Pad or Gather of kept channels): pruning the layers around the shortcuts less, or `search-space: blocks`, leaves them alone. "
        } else {
            "The pruned convolutions did not get cheaper in proportion to their MACs (small layers are bound by memory and launch costs, not arithmetic). "
        };
    }
    s + "Where latency in ONNX Runtime is the goal, budget it directly: `budget: {metric: latency, ratio: R}` measures each layer's latency and searches under that (MACs and latency disagree for this model); `rlal bench latency --run DIR` shows where the time goes.\n"
}

/// `report.json` and `report.md`.
pub fn write(dir: &Path, r: &Report) -> anyhow::Result<()> {
    crate::util::write_atomic(
        &dir.join("report.json"),
        serde_json::to_string_pretty(r)?.as_bytes(),
    )
    .context("writing report.json")?;
    crate::util::write_atomic(&dir.join("report.md"), summary(r).as_bytes())
        .context("writing report.md")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_epoch_without_agent_updates_says_so_instead_of_zero_losses() {
        let mut row = EpochRow { epoch: 3, ..Default::default() };
        let none = crate::agent::UpdateStats::default();
        row.set_updates(&none, 0.0, true, 0.1);
        let line = row.line(10);
        assert!(line.contains("no update") && !line.contains("critic"), "{line}");
        assert_eq!((row.critic_loss, row.env_loss, row.agent_updates), (None, None, Some(0)));
        let some = crate::agent::UpdateStats { updates: 300, critic_loss: 0.25, ..none };
        row.set_updates(&some, 1.0, true, 0.1);
        let line = row.line(10);
        assert!(line.contains("critic 0.2500") && !line.contains("no update"), "{line}");
    }

    #[test]
    fn slow_unaligned_models_get_the_alignment_hint() {
        let layer = |i: usize, kept: usize| LayerChoice {
            layer: i,
            group: i,
            name: format!("conv{i}"),
            channels: 16,
            kept,
            ratio: kept as f64 / 16.0,
            kept_channels: (0..kept).collect(),
        };
        let f = |ms: f64| Figures {
            accuracy: 0.9,
            macs: 100,
            params: 10,
            latency_ms: ms,
            latency_batch_ms: ms,
        };
        let mut r: Report = serde_json::from_value(serde_json::json!({
            "name": "t", "policy": "rlal", "model": "m.onnx", "data": "d", "accuracy": 0.9, "budget": "macs", "target_ratio": 0.5,
            "macs_ratio": 0.5, "params_ratio": 0.5, "unpruned": serde_json::to_value(f(1.0)).unwrap(), "pruned": serde_json::to_value(f(1.2)).unwrap(),
            "masked_accuracy": 0.9, "best_reward": 0.9, "best_epoch": 1, "engine": "ort", "test_samples": 10, "latency_batch": 64, "speedup": 0.8,
            "search_seconds": 1.0, "train_seconds": 1.0, "search_overhead": 0.1, "finetune_seconds": 1.0, "total_seconds": 3.0, "layers": []
        }))
        .unwrap();
        r.layers = vec![layer(0, 8), layer(1, 9), layer(2, 16)];
        let s = summary(&r);
        assert!(
            s.contains("Layers 1 keep widths that are not multiples of 4")
                && s.contains("channel-multiple: 4"),
            "{s}"
        );
        r.speedup = 1.3;
        assert!(!summary(&r).contains("channel-multiple"));
        r.speedup = 0.8;
        r.layers = vec![layer(0, 8), layer(1, 12)];
        assert!(!summary(&r).contains("channel-multiple"), "aligned widths: no hint");
        // The recipe already aligns the widths: no advice to set it, the measurement instead.
        r.channel_multiple = 4;
        let s = summary(&r);
        assert!(!s.contains("in the recipe (or `--channel-multiple"), "{s}");
        assert!(
            s.contains("every pruned width is a multiple of 4 (`channel-multiple: 4`)")
                && s.contains("1.200 ms pruned against 1.000 ms unpruned per batch of 64"),
            "{s}"
        );
        // With the profile of both models: the op types that grew, what to change, and
        // the latency budget as the direct route.
        r.slow_ops = vec![("ReorderOutput".into(), 1.2, 3.4), ("Conv".into(), 59.0, 42.0)];
        let s = summary(&r);
        assert!(
            s.contains("(per run, unpruned -> pruned): ReorderOutput 1.200 -> 3.400 ms.")
                && !s.contains("Conv 59")
                && s.contains("`channel-multiple: 8`")
                && s.contains("`budget: {metric: latency, ratio: R}`"),
            "{s}"
        );
        r.slow_ops = vec![("Slice".into(), 1.0, 2.0)];
        assert!(summary(&r).contains("shortcut's Slice/Pad"));
        r.slow_ops.clear();
        r.channel_multiple = 2;
        r.layers = vec![layer(0, 8), layer(1, 10)];
        let s = summary(&r);
        assert!(
            s.contains("`channel-multiple: 2` is not a multiple of 4, so layers 1")
                && !s.contains("in the recipe (or"),
            "{s}"
        );
    }
}
