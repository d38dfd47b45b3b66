//! `rlal bench <what>`: performance measurements of rlal's engines (`train`: training steps; `search`: episode stages vs weight training).
//!
//! `rlal bench train --model m.onnx`: training-step throughput of the libtorch
//! executor. The model is imported like `rlal train` does it (normalised,
//! identity BatchNormalization inserted after convs lacking one), fed random
//! input of the graph's input shape and random labels, and full steps are timed:
//! forward in train mode, cross-entropy, backward, SGD (momentum 0.9, weight
//! decay 1e-4). After `--warmup` untimed steps, `--steps` steps are timed one by
//! one; the figure is `batch / median step time`. `tools/bench_train_torch.py`
//! measures the same in PyTorch eager, `tools/bench_train.sh` compares the two.
use super::args::{InputArgs, TrainingArgs};
use super::Failure;
use anyhow::Context;
use rlal::analysis;
use rlal::search::search_bench::{device_name, sync};
use rlal::train::optim::SgdConfig;
use rlal::train::recipe::{DeviceKind, InsertBn};
use rlal::train::schedule::Decay;
use rlal::train::trainer::{OptimConfig, Trainer};
use rlal::train::{setup, Net};
use std::path::PathBuf;
use std::time::Instant;
use tch::{Kind, Tensor};

#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub what: BenchCommand,
}

#[derive(clap::Subcommand, Debug)]
pub enum BenchCommand {
    /// Training-step throughput (images/s) of rlal's libtorch executor on an ONNX graph.
    Train(TrainBenchArgs),
    /// Cost of the search's episodes (reward evaluation by stage, agent updates) against
    /// weight training, for a prune recipe; projects the share at the paper's proportions.
    Search(SearchBenchArgs),
    /// The agent on a synthetic accuracy surface with a known optimum (no CNN
    /// training): regret and rewards of rlal, w/o EE, random search and uniform.
    Agent(super::bench_agent::AgentBenchArgs),
    /// The input pipeline: loader images/s against worker threads on an ImageNet-style
    /// JPEG folder (generated with --generate N), as the ImageNet recipes load it.
    Data(super::bench_data::DataBenchArgs),
    /// A pruned model beside the unpruned one (and a natively narrow reference), timed
    /// interleaved in ONNX Runtime, with its profile by op type.
    Latency(super::bench_latency::LatencyBenchArgs),
}

