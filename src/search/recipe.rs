//! `rlal prune` recipes (YAML). Every field but `macs-ratio` has a documented
//! default; unknown fields are errors naming the field and its line; command
//! line flags override the file. [`Recipe::check`] validates the values
//! without touching the model or the data; the budget's feasibility needs
//! the model and is checked by [`crate::search::run`] before any training.
//!
//! Epoch phases (paper appendix B, 0-based epoch indices `t` of `epochs`):
//! `t < warmup-epochs`: weights only; `warmup-epochs <= t < warmup + buffer`:
//! weights + exploratory (uniformly random) episodes that fill the replay
//! buffer; `warmup + buffer <= t < agent-epochs`: weights + policy episodes +
//! agent updates; `t >= agent-epochs`: weights only (with alignment to the best
//! policy). Then surgery and `finetune-epochs` of fine-tuning.
pub use super::best::Selection;
use crate::agent::AgentConfig;
pub use crate::agent::Overlap;
use crate::data::Workers;
use crate::train::recipe::{DeviceKind, InsertBn, Precision, Recipe as TrainRecipe, ScheduleKind};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// How the per-layer widths are chosen.
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
    /// Weights only, before any episode.
    Warmup,
    /// `rlal`: uniformly random episodes filling the replay buffer.
    Buffer,
    /// `rlal`: policy episodes and agent updates.
    Agent,
    /// Baselines: their episodes (random search) or current choice (uniform, l1-global).
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
        }
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
    /// ONNX model (`.onnx`/`.onnx.gz`, trained or not). Required.
    pub model: Option<PathBuf>,
    /// Dataset directory (MNIST IDX, CIFAR binary or ImageFolder). Required.
    pub data: Option<PathBuf>,
    /// Run name: the run directory is `runs/<name>/`. Default `prune`.
    pub name: String,
    /// Target MACs / MACs of the unpruned model, in (0, 1) (the paper's budget).
    /// Exactly one of `macs-ratio` and `params-ratio` is required.
    pub macs_ratio: Option<f64>,
    /// Target parameters / parameters of the unpruned model, in (0, 1): a parameter budget instead.
    pub params_ratio: Option<f64>,
    /// Target latency / latency of the unpruned model, in (0, 1): a latency budget instead,
    /// estimated from a per-layer ONNX Runtime latency table measured at the start of the
    /// run on this machine (BN folded, `threads`, batch `latency-batch`; see docs/METHOD.md).
    pub latency_ratio: Option<f64>,
    /// Batch size the latency table (and the reported budget latency) is measured at. Default 1.
    pub latency_batch: usize,
    /// Largest fraction of one layer's channels that may be removed. Default 0.9.
    pub max_prune_ratio: f64,
    /// Round kept widths to multiples of this when the budget allows (8 or 16 suit ONNX
    /// Runtime's blocked CPU convs); 1: the paper's floor rule. Not applied by `l1-global`. Default 1.
    pub channel_multiple: usize,
    /// `rlal` (default), `uniform`, `random`, `l1-global`.
    pub policy: Policy,
    /// Which channel groups the search prunes: `all` (default: every prunable group the
    /// analysis finds) or `blocks` (the paper's: the hidden channels of each block; for
    /// MobileNetV2 the 17 groups that contain a depthwise conv instead of 20 with the
    /// untied block outputs and the head; ResNets are the same either way).
    pub search_space: SearchSpace,
    /// Total epochs of joint training (paper CIFAR-10: 200). Default 8.
    pub epochs: usize,
    /// Epochs of weights-only training before any episode (paper 10). Default 2.
    pub warmup_epochs: usize,
    /// Epochs after warm-up whose episodes are random, filling the replay buffer (paper 10). Default 2.
    pub buffer_epochs: usize,
    /// Epoch at which episodes and agent updates stop (paper 90 of 200). Default 6.
    pub agent_epochs: usize,
    /// Episodes per epoch, P (paper 10). Default 10.
    pub episodes_per_epoch: usize,
    /// Training images held out for the reward (paper 5000 of 50000). Default 500.
    pub reward_samples: usize,
    /// Weight training uses a deterministic class-balanced subset of this many of the
    /// training images left after the reward subset (0: all). The test split is always
    /// whole. Default 0.
    pub train_samples: usize,
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
    /// `ort` engine: images per ONNX Runtime run. `threads` single-threaded sessions
    /// (all cores when 0) score every `threads`-th batch side by side, which keeps
    /// small convolutions more efficient than one session splitting each op. Default 32.
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
    /// Fine-tuning epochs of the pruned graph (paper: as many as the base schedule). Default 2.
    pub finetune_epochs: usize,
    /// Base learning rate of fine-tuning (default: `lr`).
    pub finetune_lr: Option<f64>,
    /// Agent settings (SAC, environment model, replay); see [`AgentConfig`].
    pub agent: AgentConfig,
    /// Fixed input size CxHxW for graphs with dynamic H/W. Default: from the graph.
    pub input_shape: Option<Vec<usize>>,
    /// Batch size. Default 128.
    pub batch_size: usize,
    /// Base learning rate. Default 0.1.
    pub lr: f64,
    /// Final learning rate of the cosine schedule. Default 0.
    pub min_lr: f64,
    /// `cosine` (default), `step` or `constant`.
    pub schedule: ScheduleKind,
    /// Epochs at which `step` multiplies the rate by `gamma`. Default [].
    pub milestones: Vec<usize>,
    /// Step decay factor. Default 0.1.
    pub gamma: f64,
    /// Linear learning-rate warm-up in epochs. Default 0.
    pub lr_warmup_epochs: f64,
    /// SGD momentum. Default 0.9.
    pub momentum: f64,
    /// Nesterov momentum. Default false.
    pub nesterov: bool,
    /// L2 weight decay. Default 1e-4 (paper).
    pub weight_decay: f64,
    /// Cross-entropy label smoothing. Default 0.
    pub label_smoothing: f64,
    /// Seed of everything (shuffling, holdout, agent). Default 0.
    pub seed: u64,
    /// libtorch intra-op threads (also ONNX Runtime's); 0: default. Default 0.
    pub threads: usize,
    /// Data loader worker threads: `auto` (the cores left after `threads`, at least 1)
    /// or a count. Default auto.
    pub workers: Workers,
    /// Pixel scale before normalisation. Default 1/255.
    pub scale: f32,
    /// Per-channel mean. Default [0].
    pub mean: Vec<f32>,
    /// Per-channel std. Default [1].
    pub std: Vec<f32>,
    /// Pad-and-random-crop padding (0: off). Default 0.
    pub crop_pad: usize,
    /// Image folders only: every image is scaled (aspect kept) so that the model's
    /// input H x W is this fraction of it, then center-cropped to H x W (0.875 at 224:
    /// torchvision's Resize(256) + CenterCrop(224); 1.0: the whole shorter side).
    /// MNIST/CIFAR files have a fixed size and ignore it. Default 0.875.
    pub crop_fraction: f32,
    /// Image folders, training only: each image from a random crop of area fraction in
    /// [lo, hi] of the source and aspect 3/4–4/3, resized to the input (torchvision's
    /// RandomResizedCrop; ImageNet: [0.08, 1.0]). Unset: the `crop-fraction` centre
    /// crop for training too. Ignored by MNIST/CIFAR files. Default unset.
    pub random_resized_crop: Option<[f32; 2]>,
    /// Random horizontal flip. Default false.
    pub hflip: bool,
    /// `auto` (default), `on`, `off`: identity BN after convs lacking one.
    pub insert_bn: InsertBn,
    /// Keep BN nodes in `pruned.onnx` instead of folding them. Default false.
    pub keep_bn: bool,
    /// Evaluate on the test split every N epochs (0: only after the last). Default 1.
    pub eval_every: usize,
    /// `auto` (default), `cpu`, `cuda`.
    pub device: DeviceKind,
    /// Weight-training arithmetic: `fp32` (default), `bf16`, `fp16` (as in `rlal train`;
    /// `reward-engine: pruned|ort` score rewards in fp32, `masked` in this arithmetic).
    pub precision: Precision,
    /// Channels-last (NHWC) layout in weight training. Default false.
    pub channels_last: bool,
}

