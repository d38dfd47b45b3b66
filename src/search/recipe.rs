//! `rlal prune` recipes (YAML, docs/RECIPES.md). The model, the data, the run name,
//! the policy and the budget are top-level fields; the rest is in sections:
//! `training:` (the weight training, [`Training`]: the same section as in
//! `rlal train` recipes), `search:` (the search schedule and reward, [`Search`]),
//! `finetune:` (fine-tuning of the pruned graph, [`Finetune`]), `agent:`
//! ([`AgentConfig`], read by `policy: rlal`), `evolution:` ([`EvolutionConfig`], read
//! by `policy: evolution`) and `local:` ([`LocalConfig`], read by `policy: local`).
//! Every field but the budget ([`BudgetSpec`], `budget:`; its spelling before
//! 2026-12, `macs-ratio: 0.5`, still reads, [`budget`]) has a documented default;
//! unknown fields are errors naming the field with its section and its line, fields
//! of the flat recipes before 2026-12 errors naming their new place
//! ([`crate::train::recipe::moved`]); command line flags override the file.
//! [`Recipe::check`] validates the values without touching the model or the data
//! (a bad value's error names the field and its line, [`RecipeError`]);
//! the budget's feasibility needs the model and is checked by
//! [`crate::search::job`] before any training.
//!
//! Epoch phases (paper appendix B, 0-based epoch indices `t` of `training.epochs`;
//! `w` = `search.weights-only-epochs`, `b` = `search.buffer-epochs`, `a` =
//! `search.agent-epochs`): `t < w`: weights only; `w <= t < w + b`: weights +
//! exploratory (uniformly random) episodes that fill the replay buffer;
//! `w + b <= t < a`: weights + policy episodes + agent updates; `t >= a`: weights
//! only (with alignment to the best policy). Then surgery and `finetune.epochs` of
//! fine-tuning.
pub use super::best::Selection;
pub use super::policy::evolution::EvolutionConfig;
pub use super::policy::local::LocalConfig;
pub use super::policy::StartFrom;
use crate::agent::AgentConfig;
pub use crate::agent::{Metric, Overlap};
use crate::analysis::ImportOptions;
use crate::ir::InputLayout;
use crate::train::recipe::{moved, parse_yaml, RecipeError, ScheduleKind, Training, MAX_EPOCHS};
pub use budget::{BudgetSpec, Old};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub mod budget;

/// How the per-layer widths are chosen: the search policy ([`crate::search::policy`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Policy {
    /// The RLAL agent (SAC + environment model), paper Alg. 1.
    Rlal,
    /// Baseline: the same keep fraction in every layer (largest one within the budget).
    Uniform,
    /// Baseline: random search, uniformly random bounded episodes, best reward kept, no agent updates.
    Random,
    /// Baseline: one global threshold on layer-normalised filter norms, within the budget.
    L1Global,
    /// Regularised evolution (Real et al. 2019): tournaments, one-layer mutations, ageing (`evolution:`).
    Evolution,
    /// (1+λ) hill climbing: neighbours of the incumbent (`local:`).
    Local,
}

/// `start`: what the model's weights are (see [`Recipe::start`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Start {
    /// The paper's setting: the weights are a starting point trained jointly from the start.
    Scratch,
    /// A trained model: its accuracy is measured first and reported as the original model;
    /// fine-tuning defaults (see [`Recipe::start`]).
    Pretrained,
}

/// See [`Recipe::search_space`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum SearchSpace {
    All,
    Blocks,
}

/// What an epoch does besides training the weights (module documentation).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Weights only, before any episode (`search.weights-only-epochs`).
    Warmup,
    /// `rlal`: uniformly random episodes filling the replay buffer.
    Buffer,
    /// `rlal`: policy episodes and agent updates.
    Agent,
    /// The other policies: their episodes (`random`, `evolution`, `local`) or current
    /// choice (`uniform`, `l1-global`).
    Baseline,
    /// Weights only (with alignment), after the search.
    Weights,
}

impl Phase {
    /// The metrics' name of the phase.
    pub fn name(self) -> &'static str {
        match self {
            Phase::Warmup => "warmup",
            Phase::Buffer => "buffer",
            Phase::Agent | Phase::Baseline => "agent",
            Phase::Weights => "weights",
        }
    }

    /// Whether the epoch scores episodes.
    pub fn searching(self) -> bool {
        matches!(self, Phase::Buffer | Phase::Agent | Phase::Baseline)
    }
}

/// How episode rewards are evaluated.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum RewardEngine {
    /// `ort` on CPU (`pruned` where ONNX Runtime cannot be loaded), `masked` on CUDA
    /// (where a full-width forward costs less than building a narrow network per
    /// episode; same rewards, adaptive BN included).
    Auto,
    /// The physically narrower network (surgery on the frozen weights, BN folded): cheapest.
    Pruned,
    /// The full network with the removed channels masked (same figures, full-width cost).
    Masked,
    /// The physically narrower network (as `pruned`) run in ONNX Runtime (CPU EP, `threads`);
    /// falls back to `pruned` with a warning when libonnxruntime cannot be loaded.
    Ort,
}

