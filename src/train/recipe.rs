//! Training recipes (YAML). Every field is optional and documented with its
//! default; unknown fields are errors (naming the field and line). Paths are
//! relative to the working directory. Example (`recipes/train_resnet20_mnist.yaml`):
//!
//! ```yaml
//! model: graphs/resnet20_mnist.onnx
//! data: data/mnist5k
//! epochs: 8
//! batch-size: 64
//! lr: 0.1
//! schedule: cosine
//! ```
use super::optim::SgdConfig;
use super::schedule::Decay;
use super::trainer::OptimConfig;
use super::TrainError;
use crate::data::Workers;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// `insert-bn`: add identity BatchNormalization after convs that lack one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum InsertBn {
    /// On when some conv has no BatchNormalization after it.
    Auto,
    On,
    Off,
}

/// Learning-rate decay after warm-up.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum ScheduleKind {
    Cosine,
    Step,
    Constant,
}

/// Compute device.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum DeviceKind {
    /// CUDA when available, else CPU.
    Auto,
    Cpu,
    Cuda,
}

impl DeviceKind {
    pub fn device(self) -> Result<tch::Device, TrainError> {
        match self {
            DeviceKind::Cpu => Ok(tch::Device::Cpu),
            DeviceKind::Auto => {
                let _ = super::cuda::load_backend();
                Ok(tch::Device::cuda_if_available())
            }
            DeviceKind::Cuda => match super::cuda::load_backend() {
                Ok(_) if tch::Cuda::is_available() => Ok(tch::Device::Cuda(0)),
                Ok(lib) => Err(TrainError::Graph(format!("device: cuda was requested but no CUDA device is visible (libtorch's CUDA backend {lib} is loaded)"))),
                Err(why) => Err(TrainError::Graph(format!("device: cuda was requested but libtorch's CUDA backend could not be loaded ({why}); install the CUDA build of the torch wheel with its nvidia-* dependencies"))),
            },
        }
    }
}

/// Arithmetic of convolutions and matrix products in training (`precision`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Precision {
    /// fp32 everywhere.
    #[default]
    Fp32,
    /// Mixed precision (autocast's policy): conv/Gemm/MatMul in bfloat16, fp32 weights and everything else fp32.
    Bf16,
    /// Mixed precision in float16, with dynamic loss scaling against gradient underflow.
    Fp16,
}

impl Precision {
    /// The compute kind of the mixed-precision ops (`None` for fp32).
    pub fn low_kind(self) -> Option<tch::Kind> {
        match self {
            Precision::Fp32 => None,
            Precision::Bf16 => Some(tch::Kind::BFloat16),
            Precision::Fp16 => Some(tch::Kind::Half),
        }
    }
}

/// Fields renamed since earlier releases: (old, new, what the new one means).
const RENAMED: [(&str, &str, &str); 1] = [(
    "warmup-epochs",
    "lr-warmup-epochs",
    "the learning-rate warm-up, named as in prune recipes, where `warmup-epochs` is the search's weights-only warm-up",
)];

/// A parse error, with the new name of a renamed field added.
fn renamed(msg: String) -> String {
    for (old, new, what) in RENAMED {
        if msg.contains(&format!("unknown field `{old}`")) {
            return format!("{msg}; `{old}` was renamed to `{new}` ({what})");
        }
    }
    msg
}

