//! Training recipes (YAML). Every field is optional and documented with its
//! default; unknown fields are errors naming the field with its section path and
//! the line; fields of the flat recipes before 2026-12 are errors naming their new
//! place ([`moved`]). Paths are relative to the working directory. The
//! `training:` section ([`Training`]) is the same in `rlal prune` recipes (see
//! docs/RECIPES.md). Example (`recipes/train_resnet20_mnist.yaml`):
//!
//! ```yaml
//! model: graphs/resnet20_mnist.onnx
//! data: data/mnist5k
//! training:
//!   epochs: 8
//!   batch-size: 64
//!   lr: 0.1
//!   schedule: cosine
//! ```
use super::optim::SgdConfig;
use super::schedule::Decay;
use super::trainer::OptimConfig;
use super::TrainError;
use crate::analysis::ImportOptions;
use crate::data::Workers;
use crate::ir::InputLayout;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub mod moved;
pub mod place;

use place::Place;

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

/// The training settings (`training:` section), shared by `rlal train` and
/// `rlal prune` (which trains the weights jointly with the search, then fine-tunes):
/// one struct and one set of defaults for both commands.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct Training {
    /// Epochs (`rlal prune`: of joint training, paper CIFAR-10: 200). Default 8.
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
    /// Linear learning-rate warm-up length in epochs (fractions allowed). Default 0.
    pub lr_warmup_epochs: f64,
    /// SGD momentum. Default 0.9.
    pub momentum: f64,
    /// Nesterov momentum. Default false.
    pub nesterov: bool,
    /// L2 weight decay. Default 1e-4 (the paper's, and He et al.'s CIFAR ResNets).
    pub weight_decay: f64,
    /// Cross-entropy label smoothing. Default 0.
    pub label_smoothing: f64,
    /// Seed of everything (shuffling, augmentation; `rlal prune`: holdout and agent too). Default 0.
    pub seed: u64,
    /// libtorch intra-op threads (`rlal prune`: ONNX Runtime's too); 0: libtorch's default. Default 0.
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
    /// `auto` (default), `on`, `off`: identity BN after convs lacking one.
    pub insert_bn: InsertBn,
    /// Keep BatchNormalization nodes in the exported model (`rlal prune`: `pruned.onnx`)
    /// instead of folding them. Default false.
    pub keep_bn: bool,
    /// Evaluate on the test split every N epochs (0: only after the last). Default 1.
    pub eval_every: usize,
    /// Train on a deterministic class-balanced subset of this many of the training
    /// images left after the held-out ones (0: all; for fast searches). The test split
    /// is always whole. Default 0.
    pub train_samples: usize,
    /// `auto` (default), `cpu`, `cuda`.
    pub device: DeviceKind,
    /// Training arithmetic of conv/Gemm/MatMul: `fp32` (default), `bf16`, `fp16` (mixed
    /// precision with fp32 master weights, autocast's policy; fp16 adds dynamic loss
    /// scaling). Meant for CUDA; runs on CPU too (bf16 is slow without AVX-512 BF16).
    /// `rlal prune`: `search.reward-engine: pruned|ort` score rewards in fp32, `masked`
    /// in this arithmetic.
    pub precision: Precision,
    /// Channels-last (NHWC) layout of activations and conv weights. Default false.
    pub channels_last: bool,
    /// Whether the recipe set any of `scale`, `mean`, `std`, `crop-fraction` (else a
    /// model's recorded preprocessing, `data::Preprocess`, is adopted). Not a field.
    #[serde(skip)]
    pub preprocess_given: bool,
}

impl Default for Training {
    fn default() -> Self {
        Training {
            epochs: 8,
            batch_size: 128,
            lr: 0.1,
            min_lr: 0.0,
            schedule: ScheduleKind::Cosine,
            milestones: Vec::new(),
            gamma: 0.1,
            lr_warmup_epochs: 0.0,
            momentum: 0.9,
            nesterov: false,
            weight_decay: 1e-4,
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
            train_samples: 0,
            device: DeviceKind::Auto,
            precision: Precision::Fp32,
            channels_last: false,
            preprocess_given: false,
        }
    }
}

/// The recipe keys under `training:` that describe the input preprocessing.
const PREPROCESS_KEYS: [&str; 4] = ["scale", "mean", "std", "crop-fraction"];

/// Whether recipe text sets `section.key` (`section` "": a top-level key).
pub fn yaml_has(text: &str, section: &str, key: &str) -> bool {
    let v: serde_yaml::Value = serde_yaml::from_str(text).unwrap_or_default();
    let sec = if section.is_empty() { Some(&v) } else { v.get(section) };
    sec.and_then(|t| t.get(key)).is_some()
}