impl RewardEngine {
    /// The engine that runs on `device` (`ort_ok`: ONNX Runtime can be loaded): `auto`
    /// becomes `masked` on CUDA, else `ort` or `pruned`; `ort` without ONNX Runtime is
    /// `pruned`; the others are themselves.
    pub fn resolve(self, device: tch::Device, ort_ok: bool) -> RewardEngine {
        match self {
            RewardEngine::Auto if device.is_cuda() => RewardEngine::Masked,
            RewardEngine::Auto | RewardEngine::Ort if ort_ok => RewardEngine::Ort,
            RewardEngine::Auto | RewardEngine::Ort => RewardEngine::Pruned,
            e => e,
        }
    }

    /// Whether this engine may use ONNX Runtime on `device` (so it is worth probing).
    pub fn wants_ort(self, device: tch::Device) -> bool {
        self == RewardEngine::Ort || (self == RewardEngine::Auto && !device.is_cuda())
    }
}

/// Filter-ranking norm.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum NormKind {
    L1,
    L2,
}

impl Policy {
    /// The recipe spelling.
    pub fn name(self) -> &'static str {
        match self {
            Policy::Rlal => "rlal",
            Policy::Uniform => "uniform",
            Policy::Random => "random",
            Policy::L1Global => "l1-global",
            Policy::Evolution => "evolution",
            Policy::Local => "local",
        }
    }

    /// Whether the policy searches (scores episodes and keeps the best) rather than
    /// following one rule's architecture (`uniform`, `l1-global`).
    pub fn searches(self) -> bool {
        !matches!(self, Policy::Uniform | Policy::L1Global)
    }
}

impl NormKind {
    pub fn p(self) -> u32 {
        match self {
            NormKind::L1 => 1,
            NormKind::L2 => 2,
        }
    }
}

/// A pruning recipe.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct Recipe {
    /// Run name: the run directory is `runs/<name>/`. Default `prune`.
    pub name: String,
    /// ONNX model (`.onnx`/`.onnx.gz`, trained or not). Required.
    pub model: Option<PathBuf>,
    /// Dataset directory (MNIST IDX, CIFAR binary or ImageFolder). Required.
    pub data: Option<PathBuf>,
    /// Fixed input size for graphs with dynamic H/W, in the model's order (CxHxW, HxWxC
    /// for a channels-last model). Default: from the graph.
    pub input_shape: Option<Vec<usize>>,
    /// Layout of the image input: `auto` (default: channels last when the input reaches
    /// the first conv through a `Transpose` [0, 3, 1, 2], as tf2onnx exports), `nchw`, `nhwc`.
    pub input_layout: InputLayout,
    /// Graph inputs other than the images, bound to constants: `NAME: [v1, v2, …]` (the
    /// input's declared shape, row-major). Default none.
    pub bind: BTreeMap<String, Vec<f64>>,
    /// The search policy: `rlal` (default), `random`, `evolution`, `local`, or the
    /// baselines without search `uniform`, `l1-global` (docs/METHOD.md).
    pub policy: Policy,
    /// `scratch` (default: the paper's joint training from the model's weights as they
    /// are) or `pretrained` (a trained model: its test accuracy is measured first and is
    /// the report's first row, "original model"). With `pretrained`, the fields the
    /// recipe leaves out default to fine-tuning values: `search.weights-only-epochs` 0,
    /// `training.lr` 0.001 (0.01 diverged to NaN in the first epoch on a trained
    /// ResNet-20 with its BN folded), `training.lr-warmup-epochs` 0; BatchNormalization
    /// inserted by `training.insert-bn` after convs lacking one starts at the data's
    /// statistics, so it computes the identity ([`crate::train::bn_init`]).
    pub start: Start,
    /// The budget, `{metric: macs|params|latency, ratio: R, batch: B}` ([`BudgetSpec`]:
    /// `batch` for latency only, default 1). Required, here or by a flag
    /// (`--macs-ratio` ...); read with [`Recipe::budget`], set by [`Recipe::set_budget`].
    pub budget: Option<BudgetSpec>,
    /// The budget's spelling before 2026-12-07 (`macs-ratio: R` ...), read into
    /// `budget` by [`Recipe::parse`] ([`budget::fold_old`]), never written nor read
    /// elsewhere ([`Old`]).
    #[serde(skip_serializing)]
    pub macs_ratio: Old<f64>,
    #[serde(skip_serializing)]
    pub params_ratio: Old<f64>,
    #[serde(skip_serializing)]
    pub latency_ratio: Old<f64>,
    #[serde(skip_serializing)]
    pub latency_batch: Old<usize>,
    /// Largest fraction of one layer's channels that may be removed. Default 0.9.
    pub max_prune_ratio: f64,
    /// Round kept widths to multiples of this when the budget allows (8 or 16 suit ONNX
    /// Runtime's blocked CPU convs); 1: the paper's floor rule. Not applied by `l1-global`. Default 1.
    pub channel_multiple: usize,
    /// Which channel groups the search prunes: `all` (default: every prunable group the
    /// analysis finds) or `blocks` (the paper's: the hidden channels of each block; for
    /// MobileNetV2 the 17 groups that contain a depthwise conv instead of 20 with the
    /// untied block outputs and the head; ResNets are the same either way).
    pub search_space: SearchSpace,
    /// The weight training during the search (`epochs`: of joint training, paper
    /// CIFAR-10: 200), also the base of fine-tuning; the `rlal train` section, see
    /// [`Training`]. The search holds out `search.reward-samples` training images.
    pub training: Training,
    /// The search schedule and reward; see [`Search`].
    pub search: Search,
    /// Fine-tuning of the pruned graph; see [`Finetune`].
    pub finetune: Finetune,
    /// Agent settings (SAC, environment model, replay); see [`AgentConfig`].
    pub agent: AgentConfig,
    /// Regularised evolution's settings (`policy: evolution`); see [`EvolutionConfig`].
    pub evolution: EvolutionConfig,
    /// Hill climbing's settings (`policy: local`); see [`LocalConfig`].
    pub local: LocalConfig,
}