/// A training recipe.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct Recipe {
    /// ONNX model to train (`.onnx` or `.onnx.gz`). Required (here or on the command line).
    pub model: Option<PathBuf>,
    /// Dataset directory (MNIST IDX, CIFAR binary or ImageFolder). Required.
    pub data: Option<PathBuf>,
    /// Where the trained ONNX is written. Default: `<model stem>_trained.onnx` next to the checkpoint dir or cwd.
    pub output: Option<PathBuf>,
    /// Fixed input size CxHxW for graphs with dynamic H/W. Default: from the graph.
    pub input_shape: Option<Vec<usize>>,
    /// Epochs. Default 10.
    pub epochs: usize,
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
    /// Linear learning-rate warm-up length in epochs (fractions allowed), as in prune
    /// recipes (where `warmup-epochs` is the search's weights-only warm-up). Default 0.
    pub lr_warmup_epochs: f64,
    /// SGD momentum. Default 0.9.
    pub momentum: f64,
    /// Nesterov momentum. Default false.
    pub nesterov: bool,
    /// L2 weight decay. Default 5e-4.
    pub weight_decay: f64,
    /// Cross-entropy label smoothing. Default 0.
    pub label_smoothing: f64,
    /// Seed of shuffling and augmentation. Default 0.
    pub seed: u64,
    /// libtorch intra-op threads; 0: libtorch's default. Default 0.
    pub threads: usize,
    /// Data loader worker threads: `auto` (the cores left after `threads`, at least 1)
    /// or a count. Default auto.
    pub workers: Workers,
    /// Pixel scale before normalisation. Default 1/255.
    pub scale: f32,
    /// Per-channel mean (one value or C values). Default [0].
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
    /// `auto` (default), `on`, `off`.
    pub insert_bn: InsertBn,
    /// Keep BatchNormalization nodes in the exported model instead of folding them. Default false.
    pub keep_bn: bool,
    /// Evaluate on the test split every N epochs (0: only at the end). Default 1.
    pub eval_every: usize,
    /// Training images held out (class-balanced, never trained on; the reward subset). Default 0.
    pub holdout: usize,
    /// Train on a deterministic class-balanced subset of this many of the remaining
    /// training images (0: all; for fast searches). The test split is always whole. Default 0.
    pub train_samples: usize,
    /// Checkpoint directory (a checkpoint per epoch); none by default.
    pub checkpoint_dir: Option<PathBuf>,
    /// Metrics JSONL file; none by default.
    pub metrics: Option<PathBuf>,
    /// `auto` (default), `cpu`, `cuda`.
    pub device: DeviceKind,
    /// Training arithmetic of conv/Gemm/MatMul: `fp32` (default), `bf16`, `fp16` (mixed
    /// precision with fp32 master weights, autocast's policy; fp16 adds dynamic loss
    /// scaling). Meant for CUDA; runs on CPU too (bf16 is slow without AVX-512 BF16).
    pub precision: Precision,
    /// Channels-last (NHWC) layout of activations and conv weights. Default false.
    pub channels_last: bool,
}

impl Default for Recipe {
    fn default() -> Self {
        Recipe {
            model: None,
            data: None,
            output: None,
            input_shape: None,
            epochs: 10,
            batch_size: 128,
            lr: 0.1,
            min_lr: 0.0,
            schedule: ScheduleKind::Cosine,
            milestones: Vec::new(),
            gamma: 0.1,
            lr_warmup_epochs: 0.0,
            momentum: 0.9,
            nesterov: false,
            weight_decay: 5e-4,
            label_smoothing: 0.0,
            seed: 0,
            threads: 0,
            workers: Workers::Auto,
            scale: 1.0 / 255.0,
            mean: vec![0.0],
            std: vec![1.0],
            crop_pad: 0,
            crop_fraction: 0.875,
            random_resized_crop: None,
            hflip: false,
            insert_bn: InsertBn::Auto,
            keep_bn: false,
            eval_every: 1,
            holdout: 0,
            train_samples: 0,
            checkpoint_dir: None,
            metrics: None,
            device: DeviceKind::Auto,
            precision: Precision::Fp32,
            channels_last: false,
        }
    }
}

/// Most epochs a recipe may ask for (step counts stay far from overflowing).
pub const MAX_EPOCHS: usize = 1_000_000;