/// Whether recipe text sets any preprocessing key under `training:`.
pub fn preprocess_given(text: &str) -> bool {
    PREPROCESS_KEYS.iter().any(|k| yaml_has(text, "training", k))
}

/// A training recipe: the model, the data, the outputs and the `training:` section.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct Recipe {
    /// ONNX model to train (`.onnx` or `.onnx.gz`). Required (here or on the command line).
    pub model: Option<PathBuf>,
    /// Dataset directory (MNIST IDX, CIFAR binary or ImageFolder). Required.
    pub data: Option<PathBuf>,
    /// Where the trained ONNX is written. Default: `<model stem>_trained.onnx` in the working directory.
    pub output: Option<PathBuf>,
    /// Fixed input size for graphs with dynamic H/W, in the model's order (CxHxW, HxWxC
    /// for a channels-last model). Default: from the graph.
    pub input_shape: Option<Vec<usize>>,
    /// Layout of the image input: `auto` (default: channels last when the input reaches
    /// the first conv through a `Transpose` [0, 3, 1, 2], as tf2onnx exports), `nchw`, `nhwc`.
    pub input_layout: InputLayout,
    /// Graph inputs other than the images, bound to constants: `NAME: [v1, v2, …]` (the
    /// input's declared shape, row-major). Default none.
    pub bind: BTreeMap<String, Vec<f64>>,
    /// Training images held out (class-balanced, never trained on). Default 0.
    pub holdout: usize,
    /// Checkpoint directory (a checkpoint per epoch); none by default.
    pub checkpoint_dir: Option<PathBuf>,
    /// Metrics JSONL file; none by default.
    pub metrics: Option<PathBuf>,
    /// The training settings; see [`Training`].
    pub training: Training,
}

/// Most epochs a recipe may ask for (step counts stay far from overflowing).
pub const MAX_EPOCHS: usize = 1_000_000;

/// Parses a recipe's YAML text into `T` (the empty text: `T::default()`): an old
/// flat field is an error naming its new place ([`moved`]), other errors are
/// serde_yaml's, with the field's section path and line.
pub fn parse_yaml<T: serde::de::DeserializeOwned + Default>(
    text: &str,
    cmd: moved::Command,
) -> Result<T, RecipeError> {
    if text.trim().is_empty() {
        return Ok(T::default());
    }
    let syntax = |msg: String| RecipeError::Syntax { path: None, msg };
    moved::check(text, cmd).map_err(|e| syntax(e.to_string()))?;
    serde_yaml::from_str(text).map_err(|e| syntax(e.to_string()))
}

/// Why a recipe (of `rlal train` or of `rlal prune`) cannot be used: every variant
/// names the file once it is known ([`RecipeError::in_file`]); a bad value names its
/// field by section path (`training.lr`) and where it was given ([`Place`]: the
/// line, a flag or the default). Bad input: the CLI exits with code 2.
#[derive(Debug, thiserror::Error)]
pub enum RecipeError {
    /// The file cannot be read.
    #[error("{}: {msg}", path.display())]
    Read { path: PathBuf, msg: String },
    /// The YAML does not parse (serde_yaml's message names the field and the line)
    /// or gives a field of the old flat recipes.
    #[error("{}{msg}", file_prefix(path))]
    Syntax { path: Option<PathBuf>, msg: String },
    /// A value out of range; `field` is its section path, `place` where it was
    /// given (None: not known, for a recipe that is no file's).
    #[error("{}field '{field}'{}: {msg}", file_prefix(path), place.map(|p| p.to_string()).unwrap_or_default())]
    Field { path: Option<PathBuf>, field: String, place: Option<Place>, msg: String },
}

fn file_prefix(path: &Option<PathBuf>) -> String {
    path.as_ref().map(|p| format!("{}: ", p.display())).unwrap_or_default()
}

impl RecipeError {
    /// A bad value of `field` (its section path).
    pub fn field(field: impl Into<String>, why: impl std::fmt::Display) -> RecipeError {
        RecipeError::Field { path: None, field: field.into(), place: None, msg: why.to_string() }
    }

    /// The same error, naming `file` as the recipe it came from.
    pub fn in_file(self, file: &Path) -> RecipeError {
        let path = Some(file.to_path_buf());
        match self {
            RecipeError::Syntax { msg, .. } => RecipeError::Syntax { path, msg },
            RecipeError::Field { field, place, msg, .. } => {
                RecipeError::Field { path, field, place, msg }
            }
            read => read,
        }
    }

    /// A value error of recipe `text` (checked as it was read, before any flag):
    /// placed at the field's line, or as the default where the text lacks it.
    pub fn in_text(self, text: &str) -> RecipeError {
        self.placed(|field| place::locate(text, field).map_or(Place::Default, Place::At))
    }

