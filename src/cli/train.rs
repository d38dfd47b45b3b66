//! `rlal train --recipe r.yaml [model.onnx] [flags]`: train an imported graph
//! (no pruning) and write the trained ONNX. Defaults < recipe < flags.
use super::args::{InputArgs, TrainingArgs};
use super::Failure;
use anyhow::Context;
use rlal::analysis;
use rlal::train::recipe::Recipe;
use rlal::train::{setup, trainer, Net};
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct TrainArgs {
    /// The ONNX model to train (overrides the recipe's `model`).
    pub model: Option<PathBuf>,
    /// YAML recipe (see `rlal::train::recipe` / docs for fields and defaults).
    #[arg(long)]
    pub recipe: Option<PathBuf>,
    /// Dataset directory (overrides `data`).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Trained ONNX output file (overrides `output`).
    #[arg(long, short)]
    pub output: Option<PathBuf>,
    #[command(flatten)]
    pub training: TrainingArgs,
    /// Checkpoint directory (overrides `checkpoint-dir`).
    #[arg(long)]
    pub checkpoint_dir: Option<PathBuf>,
    /// Continue from the checkpoint in the checkpoint directory.
    #[arg(long)]
    pub resume: bool,
    /// Metrics JSONL file (overrides `metrics`).
    #[arg(long)]
    pub metrics: Option<PathBuf>,
    #[command(flatten)]
    pub input: InputArgs,
    /// Print the merged recipe and exit.
    #[arg(long)]
    pub show_recipe: bool,
    /// Set from the global `--quiet`.
    #[arg(skip)]
    pub quiet: bool,
}

fn merged(a: &TrainArgs) -> Result<Recipe, Failure> {
    let read = a.recipe.as_deref().map_or(Ok(Recipe::default()), Recipe::load)?;
    let mut r = read.clone();
    a.training.apply(&mut r.training);
    a.input.apply(&mut r.input_shape, &mut r.input_layout, &mut r.bind);
    for (dst, src) in [
        (&mut r.model, &a.model),
        (&mut r.data, &a.data),
        (&mut r.output, &a.output),
        (&mut r.checkpoint_dir, &a.checkpoint_dir),
        (&mut r.metrics, &a.metrics),
    ] {
        if src.is_some() {
            *dst = src.clone();
        }
    }
    r.check().map_err(|e| e.after_flags(a.recipe.as_deref(), &read, &r))?;
    Ok(r)
}

pub fn run(a: TrainArgs) -> Result<(), Failure> {
    let mut rec = merged(&a)?;
    if a.show_recipe {
        print!(
            "{}",
            serde_yaml::to_string(&rec).context("serialising the recipe").map_err(Failure::job)?
        );
        return Ok(());
    }
    let model = rec.model.clone().ok_or_else(|| {
        Failure::input(anyhow::anyhow!(
            "no model: give it as an argument or as `model:` in the recipe"
        ))
    })?;
    let data = rec.data.clone().ok_or_else(|| {
        Failure::input(anyhow::anyhow!("no dataset: give --data DIR or `data:` in the recipe"))
    })?;
    if rec.training.threads > 0 {
        tch::set_num_threads(rec.training.threads as i32);
    }
    let device = rec.training.device.device().map_err(Failure::input)?;
    let (mut g, mut an) =
        analysis::import(&model, &rec.import_options()).map_err(Failure::input)?;
    let recorded = super::model_preprocess(&model, &g.meta.props)?;
    let preprocess_line = rec.training.adopt_preprocess(recorded.as_ref());
    let r = &rec.training;
    let added = setup::apply_insert_bn(&mut g, &mut an, r.insert_bn, rec.input_shape.as_deref())
        .map_err(Failure::input)?;
    let input = setup::model_input(&g, &an)
        .with_context(|| format!("{}: cannot train it", model.display()))
        .map_err(Failure::input)?;
    let classes = setup::num_classes(&g, &an);
    let (train, holdout, test) =
        setup::loaders(r, rec.holdout, &data, input, classes).map_err(Failure::input)?;
    let train = trainer::shard(train).map_err(Failure::input)?;
    let mut net = Net::new(&g, &an, device)
        .with_context(|| format!("building the network from {}", model.display()))
        .map_err(Failure::input)?;
    net.set_compute(r.precision, r.channels_last);
    if !a.quiet {
        eprintln!(
            "training {} on {} ({} train images, {} held out, {} test) for {} epochs on {:?}, {}{}",
            model.display(),
            data.display(),
            train.num_samples(),
            holdout.len(),
            test.num_samples(),
            r.epochs,
            device,
            rlal::dist::summary(device),
            if added > 0 {
                format!(", {added} BatchNormalization inserted")
            } else {
                String::new()
            }
        );
        eprintln!("{preprocess_line}");
    }
    let cfg = trainer::TrainConfig {
        epochs: r.epochs,
        optim: r.optim(),
        eval_every: r.eval_every,
        checkpoint_dir: rec.checkpoint_dir.clone(),
        resume: a.resume,
        metrics: rec.metrics.clone(),
        progress: !a.quiet,
        seed: r.seed,
    };
    if a.resume && cfg.checkpoint_dir.is_none() {
        return Err(Failure::input(anyhow::anyhow!(
            "--resume needs a checkpoint directory (--checkpoint-dir or `checkpoint-dir:`)"
        )));
    }
    let t0 = std::time::Instant::now();
    let metrics = trainer::train(&mut net, &train, Some(&test), &cfg).map_err(Failure::job)?;
    let mut out_g = net.export().map_err(Failure::job)?;
    let folded = if r.keep_bn { 0 } else { rlal::ir::bn::fold_bn(&mut out_g) };
    let classes = classes.unwrap_or_else(|| test.dataset().num_classes());
    out_g.meta.set_props(r.preprocess(input.chw(), classes).to_props());
    let output = rec.output.clone().unwrap_or_else(|| {
        let stem = model
            .file_name()
            .and_then(|s| s.to_str())
            .unwrap_or("model")
            .trim_end_matches(".gz")
            .trim_end_matches(".onnx")
            .to_string();
        PathBuf::from(format!("{stem}_trained.onnx"))
    });
    if !rlal::dist::is_root() {
        return Ok(());
    }
    rlal::onnx::save(&out_g, &output)
        .with_context(|| format!("writing {}", output.display()))
        .map_err(Failure::job)?;
    let acc = metrics
        .last()
        .and_then(|m| m.test.as_ref())
        .map(|t| format!("{:.2}%", 100.0 * t.accuracy))
        .unwrap_or_else(|| "n/a (resumed after the last epoch)".into());
    println!("test accuracy {acc} after {} epochs in {:.1}s; wrote {} ({folded} BatchNormalization folded)", r.epochs, t0.elapsed().as_secs_f64(), output.display());
    Ok(())
}