impl Default for Recipe {
    fn default() -> Self {
        let t = TrainRecipe::default();
        Recipe {
            model: None,
            data: None,
            name: "prune".into(),
            macs_ratio: None,
            params_ratio: None,
            latency_ratio: None,
            latency_batch: 1,
            max_prune_ratio: 0.9,
            channel_multiple: 1,
            policy: Policy::Rlal,
            search_space: SearchSpace::All,
            epochs: 8,
            warmup_epochs: 2,
            buffer_epochs: 2,
            agent_epochs: 6,
            episodes_per_epoch: 10,
            selection: Selection::Rescore,
            incumbents: 3,
            reward_samples: 500,
            train_samples: 0,
            reward_batch_size: 500,
            reward_bn_samples: 64,
            reward_engine: RewardEngine::Auto,
            reward_ort_batch: 32,
            reward_ort_pad: 4,
            alignment: true,
            beta: 1e-4,
            criterion: NormKind::L1,
            finetune_epochs: 2,
            finetune_lr: None,
            agent: AgentConfig::default(),
            input_shape: None,
            batch_size: t.batch_size,
            lr: t.lr,
            min_lr: t.min_lr,
            schedule: t.schedule,
            milestones: t.milestones,
            gamma: t.gamma,
            lr_warmup_epochs: 0.0,
            momentum: t.momentum,
            nesterov: t.nesterov,
            weight_decay: 1e-4,
            label_smoothing: t.label_smoothing,
            seed: 0,
            threads: 0,
            workers: t.workers,
            scale: t.scale,
            mean: t.mean,
            std: t.std,
            crop_pad: 0,
            crop_fraction: 0.875,
            random_resized_crop: t.random_resized_crop,
            hflip: false,
            insert_bn: InsertBn::Auto,
            keep_bn: false,
            eval_every: 1,
            device: DeviceKind::Auto,
            precision: Precision::Fp32,
            channels_last: false,
        }
    }
}