impl Recipe {
    /// Reads a recipe; errors name the file, the field and the line.
    pub fn load(path: &Path) -> Result<Recipe, TrainError> {
        let text = std::fs::read_to_string(path).map_err(|e| TrainError::File {
            path: path.display().to_string(),
            msg: e.to_string(),
        })?;
        Recipe::parse(&text)
            .map_err(|msg| TrainError::File { path: path.display().to_string(), msg })
    }
    /// Parses YAML text and checks the values.
    pub fn parse(text: &str) -> Result<Recipe, String> {
        let r: Recipe = if text.trim().is_empty() {
            Recipe::default()
        } else {
            serde_yaml::from_str(text).map_err(|e| renamed(e.to_string()))?
        };
        r.check()?;
        Ok(r)
    }
    /// Value checks (after CLI overrides too).
    pub fn check(&self) -> Result<(), String> {
        let bad = |f: &str, why: &str| Err(format!("field '{f}': {why}"));
        if self.epochs == 0 {
            return bad("epochs", "must be at least 1");
        }
        if self.epochs > MAX_EPOCHS {
            return bad("epochs", &format!("must be at most {MAX_EPOCHS}"));
        }
        if self.batch_size == 0 {
            return bad("batch-size", "must be at least 1");
        }
        if !(self.crop_fraction > 0.0 && self.crop_fraction <= 1.0) {
            return bad("crop-fraction", "must be in (0, 1]");
        }
        if let Some([lo, hi]) = self.random_resized_crop {
            if !(lo > 0.0 && lo <= hi && hi <= 1.0) {
                return bad("random-resized-crop", "must be [lo, hi] with 0 < lo <= hi <= 1");
            }
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return bad("lr", "must be a positive number");
        }
        if !(0.0..1.0).contains(&self.momentum) {
            return bad("momentum", "must be in [0, 1)");
        }
        if !(0.0..1.0).contains(&self.label_smoothing) {
            return bad("label-smoothing", "must be in [0, 1)");
        }
        if self.weight_decay < 0.0 || !self.weight_decay.is_finite() {
            return bad("weight-decay", "must be >= 0");
        }
        if self.lr_warmup_epochs < 0.0 || self.lr_warmup_epochs > self.epochs as f64 {
            return bad("lr-warmup-epochs", "must be between 0 and epochs");
        }
        if self.nesterov && self.momentum == 0.0 {
            return bad("nesterov", "needs a non-zero momentum");
        }
        crate::data::Normalize {
            scale: self.scale,
            mean: self.mean.clone(),
            std: self.std.clone(),
        }
        .validate(self.mean.len().max(self.std.len()))
        .or_else(|e| bad("mean/std/scale", &e))?;
        Ok(())
    }
    /// The decay of the schedule.
    /// The optimisation settings of [`crate::train::trainer::Trainer`].
    pub fn optim(&self) -> OptimConfig {
        OptimConfig {
            lr: self.lr,
            min_lr: self.min_lr,
            warmup_epochs: self.lr_warmup_epochs,
            decay: self.decay(),
            sgd: SgdConfig {
                momentum: self.momentum,
                nesterov: self.nesterov,
                weight_decay: self.weight_decay,
            },
            label_smoothing: self.label_smoothing,
        }
    }

    pub fn decay(&self) -> Decay {
        match self.schedule {
            ScheduleKind::Cosine => Decay::Cosine,
            ScheduleKind::Constant => Decay::Constant,
            ScheduleKind::Step => {
                Decay::Step { milestones: self.milestones.clone(), gamma: self.gamma }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn defaults_and_errors() {
        let r = Recipe::parse("epochs: 3\nbatch-size: 32\n").unwrap();
        assert_eq!((r.epochs, r.batch_size, r.lr), (3, 32, 0.1));
        let e = Recipe::parse("epochs: 3\nlearning-rate: 0.1\n").unwrap_err();
        assert!(e.contains("learning-rate") && e.contains("line 2"), "{e}");
        let e = Recipe::parse("epochs: three\n").unwrap_err();
        assert!(e.contains("epochs") && e.contains("line 1"), "{e}");
        let e = Recipe::parse("momentum: 1.5\n").unwrap_err();
        assert!(e.contains("'momentum'"), "{e}");
    }
}