#[derive(clap::Args, Debug)]
pub struct SearchBenchArgs {
    /// The prune recipe (its model, data, reward engine and agent settings).
    #[arg(long, default_value = "recipes/quickstart.yaml")]
    pub recipe: PathBuf,
    /// Override the recipe's reward engine (`search.reward-engine`).
    #[arg(long, value_enum)]
    pub engine: Option<rlal::search::recipe::RewardEngine>,
    /// Override the recipe's batch size for scoring the reward subset.
    #[arg(long)]
    pub reward_batch_size: Option<usize>,
    /// Override the recipe's adaptive-BN image count (`search.reward-bn-samples`).
    #[arg(long)]
    pub bn_samples: Option<usize>,
    /// Override the recipe's `search.reward-ort-batch` (images per ONNX Runtime run).
    #[arg(long)]
    pub ort_batch: Option<usize>,
    /// Override the recipe's `search.reward-ort-pad` (1: score the unpadded narrow networks).
    #[arg(long)]
    pub ort_pad: Option<usize>,
    /// Override the recipe's `agent.overlap` (agent updates beside the next epoch's training).
    #[arg(long, value_enum)]
    pub overlap: Option<rlal::search::recipe::Overlap>,
    /// Timed training batches (after 2 untimed ones) for the training throughput.
    #[arg(long, default_value_t = 20)]
    pub train_batches: usize,
    /// Timed episodes (after 1 untimed); default the recipe's episodes per epoch (the
    /// projection always uses the recipe's P).
    #[arg(long)]
    pub episodes: Option<usize>,
    /// Reward subset as a share of the training images for the projection (paper: 0.1).
    #[arg(long, default_value_t = 0.1)]
    pub paper_subset: f64,
    /// Override the recipe's model.
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Override the recipe's dataset directory.
    #[arg(long)]
    pub data: Option<PathBuf>,
    #[command(flatten)]
    pub training: TrainingArgs,
    #[command(flatten)]
    pub input: InputArgs,
    /// Print the figures as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(clap::Args, Debug)]
pub struct TrainBenchArgs {
    /// The ONNX model (`.onnx` or `.onnx.gz`).
    #[arg(long)]
    pub model: PathBuf,
    /// Images per step.
    #[arg(long, default_value_t = 128)]
    pub batch: usize,
    /// Timed steps (the median and mean are over these).
    #[arg(long, default_value_t = 20)]
    pub steps: usize,
    /// Untimed steps first (allocator and kernel warm-up).
    #[arg(long, default_value_t = 3)]
    pub warmup: usize,
    /// libtorch intra-op threads (0: libtorch's default).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Compute device.
    #[arg(long, value_enum, default_value = "auto")]
    pub device: DeviceKind,
    #[command(flatten)]
    pub input: InputArgs,
    /// Training arithmetic (mixed bf16/fp16 as `training.precision` in recipes).
    #[arg(long, value_enum, default_value = "fp32")]
    pub precision: rlal::train::recipe::Precision,
    /// Channels-last layout (as `training.channels-last` in recipes).
    #[arg(long)]
    pub channels_last: bool,
    /// Print a JSON object (model, batch, threads, steps, warmup, median_ms, mean_ms, images_per_s, device, ...).
    #[arg(long)]
    pub json: bool,
}

/// The figures of `rlal bench train` (the JSON printed with `--json`).
#[derive(serde::Serialize)]
struct TrainReport {
    model: String,
    engine: &'static str,
    device: String,
    precision: rlal::train::recipe::Precision,
    channels_last: bool,
    batch: usize,
    threads: i32,
    steps: usize,
    warmup: usize,
    /// Median wall time of one training step, milliseconds.
    median_ms: f64,
    /// Mean wall time of one training step, milliseconds.
    mean_ms: f64,
    min_ms: f64,
    max_ms: f64,
    /// `batch / median step time`.
    images_per_s: f64,
    input: [usize; 3],
    classes: usize,
    bn_inserted: usize,
    trainable_params: i64,
    /// Loss of the last step (random labels: about ln(classes); a sanity check, not a result).
    final_loss: f64,
}

pub fn run(a: BenchArgs) -> Result<(), Failure> {
    match a.what {
        BenchCommand::Train(t) => train(t),
        BenchCommand::Search(s) => search(s),
        BenchCommand::Agent(a) => super::bench_agent::run(a),
        BenchCommand::Data(a) => super::bench_data::run(a),
        BenchCommand::Latency(a) => super::bench_latency::run(a),
    }
}

fn train(a: TrainBenchArgs) -> Result<(), Failure> {
    if a.batch == 0 || a.steps == 0 {
        return Err(Failure::input(anyhow::anyhow!("--batch and --steps must be at least 1")));
    }
    if a.threads > 0 {
        tch::set_num_threads(a.threads as i32);
    }
    let device = a.device.device().map_err(Failure::input)?;
    let ctx = || format!("benchmarking {}", a.model.display());
    let opts = a.input.options();
    let (mut g, mut an) = analysis::import(&a.model, &opts).map_err(Failure::input)?;
    let added =
        setup::apply_insert_bn(&mut g, &mut an, InsertBn::Auto, opts.input_shape.as_deref())
            .with_context(ctx)
            .map_err(Failure::input)?;
    let input = setup::model_input(&g, &an).with_context(ctx).map_err(Failure::input)?.dims;
    let mut net = Net::new(&g, &an, device)
        .with_context(|| format!("building the network from {}", a.model.display()))
        .map_err(Failure::input)?;
    net.set_compute(a.precision, a.channels_last);
    tch::manual_seed(0);
    let shape = [a.batch as i64, input[0] as i64, input[1] as i64, input[2] as i64];
    let x = Tensor::randn(shape, (Kind::Float, device));
    let classes = match setup::num_classes(&g, &an) {
        Some(k) => k,
        None => {
            let y = tch::no_grad(|| net.forward_t(&x, false))
                .with_context(ctx)
                .map_err(Failure::job)?;
            *y.size().last().unwrap_or(&1) as usize
        }
    };
    let y = Tensor::randint(classes.max(1) as i64, [a.batch as i64], (Kind::Int64, device));
    let trainable_params: i64 = net.trainable().iter().map(|(_, t)| t.numel() as i64).sum();
    let optim = OptimConfig {
        lr: 0.01,
        min_lr: 0.01,
        warmup_epochs: 0.0,
        decay: Decay::Constant,
        sgd: SgdConfig { momentum: 0.9, nesterov: false, weight_decay: 1e-4 },
        label_smoothing: 0.0,
    };
    let mut tr = Trainer::new(&net, &optim, 1, 1);
    let mut step = || -> anyhow::Result<f64> { Ok(tr.step(&mut net, &x, &y, a.batch, None)?.loss) };
    let mut final_loss = f64::NAN;
    for _ in 0..a.warmup {
        final_loss = step().with_context(ctx).map_err(Failure::job)?;
    }
    sync(device);
    let mut ms = Vec::with_capacity(a.steps);
    for _ in 0..a.steps {
        let t0 = Instant::now();
        final_loss = step().with_context(ctx).map_err(Failure::job)?;
        sync(device);
        ms.push(1000.0 * t0.elapsed().as_secs_f64());
    }
    let mean_ms = ms.iter().sum::<f64>() / ms.len() as f64;
    ms.sort_by(f64::total_cmp);
    let n = ms.len();
    let median_ms = if n % 2 == 1 { ms[n / 2] } else { 0.5 * (ms[n / 2 - 1] + ms[n / 2]) };
    let r = TrainReport {
        model: a.model.display().to_string(),
        engine: "rlal-tch",
        device: device_name(device),
        precision: a.precision,
        channels_last: a.channels_last,
        batch: a.batch,
        threads: tch::get_num_threads(),
        steps: a.steps,
        warmup: a.warmup,
        median_ms,
        mean_ms,
        min_ms: ms[0],
        max_ms: ms[n - 1],
        images_per_s: a.batch as f64 / (median_ms / 1000.0),
        input,
        classes,
        bn_inserted: added,
        trainable_params,
        final_loss,
    };
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&r).context("serialising").map_err(Failure::job)?
        );
    } else {
        println!(
            "{}: {:.1} img/s ({:.1} ms/step median, {:.1} mean, {:.1}-{:.1}) training at batch {} on {} with {} threads, {} steps after {} warm-up{}",
            r.model,
            r.images_per_s,
            r.median_ms,
            r.mean_ms,
            r.min_ms,
            r.max_ms,
            r.batch,
            r.device,
            r.threads,
            r.steps,
            r.warmup,
            if added > 0 { format!("; {added} BatchNormalization inserted") } else { String::new() }
        );
    }
    Ok(())
}