impl Recipe {
    /// Reads and checks a recipe; errors name the file, the field and the line.
    pub fn load(path: &Path) -> Result<Recipe, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Recipe::parse(&text).map_err(|m| format!("{}: {m}", path.display()))
    }

    /// Parses YAML text (no value checks: flags may still override; call [`Recipe::check`]).
    pub fn parse(text: &str) -> Result<Recipe, String> {
        if text.trim().is_empty() {
            return Ok(Recipe::default());
        }
        serde_yaml::from_str(text).map_err(|e| e.to_string())
    }

    /// The training part as an `rlal train` recipe (shares its value checks and loaders).
    pub fn train_recipe(&self, epochs: usize) -> TrainRecipe {
        TrainRecipe {
            model: self.model.clone(),
            data: self.data.clone(),
            output: None,
            input_shape: self.input_shape.clone(),
            epochs: epochs.max(1),
            batch_size: self.batch_size,
            lr: self.lr,
            min_lr: self.min_lr,
            schedule: self.schedule,
            milestones: self.milestones.clone(),
            gamma: self.gamma,
            lr_warmup_epochs: self.lr_warmup_epochs,
            momentum: self.momentum,
            nesterov: self.nesterov,
            weight_decay: self.weight_decay,
            label_smoothing: self.label_smoothing,
            seed: self.seed,
            threads: self.threads,
            workers: self.workers,
            scale: self.scale,
            mean: self.mean.clone(),
            std: self.std.clone(),
            crop_pad: self.crop_pad,
            crop_fraction: self.crop_fraction,
            random_resized_crop: self.random_resized_crop,
            hflip: self.hflip,
            insert_bn: self.insert_bn,
            keep_bn: self.keep_bn,
            eval_every: self.eval_every,
            holdout: self.reward_samples,
            train_samples: self.train_samples,
            checkpoint_dir: None,
            metrics: None,
            device: self.device,
            precision: self.precision,
            channels_last: self.channels_last,
        }
    }

    /// Value checks that need neither the model nor the data.
    pub fn check(&self) -> Result<(), String> {
        let bad = |f: &str, why: String| Err(format!("field '{f}': {why}"));
        if self.model.is_none() {
            return bad("model", "is required (or give the model on the command line)".into());
        }
        if self.data.is_none() {
            return bad("data", "is required (or give --data DIR)".into());
        }
        if self.name.is_empty()
            || self.name.contains(['/', '\\'])
            || self.name == "."
            || self.name == ".."
        {
            return bad("name", format!("'{}' is not a plain directory name", self.name));
        }
        let given: Vec<(&str, f64)> = [
            ("macs-ratio", self.macs_ratio),
            ("params-ratio", self.params_ratio),
            ("latency-ratio", self.latency_ratio),
        ]
        .into_iter()
        .filter_map(|(f, r)| r.map(|r| (f, r)))
        .collect();
        let (field, ratio) = match given[..] {
            [] => return bad("macs-ratio", "is required (target MACs / unpruned MACs, e.g. 0.5; or params-ratio / latency-ratio for a parameter / latency budget)".into()),
            [one] => one,
            [_, (second, _), ..] => return bad(second, "give exactly one of macs-ratio, params-ratio and latency-ratio".into()),
        };
        if self.latency_batch == 0 {
            return bad("latency-batch", "must be at least 1".into());
        }
        if !(ratio > 0.0 && ratio < 1.0) {
            return bad(field, format!("{ratio} is impossible: the target must be in (0, 1) of the unpruned model's figure"));
        }
        if self.channel_multiple == 0 {
            return bad("channel-multiple", "must be at least 1".into());
        }
        if !(self.max_prune_ratio > 0.0 && self.max_prune_ratio < 1.0) {
            return bad("max-prune-ratio", format!("{} must be in (0, 1)", self.max_prune_ratio));
        }
        for (field, n) in [("epochs", self.epochs), ("finetune-epochs", self.finetune_epochs)] {
            if n > crate::train::recipe::MAX_EPOCHS {
                return bad(
                    field,
                    format!("{n} is more than {} epochs", crate::train::recipe::MAX_EPOCHS),
                );
            }
        }
        if self.warmup_epochs.saturating_add(self.buffer_epochs) > self.agent_epochs {
            return bad(
                "agent-epochs",
                format!(
                    "{} is before the end of warm-up + buffer ({} + {})",
                    self.agent_epochs, self.warmup_epochs, self.buffer_epochs
                ),
            );
        }
        if self.agent_epochs > self.epochs {
            return bad(
                "agent-epochs",
                format!("{} is after the last epoch ({})", self.agent_epochs, self.epochs),
            );
        }
        if self.agent_epochs == self.warmup_epochs
            && self.policy != Policy::Uniform
            && self.policy != Policy::L1Global
        {
            return bad(
                "agent-epochs",
                "leaves no epoch for episodes: the search needs agent-epochs > warmup-epochs"
                    .into(),
            );
        }
        if self.policy != Policy::Uniform && self.policy != Policy::L1Global {
            if self.episodes_per_epoch == 0 {
                return bad("episodes-per-epoch", "must be at least 1".into());
            }
            if self.reward_samples == 0 {
                return bad("reward-samples", "must be at least 1".into());
            }
            if self.reward_batch_size == 0 {
                return bad("reward-batch-size", "must be at least 1".into());
            }
            if self.reward_ort_batch == 0 {
                return bad("reward-ort-batch", "must be at least 1".into());
            }
            if self.reward_ort_pad == 0 {
                return bad("reward-ort-pad", "must be at least 1 (1: no padding)".into());
            }
        }
        if let Some(lr) = self.finetune_lr {
            if !(lr > 0.0 && lr.is_finite()) {
                return bad("finetune-lr", format!("{lr} must be > 0"));
            }
        }
        if !(self.beta >= 0.0 && self.beta.is_finite()) {
            return bad("beta", format!("{} must be >= 0", self.beta));
        }
        if self.incumbents == 0 {
            return bad("incumbents", "must be at least 1".into());
        }
        if let Err((field, msg)) = self.agent.check() {
            return bad(&format!("agent.{field}"), msg);
        }
        if self.milestones.iter().any(|&m| m > self.epochs) && self.schedule == ScheduleKind::Step {
            return bad(
                "milestones",
                format!("{:?} has an epoch after the last ({})", self.milestones, self.epochs),
            );
        }
        // The training fields share `rlal train`'s checks (names are the same but `lr-warmup-epochs`).
        self.train_recipe(self.epochs).check()
    }

    /// What epoch `t` (0-based) does besides training the weights.
    pub fn phase(&self, t: usize) -> Phase {
        if t < self.warmup_epochs {
            Phase::Warmup
        } else if t >= self.agent_epochs {
            Phase::Weights
        } else if self.policy == Policy::Rlal && t >= self.warmup_epochs + self.buffer_epochs {
            Phase::Agent
        } else if self.policy == Policy::Rlal {
            Phase::Buffer
        } else {
            Phase::Baseline
        }
    }

    /// Incumbents kept by the selection rule (1 for `max-reward`).
    pub fn kept_incumbents(&self) -> usize {
        match self.selection {
            Selection::MaxReward => 1,
            Selection::Rescore => self.incumbents,
        }
    }

    /// Target ratio of the budget's metric (after [`Recipe::check`]).
    pub fn ratio(&self) -> f64 {
        self.macs_ratio.or(self.params_ratio).or(self.latency_ratio).unwrap_or(0.5)
    }

    /// What the budget limits.
    pub fn metric(&self) -> crate::agent::Metric {
        match (self.macs_ratio, self.params_ratio, self.latency_ratio) {
            (None, Some(_), _) => crate::agent::Metric::Params,
            (None, None, Some(_)) => crate::agent::Metric::Latency,
            _ => crate::agent::Metric::Macs,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn parse_errors_name_field_and_line() {
        let e = Recipe::parse("model: a.onnx\ndata: d\nmacs-ratoi: 0.5\n").unwrap_err();
        assert!(e.contains("macs-ratoi") && e.contains("line 3"), "{e}");
        let r = Recipe::parse("model: a.onnx\ndata: d\nmacs-ratio: 0.5\n").unwrap();
        r.check().unwrap();
        assert_eq!((r.epochs, r.episodes_per_epoch, r.beta), (8, 10, 1e-4));
        let mut r2 = r.clone();
        r2.macs_ratio = Some(1.0);
        assert!(r2.check().unwrap_err().contains("macs-ratio"));
        let r3 = Recipe::parse("model: a.onnx\ndata: d\nlatency-ratio: 0.6\nlatency-batch: 8\n")
            .unwrap();
        r3.check().unwrap();
        assert_eq!(
            (r3.metric(), r3.ratio(), r3.latency_batch),
            (crate::agent::Metric::Latency, 0.6, 8)
        );
        let e = Recipe::parse("model: a.onnx\ndata: d\nmacs-ratio: 0.5\nlatency-ratio: 0.6\n")
            .unwrap()
            .check()
            .unwrap_err();
        assert!(e.contains("latency-ratio") && e.contains("exactly one"), "{e}");
        let e = Recipe::parse("model: a.onnx\ndata: d\nlatency-ratio: 0.6\nlatency-batch: 0\n")
            .unwrap()
            .check()
            .unwrap_err();
        assert!(e.contains("latency-batch"), "{e}");
        let e = Recipe::parse(
            "model: a.onnx\ndata: d\nmacs-ratio: 0.5\nagent:\n  z-dim: 8\n  bogus: 1\n",
        )
        .unwrap_err();
        assert!(e.contains("bogus"), "{e}");
        // The agent and selection fields: bad values name the field (and the line).
        let base = "model: a.onnx\ndata: d\nmacs-ratio: 0.5\n";
        let check = |extra: &str| Recipe::parse(&format!("{base}{extra}")).and_then(|r| r.check());
        let e = check("incumbents: 0\n").unwrap_err();
        assert!(e.contains("'incumbents'"), "{e}");
        let e = check("agent:\n  gamma: 1.5\n").unwrap_err();
        assert!(e.contains("'agent.gamma'"), "{e}");
        let e = check("agent:\n  batch-size: 0\n").unwrap_err();
        assert!(e.contains("'agent.batch-size'"), "{e}");
        for (extra, field) in [
            ("selection: best\n", "line 4"),
            ("search-space: hidden\n", "line 4"),
            ("agent:\n  action-map: linear\n", "line 5"),
            ("agent:\n  reward-norm: batch\n", "line 5"),
        ] {
            let e = check(extra).unwrap_err();
            assert!(e.contains(field) && e.contains("unknown variant"), "{extra}: {e}");
        }
        let r = Recipe::parse(&format!("{base}search-space: blocks\nagent:\n  credit: terminal\n"))
            .unwrap();
        r.check().unwrap();
        assert_eq!(
            (r.search_space, r.agent.credit),
            (SearchSpace::Blocks, crate::agent::Credit::Terminal)
        );
    }
}