/// The search schedule and reward (`search:` section of a prune recipe).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct Search {
    /// Epochs of weights-only training before any episode (paper 10; `warmup-epochs`
    /// before 2026-12). Default 2.
    pub weights_only_epochs: usize,
    /// Epochs after the weights-only ones whose episodes are random, filling the replay
    /// buffer (paper 10). Default 2.
    pub buffer_epochs: usize,
    /// Epoch at which episodes and agent updates stop (paper 90 of 200). Default 6.
    pub agent_epochs: usize,
    /// Episodes per epoch, P (paper 10). Default 10.
    pub episodes_per_epoch: usize,
    /// Training images held out for the reward (paper 5000 of 50000); weight training
    /// uses the others (`training.train-samples` of them when set). Default 500.
    pub reward_samples: usize,
    /// Batch size of the reward evaluations (inference only). Default 500.
    pub reward_batch_size: usize,
    /// Adaptive BN for rewards (EagleEye, ECCV 2020; the paper is silent): before an
    /// episode's narrow network is scored, its BatchNormalization statistics are
    /// re-estimated from this many training images (one train-mode forward, no
    /// gradients), so the reward measures the sub-network rather than the stale
    /// statistics of the full one. 0: off (rewards with the full network's statistics).
    /// Every engine (on `masked`, the training statistics are restored after
    /// scoring). Default 64.
    pub reward_bn_samples: usize,
    /// `auto` (default: `ort` on CPU, or `pruned` where ONNX Runtime cannot be loaded;
    /// `masked` on CUDA), `pruned` (physically narrower networks in libtorch), `ort`
    /// (the same networks in ONNX Runtime) or `masked` (the full network, channels
    /// masked). All give the same rewards.
    pub reward_engine: RewardEngine,
    /// `ort` engine: images per ONNX Runtime run. `training.threads` single-threaded
    /// sessions (all cores when 0) score every `threads`-th batch side by side, which
    /// keeps small convolutions more efficient than one session splitting each op.
    /// Default 32.
    pub reward_ort_batch: usize,
    /// `ort` engine: zero channels are added to every scored layer until its width is
    /// a multiple of this (1: off), so that ONNX Runtime's blocked (NCHWc) CPU
    /// convolutions apply; the added channels are zero in every parameter, producers
    /// and consumers alike, so the logits are those of the unpadded network. Default 4.
    pub reward_ort_pad: usize,
    /// Which architecture the search keeps and prunes to: `rescore` (default: the
    /// `incumbents` best, scored again on every search epoch's weights and on the
    /// final weights) or `max-reward` (the paper: the highest reward ever seen).
    /// See `rlal::search::best`.
    pub selection: Selection,
    /// Architectures kept and re-scored by `selection: rescore` (each costs one
    /// reward evaluation per search epoch). Default 3.
    pub incumbents: usize,
    /// Soft alignment L_align (false: paper's "w/o SR"). Default true.
    pub alignment: bool,
    /// β, the weight of L_align (paper 1e-4). Default 1e-4.
    pub beta: f64,
    /// Filter-ranking norm: `l1` (default) or `l2`.
    pub criterion: NormKind,
    /// Where a search (`rlal`, `random`, `evolution`, `local`) starts: `random` (every
    /// episode of the first search epoch its own) or `uniform` (the first of them is
    /// the uniform architecture, at no extra evaluation). Default `uniform` (since
    /// 2026-12-07; `random` before).
    pub start_from: StartFrom,
}

impl Default for Search {
    fn default() -> Self {
        Search {
            weights_only_epochs: 2,
            buffer_epochs: 2,
            agent_epochs: 6,
            episodes_per_epoch: 10,
            reward_samples: 500,
            reward_batch_size: 500,
            reward_bn_samples: 64,
            reward_engine: RewardEngine::Auto,
            reward_ort_batch: 32,
            reward_ort_pad: 4,
            selection: Selection::Rescore,
            incumbents: 3,
            alignment: true,
            beta: 1e-4,
            criterion: NormKind::L1,
            start_from: StartFrom::Uniform,
        }
    }
}