    /// A value error of a recipe checked after the command-line flags, naming the
    /// recipe `file` it was read from (None: no file) with `read` (the recipe as
    /// read) and `merged` (with the flags): a flag when the flags changed the
    /// field, else the field's line in the file, else the default.
    pub fn after_flags<R: Serialize>(self, file: Option<&Path>, read: &R, merged: &R) -> Self {
        let text = file.and_then(|f| std::fs::read_to_string(f).ok());
        let placed = self.placed(|field| match &text {
            _ if place::changed(read, merged, field) => Place::Flag,
            Some(text) => place::locate(text, field).map_or(Place::Default, Place::At),
            None => Place::Default,
        });
        match file {
            Some(f) => placed.in_file(f),
            None => placed,
        }
    }

    /// A `Field` error without a place, placed by `at` (given the field).
    fn placed(self, at: impl FnOnce(&str) -> Place) -> RecipeError {
        match self {
            RecipeError::Field { path, field, place: None, msg } => {
                let place = Some(at(&field));
                RecipeError::Field { path, field, place, msg }
            }
            other => other,
        }
    }

    /// The field a bad value was found in (None: unreadable or unparsable text).
    pub fn field_name(&self) -> Option<&str> {
        match self {
            RecipeError::Field { field, .. } => Some(field),
            _ => None,
        }
    }

    /// Where the bad value was given (None: no bad value, or not known).
    pub fn place(&self) -> Option<Place> {
        match self {
            RecipeError::Field { place, .. } => *place,
            _ => None,
        }
    }
}

/// The one loader of both recipe kinds: reads `path` and parses it with `parse`
/// (which checks the values), every error naming the file.
pub fn load<R>(
    path: &Path,
    parse: impl FnOnce(&str) -> Result<R, RecipeError>,
) -> Result<R, RecipeError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| RecipeError::Read { path: path.to_path_buf(), msg: e.to_string() })?;
    parse(&text).map_err(|e| e.in_file(path))
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

    /// Reads a recipe ([`load`]); errors name the file, the field and the line.
    pub fn load(path: &Path) -> Result<Recipe, RecipeError> {
        load(path, Recipe::parse)
    }

    /// Parses YAML text and checks the values.
    pub fn parse(text: &str) -> Result<Recipe, RecipeError> {
        let mut r: Recipe = parse_yaml(text, moved::Command::Train)?;
        r.training.preprocess_given = preprocess_given(text);
        r.check().map_err(|e| e.in_text(text))?;
        Ok(r)
    }

    /// Value checks (after CLI overrides too).
    pub fn check(&self) -> Result<(), RecipeError> {
        if self.training.epochs == 0 {
            return Err(RecipeError::field("training.epochs", "must be at least 1"));
        }
        self.training.check()
    }
}

impl Training {
    /// Value checks; errors name the field as `training.<field>`. Zero epochs pass
    /// (`rlal prune` may skip joint training; `rlal train` refuses them itself).
    pub fn check(&self) -> Result<(), RecipeError> {
        let bad = |f: &str, why: &str| Err(RecipeError::field(format!("training.{f}"), why));
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
        if self.lr_warmup_epochs < 0.0 || self.lr_warmup_epochs > self.epochs.max(1) as f64 {
            return bad("lr-warmup-epochs", "must be between 0 and epochs");
        }
        if self.nesterov && self.momentum == 0.0 {
            return bad("nesterov", "needs a non-zero momentum");
        }
        self.normalize()
            .validate(self.mean.len().max(self.std.len()))
            .or_else(|e| bad("mean/std/scale", &e))?;
        Ok(())
    }

    /// The input normalisation.
    pub fn normalize(&self) -> crate::data::Normalize {
        crate::data::Normalize { scale: self.scale, mean: self.mean.clone(), std: self.std.clone() }
    }

    /// The preprocessing to record in a model trained with these settings.
    pub fn preprocess(&self, input: [usize; 3], classes: usize) -> crate::data::Preprocess {
        crate::data::Preprocess {
            normalize: self.normalize(),
            crop_fraction: self.crop_fraction,
            input,
            classes,
        }
    }

    /// Adopts a model's recorded preprocessing unless the recipe gave its own: returns
    /// the line to tell the user which preprocessing the run uses.
    pub fn adopt_preprocess(&mut self, model: Option<&crate::data::Preprocess>) -> String {
        match model {
            Some(p) if !self.preprocess_given => {
                (self.scale, self.mean, self.std) =
                    (p.normalize.scale, p.normalize.mean.clone(), p.normalize.std.clone());
                self.crop_fraction = p.crop_fraction;
                format!("input preprocessing from the model's metadata: {}", p.describe())
            }
            _ => {
                let from = if self.preprocess_given { "the recipe" } else { "the defaults" };
                format!(
                    "input preprocessing from {from}: {}",
                    self.preprocess([0; 3], 0).describe()
                )
            }
        }
    }

