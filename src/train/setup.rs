//! Glue shared by `rlal train`, `rlal eval` and the benches: model geometry,
//! BN insertion with re-analysis, data loaders from a recipe.
use super::recipe::{InsertBn, Training};
use super::TrainError;
use crate::analysis::Analysis;
use crate::data::{self, Loader, LoaderConfig, Normalize, Transform};
use crate::ir::{Graph, Layout};
use std::path::Path;

/// The image input of a model: its non-batch dims in the model's order and its layout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ModelInput {
    /// `[C, H, W]`, or `[H, W, C]` for a channels-last model.
    pub dims: [usize; 3],
    pub layout: Layout,
}

impl ModelInput {
    /// `[C, H, W]` of the images.
    pub fn chw(&self) -> [usize; 3] {
        self.layout.chw(self.dims)
    }
}

/// The graph input's dims and layout (the one import found or was told).
pub fn model_input(g: &Graph, a: &Analysis) -> Result<ModelInput, TrainError> {
    let &i = g.inputs.first().ok_or_else(|| {
        TrainError::Graph("the model has no graph input to feed images to".into())
    })?;
    let name = &g.values[i].name;
    let f = a.facts.get(i).and_then(|f| f.as_ref()).ok_or_else(|| {
        TrainError::Graph(format!("the graph input '{name}' has an unknown shape"))
    })?;
    let s = f.concrete(1);
    if s.len() != 4 {
        return Err(TrainError::Graph(format!(
            "the graph input '{name}' has rank {}, expected images (NCHW or NHWC)",
            s.len()
        )));
    }
    Ok(ModelInput { dims: [s[1], s[2], s[3]], layout: g.meta.input_layout })
}

/// Classes: the last dim of the first output, when fixed.
pub fn num_classes(g: &Graph, a: &Analysis) -> Option<usize> {
    g.outputs.first().and_then(|&o| a.facts[o].as_ref()).and_then(|f| f.dim(-1))
}

/// Whether some conv output is not consumed by a BatchNormalization.
pub fn needs_bn(g: &Graph) -> bool {
    !crate::ir::bn::without_bn(g).is_empty()
}

/// Applies `training.insert-bn` and re-analyses; returns the number of BN nodes added.
pub fn apply_insert_bn(
    g: &mut Graph,
    a: &mut Analysis,
    mode: InsertBn,
    input_shape: Option<&[usize]>,
) -> Result<usize, TrainError> {
    let on = match mode {
        InsertBn::On => true,
        InsertBn::Off => false,
        InsertBn::Auto => needs_bn(g),
    };
    if !on {
        return Ok(0);
    }
    let n = crate::ir::bn::insert_bn(g, &a.facts);
    if n > 0 {
        let facts = crate::ir::infer::infer(g, input_shape)?;
        *a = Analysis::new(g, facts, std::mem::take(&mut a.passes));
    }
    Ok(n)
}

/// Train loader (minus `holdout` images, at most `training.train-samples`), holdout indices and
/// test loader for a recipe's training settings, giving batches in `model`'s layout.
pub fn loaders(
    r: &Training,
    holdout: usize,
    dir: &Path,
    model: ModelInput,
    classes: Option<usize>,
) -> Result<(Loader, Vec<usize>, Loader), TrainError> {
    let input = model.chw();
    // Image folders are brought to the model's input size and channels.
    let resize = data::ResizeMode::CenterCrop { crop_fraction: r.crop_fraction };
    let opts = data::OpenOptions {
        size: Some([input[1], input[2]]),
        channels: Some(input[0]),
        resize,
        ..Default::default()
    };
    let pair = data::open_both(dir, &opts)?;
    for ds in [&pair.train, &pair.test] {
        match classes {
            Some(k) => data::check_model(&**ds, input, k)?,
            None => data::check_input(&**ds, input)?,
        }
    }
    let (mut train_idx, holdout) = if holdout > 0 {
        data::split_holdout(&*pair.train, holdout, r.seed)?
    } else {
        ((0..pair.train.len()).collect(), Vec::new())
    };
    if r.train_samples > 0 && r.train_samples < train_idx.len() {
        // The class-balanced split rule again, on the images left for training.
        let labels: Vec<u32> = train_idx.iter().map(|&i| pair.train.labels()[i]).collect();
        let (_, chosen) = data::split_holdout_labels(
            &labels,
            pair.train.num_classes(),
            r.train_samples,
            crate::rng::Stream::TrainSubset.seed(r.seed),
            pair.train.label_source(),
        )?;
        train_idx = chosen.into_iter().map(|j| train_idx[j]).collect();
    }
    let norm = Normalize { scale: r.scale, mean: r.mean.clone(), std: r.std.clone() };
    norm.validate(input[0]).map_err(|m| TrainError::Graph(format!("recipe mean/std: {m}")))?;
    let cfg = LoaderConfig {
        batch_size: r.batch_size,
        shuffle: true,
        drop_last: false,
        seed: r.seed,
        workers: workers(r.workers, r.threads),
        prefetch: 4,
    };
    let train = Loader::new(
        pair.train,
        train_idx,
        Transform::train(norm.clone(), r.crop_pad, r.hflip)
            .with_random_resized_crop(r.random_resized_crop)
            .with_layout(model.layout),
        cfg.clone(),
    )?;
    let test = Loader::all(
        pair.test,
        Transform::eval(norm).with_layout(model.layout),
        LoaderConfig { shuffle: false, batch_size: r.batch_size.max(256), ..cfg },
    )?;
    Ok((train, holdout, test))
}

/// Loader threads for a recipe's `workers` on this process: `auto` takes the cores of
/// this process's share of the machine (the machine's, divided among the ranks a
/// launcher put on this node) left after `training.threads` training threads.
pub fn workers(w: crate::data::Workers, threads: usize) -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let local = crate::dist::local_size().max(1);
    w.resolve((cores / local).max(1), threads)
}