/// Fine-tuning of the pruned graph (`finetune:` section of a prune recipe): the
/// `training:` settings with these epochs and base learning rate.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct Finetune {
    /// Epochs (paper: as many as the base schedule; 0: none). Default 2.
    pub epochs: usize,
    /// Base learning rate (default: `training.lr`).
    pub lr: Option<f64>,
}

impl Default for Finetune {
    fn default() -> Self {
        Finetune { epochs: 2, lr: None }
    }
}

impl Default for Recipe {
    fn default() -> Self {
        Recipe {
            name: "prune".into(),
            model: None,
            data: None,
            input_shape: None,
            input_layout: InputLayout::Auto,
            bind: BTreeMap::new(),
            policy: Policy::Rlal,
            start: Start::Scratch,
            budget: None,
            macs_ratio: Old::default(),
            params_ratio: Old::default(),
            latency_ratio: Old::default(),
            latency_batch: Old::default(),
            max_prune_ratio: 0.9,
            channel_multiple: 1,
            search_space: SearchSpace::All,
            training: Training::default(),
            search: Search::default(),
            finetune: Finetune::default(),
            agent: AgentConfig::default(),
            evolution: EvolutionConfig::default(),
            local: LocalConfig::default(),
        }
    }
}

/// A check's error on `field` (its section path).
fn bad(field: &str, why: impl std::fmt::Display) -> Result<(), RecipeError> {
    Err(RecipeError::field(field, why))
}

impl Recipe {
    /// How the model is imported: `input-shape`, `input-layout`, `bind`.
    pub fn import_options(&self) -> ImportOptions {
        ImportOptions {
            input_shape: self.input_shape.clone(),
            input_layout: self.input_layout,
            bind: self.bind.clone(),
        }
    }

    /// Reads a recipe ([`crate::train::recipe::load`]); errors name the file, the
    /// field and the line.
    pub fn load(path: &Path) -> Result<Recipe, RecipeError> {
        crate::train::recipe::load(path, Recipe::parse)
    }

    /// Parses YAML text and checks each value on its own ([`Recipe::check_values`]);
    /// what flags may still give or change together (model, data, one budget, the
    /// epochs' order) is checked by [`Recipe::check`].
    pub fn parse(text: &str) -> Result<Recipe, RecipeError> {
        let mut r: Recipe = parse_yaml(text, moved::Command::Prune)?;
        let old = [r.macs_ratio.take(), r.params_ratio.take(), r.latency_ratio.take()];
        r.budget = budget::fold_old(r.budget, old, r.latency_batch.take(), text)?;
        r.training.preprocess_given = crate::train::recipe::preprocess_given(text);
        if r.start == Start::Pretrained {
            r.pretrained_defaults(text);
        }
        r.check_values().map_err(|e| e.in_text(text))?;
        Ok(r)
    }

    /// The fine-tuning defaults of `start: pretrained` for the fields `text` leaves out.
    fn pretrained_defaults(&mut self, text: &str) {
        use crate::train::recipe::yaml_has;
        if !yaml_has(text, "search", "weights-only-epochs") {
            self.search.weights_only_epochs = 0;
        }
        if !yaml_has(text, "training", "lr") {
            self.training.lr = 0.001;
        }
        if !yaml_has(text, "training", "lr-warmup-epochs") {
            self.training.lr_warmup_epochs = 0.0;
        }
    }

    /// The training settings of fine-tuning: `training:` with `finetune.epochs` and
    /// `finetune.lr`, the learning-rate warm-up at most the fine-tuning.
    pub fn finetune_training(&self) -> Training {
        let mut t = self.training.with_epochs(self.finetune.epochs);
        t.lr = self.finetune.lr.unwrap_or(self.training.lr);
        t.lr_warmup_epochs = t.lr_warmup_epochs.min(self.finetune.epochs as f64);
        t
    }

    /// Value checks that need neither the model nor the data (after CLI overrides).
    pub fn check(&self) -> Result<(), RecipeError> {
        if self.model.is_none() {
            return bad("model", "is required (or give the model on the command line)");
        }
        if self.data.is_none() {
            return bad("data", "is required (or give --data DIR)");
        }
        if self.budget.is_none() {
            return bad("budget", "is required: e.g. `budget: {metric: macs, ratio: 0.5}` (target MACs / unpruned MACs; metric `params` or `latency` for a parameter or latency budget), or --macs-ratio R / --params-ratio R / --latency-ratio R");
        }
        let t = &self.training;
        if t.milestones.iter().any(|&m| m > t.epochs) && t.schedule == ScheduleKind::Step {
            return bad(
                "training.milestones",
                format!("{:?} has an epoch after the last ({})", t.milestones, t.epochs),
            );
        }
        self.check_values()?;
        self.search.check(self.policy, t.epochs)
    }