    /// These settings with `epochs` epochs (fine-tuning after a search, for one).
    pub fn with_epochs(&self, epochs: usize) -> Training {
        Training { epochs, ..self.clone() }
    }

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

    /// The decay of the schedule.
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
        let r = Recipe::parse("training:\n  epochs: 3\n  batch-size: 32\n").unwrap();
        assert_eq!((r.training.epochs, r.training.batch_size, r.training.lr), (3, 32, 0.1));
        assert_eq!(Recipe::parse("").unwrap(), Recipe::default());
        let e = Recipe::parse("training:\n  epochs: 3\n  learning-rate: 0.1\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("training: unknown field `learning-rate`") && e.contains("line 3"),
            "{e}"
        );
        let e = Recipe::parse("training:\n  epochs: three\n").unwrap_err().to_string();
        assert!(e.contains("training.epochs: invalid type") && e.contains("line 2"), "{e}");
        let e = Recipe::parse("training:\n  momentum: 1.5\n").unwrap_err().to_string();
        assert!(e.contains("'training.momentum'"), "{e}");
        let e = Recipe::parse("training:\n  epochs: 0\n").unwrap_err().to_string();
        assert!(e.contains("'training.epochs'"), "{e}");
    }

    /// A bad value in a recipe file names the file, the field and its line.
    #[test]
    fn load_names_the_file_the_field_and_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("bad.yaml");
        std::fs::write(&p, "model: m.onnx\ntraining:\n  epochs: 2\n  lr: -1\n").unwrap();
        let e = Recipe::load(&p).unwrap_err();
        assert_eq!(e.field_name(), Some("training.lr"));
        let msg = e.to_string();
        let want = format!("{}: field 'training.lr' at line 4 column 3: must be", p.display());
        assert!(msg.starts_with(&want), "{msg}");
        std::fs::write(&p, "training: {epochs: 2,\n  momentum: 1.5}\n").unwrap();
        let msg = Recipe::load(&p).unwrap_err().to_string();
        assert!(msg.contains("field 'training.momentum' at line 2 column 3: must be"), "{msg}");
        std::fs::write(&p, "training:\n  lr: 0.1\n  bogus: 1\n").unwrap();
        let msg = Recipe::load(&p).unwrap_err().to_string();
        assert!(
            msg.starts_with(&format!("{}: training: unknown field `bogus`", p.display())),
            "{msg}"
        );
    }

    /// A value checked after the flags names the file's line or the flag it came from.
    #[test]
    fn errors_after_flags_name_where_the_value_came_from() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("r.yaml");
        std::fs::write(&p, "model: m.onnx\ntraining:\n  epochs: 2\n  nesterov: true\n").unwrap();
        let read = Recipe::load(&p).unwrap();
        let after = |merged: &Recipe, file: Option<&Path>| {
            merged.check().unwrap_err().after_flags(file, &read, merged).to_string()
        };
        let mut r = read.clone();
        r.training.momentum = 2.0;
        let want =
            format!("{}: field 'training.momentum' (from a command-line flag): ", p.display());
        assert!(after(&r, Some(&p)).starts_with(&want), "{}", after(&r, Some(&p)));
        assert!(after(&r, None).starts_with("field 'training.momentum' (from a command-line flag)"));
        // A flag's momentum 0 makes the file's `nesterov` wrong: its line is named.
        r.training.momentum = 0.0;
        let want = format!("{}: field 'training.nesterov' at line 4 column 3: needs", p.display());
        assert!(after(&r, Some(&p)).starts_with(&want), "{}", after(&r, Some(&p)));
    }

    #[test]
    fn flat_fields_name_their_section() {
        let e = Recipe::parse("model: m.onnx\n\nepochs: 3\n").unwrap_err().to_string();
        assert!(e.starts_with("'epochs' is now 'training.epochs' (recipes have sections since 2026-12; see docs/RECIPES.md) at line 3"), "{e}");
        // The old name of the learning-rate warm-up (train recipes before `lr-warmup-epochs`).
        let e = Recipe::parse("warmup-epochs: 1\n").unwrap_err().to_string();
        assert!(
            e.contains("'warmup-epochs' is now 'training.lr-warmup-epochs'")
                && e.contains("line 1"),
            "{e}"
        );
        // A prune-only field is just unknown here.
        let e = Recipe::parse("model: m.onnx\nbuffer-epochs: 1\n").unwrap_err().to_string();
        assert!(e.contains("unknown field `buffer-epochs`") && e.contains("line 2"), "{e}");
    }

    #[test]
    fn moved_table_lists_every_training_field() {
        let mut table = moved::TRAINING.to_vec();
        table.sort();
        assert_eq!(moved::field_names(&Training::default()), table);
    }
}