fn search(a: SearchBenchArgs) -> Result<(), Failure> {
    use rlal::search::search_bench::{self, SearchBenchOptions};
    use rlal::search::Recipe;

    let read = Recipe::load(&a.recipe)?;
    let mut r = read.clone();
    if let Some(e) = a.engine {
        r.search.reward_engine = e;
    }
    if let Some(b) = a.reward_batch_size {
        r.search.reward_batch_size = b;
    }
    if let Some(n) = a.bn_samples {
        r.search.reward_bn_samples = n;
    }
    a.training.apply(&mut r.training);
    a.input.apply(&mut r.input_shape, &mut r.input_layout, &mut r.bind);
    if let Some(b) = a.ort_batch {
        r.search.reward_ort_batch = b;
    }
    if let Some(o) = a.overlap {
        r.agent.overlap = o;
    }
    if let Some(p) = a.ort_pad {
        r.search.reward_ort_pad = p;
    }
    let timed_episodes = a.episodes.unwrap_or(r.search.episodes_per_epoch);
    if a.model.is_some() {
        r.model = a.model.clone();
    }
    if a.data.is_some() {
        r.data = a.data.clone();
    }
    r.check().map_err(|e| e.after_flags(Some(&a.recipe), &read, &r))?;
    if a.train_batches == 0
        || timed_episodes == 0
        || !(a.paper_subset > 0.0 && a.paper_subset < 1.0)
    {
        return Err(Failure::input(anyhow::anyhow!(
            "--train-batches and --episodes must be at least 1, --paper-subset in (0, 1)"
        )));
    }
    let o = SearchBenchOptions {
        train_batches: a.train_batches,
        episodes: timed_episodes,
        paper_subset: a.paper_subset,
    };
    let rep = search_bench::run(&r, &a.recipe.display().to_string(), &o).map_err(|e| match e {
        rlal::search::SearchError::Input(e) => Failure::input(e),
        rlal::search::SearchError::Job(e) => Failure::job(e),
    })?;
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&rep).context("serialising").map_err(Failure::job)?
        );
    } else {
        let e = &rep.episode_ms;
        println!(
            "{} ({}), reward engine {}, {} threads on {}",
            rep.recipe, rep.model, rep.engine, rep.threads, rep.device
        );
        println!(
            "  training        {:.0} img/s ({:.0} before, {:.0} after the episodes): {:.1} s per epoch of {} images ({:.1} GMAC/s)",
            rep.train_images_per_s, rep.train_images_per_s_windows[0], rep.train_images_per_s_windows[1], rep.train_epoch_s, rep.train_images, rep.train_gmacs_per_s
        );
        println!(
            "  one episode     {:.0} ms = surgery {:.0} + build {:.0} + adaptive BN {:.0} ({} images) + scoring {:.0} ({} images, {:.0} img/s, {:.1} GMAC/s at {:.3} of the MACs; mean of {} episodes)",
            e.total, e.surgery, e.build, e.recal, rep.bn_samples, e.infer, rep.reward_images, rep.reward_images_per_s, rep.reward_gmacs_per_s, rep.scored_macs_ratio, rep.episodes
        );
        println!(
            "  per epoch       freeze {:.2} s, {} episodes {:.2} s, agent updates {:.2} s",
            rep.freeze_s,
            r.search.episodes_per_epoch,
            rep.episodes_per_epoch as f64 * rep.episode_ms.total / 1000.0,
            rep.updates_s
        );
        println!("  search / training: {:.1}% with this recipe", 100.0 * rep.search_share);
        println!(
            "  at the paper's proportions (P = {}, reward subset {:.0}% of the training images): {:.1}% ({:.1}% without the agent updates)",
            r.search.episodes_per_epoch,
            100.0 * rep.paper_subset,
            100.0 * rep.search_share_paper,
            100.0 * rep.episodes_share_paper
        );
        if let (Some(b), Some(share)) = (&rep.beside, rep.search_share_paper_overlapped) {
            println!(
                "  agent.overlap   updates beside training: {:.2} s, training meanwhile {:.0} img/s, {:.2} s lost to training; {:.1}% at the paper's proportions",
                b.updates_s, b.train_images_per_s, b.extra_s, 100.0 * share
            );
        }
    }
    Ok(())
}