    /// Each value on its own (a recipe's text is checked by this at load).
    fn check_values(&self) -> Result<(), RecipeError> {
        if self.name.is_empty()
            || self.name.contains(['/', '\\'])
            || self.name == "."
            || self.name == ".."
        {
            return bad("name", format!("'{}' is not a plain directory name", self.name));
        }
        if let Some(b) = self.budget {
            if !(b.ratio > 0.0 && b.ratio < 1.0) {
                return bad(
                    "budget.ratio",
                    format!(
                        "{} is impossible: the target must be in (0, 1) of the unpruned model's {}",
                        b.ratio,
                        b.metric.name()
                    ),
                );
            }
            if b.batch == 0 {
                return bad("budget.batch", "must be at least 1");
            }
        }
        if self.channel_multiple == 0 {
            return bad("channel-multiple", "must be at least 1");
        }
        if !(self.max_prune_ratio > 0.0 && self.max_prune_ratio < 1.0) {
            return bad("max-prune-ratio", format!("{} must be in (0, 1)", self.max_prune_ratio));
        }
        self.training.check()?;
        self.finetune.check()?;
        for (section, checked) in [
            ("agent", self.agent.check()),
            ("evolution", self.evolution.check()),
            ("local", self.local.check()),
        ] {
            if let Err((field, msg)) = checked {
                return bad(&format!("{section}.{field}"), msg);
            }
        }
        Ok(())
    }

    /// What epoch `t` (0-based) does besides training the weights.
    pub fn phase(&self, t: usize) -> Phase {
        let s = &self.search;
        if t < s.weights_only_epochs {
            Phase::Warmup
        } else if t >= s.agent_epochs {
            Phase::Weights
        } else if self.policy == Policy::Rlal && t >= s.weights_only_epochs + s.buffer_epochs {
            Phase::Agent
        } else if self.policy == Policy::Rlal {
            Phase::Buffer
        } else {
            Phase::Baseline
        }
    }

    /// The epochs `[first, end)` in which the agent acts and learns (the phase
    /// [`Phase::Agent`] of an `rlal` run).
    pub fn agent_span(&self) -> (usize, usize) {
        let s = &self.search;
        (s.weights_only_epochs + s.buffer_epochs, s.agent_epochs)
    }

    /// Incumbents kept by the selection rule (1 for `max-reward`).
    pub fn kept_incumbents(&self) -> usize {
        match self.search.selection {
            Selection::MaxReward => 1,
            Selection::Rescore => self.search.incumbents,
        }
    }

    /// The budget ([`Recipe::check`] makes sure the recipe gives one; before, the
    /// paper's MACs at 0.5 stand in for a missing one).
    pub fn budget(&self) -> BudgetSpec {
        self.budget.unwrap_or(BudgetSpec::new(Metric::Macs, 0.5))
    }

    /// The budget flags: `ratio` (`--macs-ratio R` ...) replaces the budget's metric
    /// and ratio (its batch kept), `batch` (`--latency-batch B`) its batch.
    pub fn set_budget(&mut self, ratio: Option<(Metric, f64)>, batch: Option<usize>) {
        if let Some((metric, ratio)) = ratio {
            let batch = self.budget.map_or(1, |b| b.batch);
            self.budget = Some(BudgetSpec { metric, ratio, batch });
        }
        if let (Some(b), Some(n)) = (&mut self.budget, batch) {
            b.batch = n;
        }
    }
}

impl Search {
    /// Value checks for `policy` and `epochs` epochs of joint training; errors name
    /// the field as `search.<field>`.
    fn check(&self, policy: Policy, epochs: usize) -> Result<(), RecipeError> {
        let (w, b, a) = (self.weights_only_epochs, self.buffer_epochs, self.agent_epochs);
        if w.saturating_add(b) > a {
            let why = format!("{a} is before the end of weights-only + buffer epochs ({w} + {b})");
            return bad("search.agent-epochs", why);
        }
        if a > epochs {
            return bad(
                "search.agent-epochs",
                format!("{a} is after the last epoch (training.epochs: {epochs})"),
            );
        }
        let searching = policy.searches();
        if a == w && searching {
            return bad(
                "search.agent-epochs",
                "leaves no epoch for episodes: the search needs agent-epochs > weights-only-epochs",
            );
        }
        if searching {
            for (f, n) in [
                ("episodes-per-epoch", self.episodes_per_epoch),
                ("reward-samples", self.reward_samples),
                ("reward-batch-size", self.reward_batch_size),
                ("reward-ort-batch", self.reward_ort_batch),
            ] {
                if n == 0 {
                    return bad(&format!("search.{f}"), "must be at least 1");
                }
            }
            if self.reward_ort_pad == 0 {
                return bad("search.reward-ort-pad", "must be at least 1 (1: no padding)");
            }
        }
        if !(self.beta >= 0.0 && self.beta.is_finite()) {
            return bad("search.beta", format!("{} must be >= 0", self.beta));
        }
        if self.incumbents == 0 {
            return bad("search.incumbents", "must be at least 1");
        }
        Ok(())
    }
}

impl Finetune {
    /// Value checks; errors name the field as `finetune.<field>`.
    fn check(&self) -> Result<(), RecipeError> {
        if self.epochs > MAX_EPOCHS {
            return bad(
                "finetune.epochs",
                format!("{} is more than {MAX_EPOCHS} epochs", self.epochs),
            );
        }
        if let Some(lr) = self.lr {
            if !(lr > 0.0 && lr.is_finite()) {
                return bad("finetune.lr", format!("{lr} must be > 0"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::recipe::place::{Loc, Place};

    #[test]
    fn parse_errors_name_field_and_line() {
        let e = Recipe::parse("model: a.onnx\ndata: d\nmacs-ratoi: 0.5\n").unwrap_err().to_string();
        assert!(e.contains("macs-ratoi") && e.contains("line 3"), "{e}");
        let r = Recipe::parse(BASE).unwrap();
        r.check().unwrap();
        assert_eq!((r.training.epochs, r.search.episodes_per_epoch, r.search.beta), (8, 10, 1e-4));
        let mut r2 = r.clone();
        r2.set_budget(Some((Metric::Macs, 1.0)), None);
        assert!(r2.check().unwrap_err().to_string().contains("'budget.ratio'"));
        let r3 = check("training:\n  epochs: 9\n").unwrap();
        assert_eq!(r3.budget(), BudgetSpec::new(Metric::Macs, 0.5));
        let e = Recipe::parse("model: a.onnx\ndata: d\nmacs-ratio: 0.5\nlatency-ratio: 0.6\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("'latency-ratio' at line 4") && e.contains("give one budget"), "{e}");
        let e = Recipe::parse("budget:\n  metric: latency\n  ratio: 0.6\n  batch: 0\n")
            .unwrap_err()
            .to_string();
        assert_eq!(e, "field 'budget.batch' at line 4 column 3: must be at least 1");
        let e = Recipe::parse(
            "model: a.onnx\ndata: d\nmacs-ratio: 0.5\nagent:\n  z-dim: 8\n  bogus: 1\n",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("agent: unknown field `bogus`") && e.contains("line 6"), "{e}");
    }

    /// Recipes before 2026-12-07 spell the budget `macs-ratio: R` (`params-ratio`,
    /// `latency-ratio`, `latency-batch`): the same recipe as with `budget:`.
    #[test]
    fn the_old_budget_fields_load_as_the_budget() {
        let old = "model: a.onnx\ndata: d\nlatency-ratio: 0.6\nlatency-batch: 8\n";
        let new = "model: a.onnx\ndata: d\nbudget: {metric: latency, ratio: 0.6, batch: 8}\n";
        let (old, new) = (Recipe::parse(old).unwrap(), Recipe::parse(new).unwrap());
        let yaml = |r: &Recipe| serde_yaml::to_string(r).unwrap();
        assert_eq!(yaml(&old), yaml(&new));
        assert!(yaml(&old).contains("budget:\n  metric: latency\n  ratio: 0.6\n  batch: 8\n"));
        assert!(!yaml(&old).contains("latency-ratio"), "{}", yaml(&old));
        // A run directory's recipe.yaml written before 2026-12 (every field, nulls too).
        let saved = "name: q\nmodel: a.onnx\ndata: d\nmacs-ratio: 0.5\nparams-ratio: null\nlatency-ratio: null\nlatency-batch: 16\nmax-prune-ratio: 0.9\n";
        let r = Recipe::parse(saved).unwrap();
        r.check().unwrap();
        assert_eq!((r.budget().metric, r.budget().ratio), (Metric::Macs, 0.5));
        assert_eq!(Recipe::parse(&yaml(&r)).unwrap().budget().metric, Metric::Macs);
        let e = Recipe::parse("name: x\nbudget: 0.5\n").unwrap_err().to_string();
        let want = "budget: invalid type: floating point `0.5`, expected a mapping {metric: macs|params|latency, ratio: R} at line 2";
        assert!(e.starts_with(want), "{e}");
        let e = Recipe::parse("budget: {metric: params, ratio: 0.5, batch: 2}\n").unwrap_err();
        assert!(
            e.to_string().contains("a params budget has none") && e.to_string().contains("line 1"),
            "{e}"
        );
    }

    /// The flags replace the recipe's budget (`--macs-ratio` over a latency
    /// budget: a MACs budget), keep its batch and set the batch (`--latency-batch`).
    #[test]
    fn budget_flags_replace_the_budget() {
        let mut r = Recipe::parse("budget: {metric: latency, ratio: 0.6, batch: 8}\n").unwrap();
        r.set_budget(Some((Metric::Macs, 0.4)), None);
        assert_eq!(r.budget(), BudgetSpec { batch: 8, ..BudgetSpec::new(Metric::Macs, 0.4) });
        r.set_budget(Some((Metric::Latency, 0.7)), Some(2));
        assert_eq!(r.budget(), BudgetSpec { batch: 2, ..BudgetSpec::new(Metric::Latency, 0.7) });
        let mut r = Recipe::parse("model: a\ndata: d\n").unwrap();
        assert!(r.check().unwrap_err().to_string().starts_with("field 'budget': is required"));
        r.set_budget(None, Some(4));
        assert!(r.check().is_err());
        r.set_budget(Some((Metric::Params, 0.5)), None);
        r.check().unwrap();
    }

    /// A bad value in a recipe file names the file, the field and its line (at
    /// load: values are checked when the text is parsed; model, data and the budget
    /// may still come from flags, so a file without them loads).
    #[test]
    fn load_names_the_file_the_field_and_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("bad.yaml");
        std::fs::write(&p, "name: x\nmacs-ratio: 1.5\n").unwrap();
        let e = Recipe::load(&p).unwrap_err();
        assert_eq!(e.field_name(), Some("budget.ratio"));
        let msg = e.to_string();
        let want =
            format!("{}: field 'budget.ratio' at line 2 column 1: 1.5 is impossible", p.display());
        assert!(msg.starts_with(&want), "{msg}");
        std::fs::write(&p, "agent:\n  gamma: 2\n").unwrap();
        let e = Recipe::load(&p).unwrap_err();
        assert_eq!(
            (e.field_name(), e.place()),
            (Some("agent.gamma"), Some(Place::At(Loc { line: 2, column: 3 })))
        );
        std::fs::write(&p, "search:\n  beta: 1\n").unwrap();
        let r = Recipe::load(&p).unwrap();
        assert!(r.check().unwrap_err().to_string().contains("'model'"));
        let e = Recipe::load(&dir.path().join("none.yaml")).unwrap_err().to_string();
        assert!(e.contains("none.yaml"), "{e}");
    }

    /// Value errors name the line of the field: block and flow style, nested
    /// sections, the budget; a value the file does not give says so.
    #[test]
    fn value_errors_name_the_line() {
        for (text, want) in [
            (
                "budget:\n  metric: params\n  ratio: 0\n",
                "field 'budget.ratio' at line 5 column 3: 0 is impossible",
            ),
            (
                "budget: {metric: macs, ratio: 1}\n",
                "field 'budget.ratio' at line 3 column 24: 1 is impossible",
            ),
            (
                "search:\n  beta: 0.1\n  episodes-per-epoch: 0\n",
                "field 'search.episodes-per-epoch' at line 5 column 3: must be at least 1",
            ),
            (
                "search: {beta: 0.1, incumbents: 0}\n",
                "field 'search.incumbents' at line 3 column 21: must be at least 1",
            ),
            (
                "training:\n  lr: -1\n",
                "field 'training.lr' at line 4 column 3: must be a positive number",
            ),
            ("training:\n  std: [0.1, 0]\n", "field 'training.mean/std/scale' at line 4 column 3:"),
            ("evolution:\n  population: 1\n", "field 'evolution.population' at line 4 column 3:"),
        ] {
            let budget = if text.starts_with("budget") { "" } else { "macs-ratio: 0.5\n" };
            let text = format!("model: a.onnx\ndata: d\n{text}{budget}");
            let checked =
                Recipe::parse(&text).and_then(|r| r.check().map_err(|e| e.in_text(&text)));
            let e = checked.unwrap_err().to_string();
            assert!(e.starts_with(want), "{text}: {e}");
        }
        // Checked after the epochs are known: the default of a field the text leaves out.
        let e = check("training:\n  epochs: 3\n").unwrap_err();
        assert!(
            e.starts_with(
                "field 'search.agent-epochs' (not in the recipe): 6 is after the last epoch"
            ),
            "{e}"
        );
    }

    const BASE: &str = "model: a.onnx\ndata: d\nbudget: {metric: macs, ratio: 0.5}\n";

    /// `extra` after [`BASE`], parsed and checked (errors of `check` placed as
    /// those of a file read without flags).
    fn check(extra: &str) -> Result<Recipe, String> {
        let text = format!("{BASE}{extra}");
        let r = Recipe::parse(&text).map_err(|e| e.to_string())?;
        r.check().map(|()| r).map_err(|e| e.in_text(&text).to_string())
    }

    #[test]
    fn section_values_name_their_section() {
        // The agent and selection fields: bad values name the field (and the line).
        let e = check("search:\n  incumbents: 0\n").unwrap_err().to_string();
        assert!(e.contains("'search.incumbents'"), "{e}");
        let e = check("agent:\n  gamma: 1.5\n").unwrap_err().to_string();
        assert!(e.contains("'agent.gamma'"), "{e}");
        let e = check("agent:\n  batch-size: 0\n").unwrap_err().to_string();
        assert!(e.contains("'agent.batch-size'"), "{e}");
        let e = check("training:\n  lr: -1\n").unwrap_err().to_string();
        assert!(e.contains("'training.lr'"), "{e}");
        let e = check("finetune:\n  lr: 0\n").unwrap_err().to_string();
        assert!(e.contains("'finetune.lr'"), "{e}");
        let e = check("search:\n  weights-only-epochs: 5\n").unwrap_err().to_string();
        assert!(e.contains("'search.agent-epochs'") && e.contains("weights-only"), "{e}");
        let e = check("training:\n  schedule: step\n  milestones: [9]\n").unwrap_err().to_string();
        assert!(e.contains("'training.milestones'"), "{e}");
        for (extra, line) in [
            ("search:\n  selection: best\n", "line 5"),
            ("search-space: hidden\n", "line 4"),
            ("agent:\n  action-map: linear\n", "line 5"),
            ("agent:\n  reward-norm: batch\n", "line 5"),
        ] {
            let e = check(extra).unwrap_err().to_string();
            assert!(e.contains(line) && e.contains("unknown variant"), "{extra}: {e}");
        }
        let e = check("search:\n  selection: best\n").unwrap_err().to_string();
        assert!(e.starts_with("search.selection: unknown variant `best`"), "{e}");
        let r = check("search-space: blocks\nagent:\n  credit: terminal\n").unwrap();
        assert_eq!(
            (r.search_space, r.agent.credit),
            (SearchSpace::Blocks, crate::agent::Credit::Terminal)
        );
    }

    #[test]
    fn policy_sections_have_defaults_and_checked_values() {
        let r = check("policy: evolution\n").unwrap();
        assert_eq!((r.policy, &r.evolution), (Policy::Evolution, &EvolutionConfig::default()));
        let e = &r.evolution;
        assert_eq!((e.population, e.tournament, e.mutations, e.step), (20, 5, 1, 2));
        let r = check("policy: local\nlocal:\n  layers: 1\n").unwrap();
        assert_eq!((r.local.layers, r.local.step), (1, 1));
        for (extra, field) in [
            ("evolution:\n  population: 1\n", "'evolution.population'"),
            ("evolution:\n  tournament: 30\n", "'evolution.tournament'"),
            ("evolution:\n  mutations: 0\n", "'evolution.mutations'"),
            ("evolution:\n  step: 0\n", "'evolution.step'"),
            ("local:\n  layers: 0\n", "'local.layers'"),
            ("local:\n  step: 0\n", "'local.step'"),
        ] {
            let e = check(extra).unwrap_err().to_string();
            assert!(e.contains(field), "{extra}: {e}");
        }
        let e = check("evolution:\n  size: 4\n").unwrap_err().to_string();
        assert!(e.starts_with("evolution: unknown field `size`") && e.contains("line 5"), "{e}");
    }

    #[test]
    fn unknown_section_fields_name_section_field_and_line() {
        for (extra, section, field, line) in [
            ("training:\n  lr: 0.1\n  learning-rate: 0.1\n", "training", "learning-rate", 6),
            ("search:\n  warmup-epochs: 2\n", "search", "warmup-epochs", 5),
            ("finetune:\n  finetune-epochs: 2\n", "finetune", "finetune-epochs", 5),
        ] {
            let e = check(extra).unwrap_err().to_string();
            let want = format!("{section}: unknown field `{field}`");
            assert!(e.starts_with(&want) && e.contains(&format!("line {line} ")), "{e}");
        }
        let e = check("training:\n  epochs: many\n").unwrap_err().to_string();
        assert!(e.starts_with("training.epochs: invalid type") && e.contains("line 5"), "{e}");
    }

    #[test]
    fn flat_fields_name_their_new_place_and_line() {
        for (extra, old, new) in [
            ("lr: 0.1\n", "lr", "training.lr"),
            ("epochs: 4\n", "epochs", "training.epochs"),
            ("warmup-epochs: 2\n", "warmup-epochs", "search.weights-only-epochs"),
            ("reward-samples: 50\n", "reward-samples", "search.reward-samples"),
            ("finetune-epochs: 1\n", "finetune-epochs", "finetune.epochs"),
            ("finetune-lr: 0.01\n", "finetune-lr", "finetune.lr"),
        ] {
            let e = check(&format!("# old\n{extra}")).unwrap_err().to_string();
            let want = format!(
                "'{old}' is now '{new}' (recipes have sections since 2026-12; see docs/RECIPES.md) at line 5 column 1"
            );
            assert_eq!(e, want);
        }
        // The first moved field of a flat recipe is named, before other errors.
        let e = Recipe::parse("model: m\nbogus: 1\nseed: 1\nlr: 0.1\n").unwrap_err().to_string();
        assert!(e.starts_with("'seed' is now 'training.seed'") && e.contains("line 3"), "{e}");
    }

    #[test]
    fn moved_table_lists_every_search_field() {
        let mut table = moved::SEARCH.to_vec();
        // Renamed (`warmup-epochs` before) and added since: no flat field of that name.
        table.extend(["weights-only-epochs", "start-from"]);
        table.sort();
        assert_eq!(moved::field_names(&Search::default()), table);
    }

    #[test]
    fn finetune_overrides_epochs_and_lr_only() {
        let r = check(
            "training:\n  epochs: 8\n  lr: 0.2\n  lr-warmup-epochs: 3\nfinetune:\n  epochs: 2\n",
        )
        .unwrap();
        let t = r.finetune_training();
        assert_eq!((t.epochs, t.lr, t.lr_warmup_epochs), (2, 0.2, 2.0));
        assert_eq!(Training { epochs: 8, lr: 0.2, lr_warmup_epochs: 3.0, ..t }, r.training);
        let r = check("finetune:\n  lr: 0.01\n").unwrap();
        assert_eq!(r.finetune_training().lr, 0.01);
    }
}
