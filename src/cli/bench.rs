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
use super::{parse_dims, Failure};
use anyhow::Context;
use rlal::analysis::{self, ImportOptions};
use rlal::train::optim::SgdConfig;
use rlal::train::recipe::{DeviceKind, InsertBn};
use rlal::train::schedule::Decay;
use rlal::train::trainer::{OptimConfig, Trainer};
use rlal::train::{setup, Net};
use std::path::PathBuf;
use std::time::Instant;
use tch::{Device, Kind, Tensor};

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
    /// Override the recipe's reward engine.
    #[arg(long, value_enum)]
    pub engine: Option<rlal::search::recipe::RewardEngine>,
    /// Override the recipe's batch size for scoring the reward subset.
    #[arg(long)]
    pub reward_batch_size: Option<usize>,
    /// Override the recipe's adaptive-BN image count (`reward-bn-samples`).
    #[arg(long)]
    pub bn_samples: Option<usize>,
    /// Override the recipe's libtorch threads (and ONNX Runtime's scoring sessions).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Override the recipe's `reward-ort-batch` (images per ONNX Runtime run).
    #[arg(long)]
    pub ort_batch: Option<usize>,
    /// Override the recipe's `reward-ort-pad` (1: score the unpadded narrow networks).
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
    /// Print the figures as JSON.
    #[arg(long)]
    pub json: bool,
}

/// The figures of `rlal bench search`.
#[derive(serde::Serialize)]
struct SearchReport {
    recipe: String,
    model: String,
    engine: String,
    device: String,
    threads: i32,
    train_images: usize,
    reward_images: usize,
    reward_batch_size: usize,
    bn_samples: usize,
    /// Weight training (forward, cross-entropy + β·L_align, backward, SGD, data loading
    /// with augmentation), images/s: over two windows of `--train-batches`, one before
    /// and one after the episodes, so that a drift of the machine's speed affects
    /// training and scoring alike.
    train_images_per_s: f64,
    /// The two windows' rates, images/s.
    train_images_per_s_windows: [f64; 2],
    /// One epoch of weight training at that rate, seconds.
    train_epoch_s: f64,
    episodes: usize,
    /// Mean MACs of the scored networks / MACs of the full network.
    scored_macs_ratio: f64,
    /// Useful multiply-accumulates per second: training (forward + backward = 3 x the
    /// forward MACs) and scoring (the scored networks' MACs, padding not counted), in GMAC/s.
    train_gmacs_per_s: f64,
    reward_gmacs_per_s: f64,
    /// Episodes per search epoch in the projections (the recipe's P).
    episodes_per_epoch: usize,
    /// Per episode, milliseconds: surgery, build, recal, infer, and their total.
    episode_ms: EpisodeMs,
    /// Reward-subset images per second of the scoring stage alone.
    reward_images_per_s: f64,
    /// Once per search epoch: freezing the weights, seconds.
    freeze_s: f64,
    /// Agent updates of one search epoch (`updates-per-epoch` env-model + SAC steps), seconds;
    /// timed as in the last agent epoch (a replay buffer with P episodes of every search epoch).
    updates_s: f64,
    /// (episodes + freeze + updates) / training epoch with this recipe's reward subset.
    search_share: f64,
    /// The same with a reward subset of `paper_subset` of the training images and P episodes.
    search_share_paper: f64,
    /// Of `search_share_paper`, without the agent updates (a fixed cost per epoch that shrinks with larger data).
    episodes_share_paper: f64,
    paper_subset: f64,
    /// `agent.overlap` on this device: the updates run beside the next epoch's training.
    overlap: bool,
    /// With `overlap`: one epoch's agent updates timed beside weight training.
    #[serde(skip_serializing_if = "Option::is_none")]
    beside: Option<Beside>,
    /// With `overlap`: the share at the paper's proportions counting the episodes, the
    /// training slowdown while the updates run, and any wait for updates longer than an epoch.
    #[serde(skip_serializing_if = "Option::is_none")]
    search_share_paper_overlapped: Option<f64>,
}

/// One epoch's agent updates run beside weight training.
#[derive(serde::Serialize)]
struct Beside {
    /// Training throughput over the window in which the updates ran, img/s.
    train_images_per_s: f64,
    /// The updates' own time beside training, seconds.
    updates_s: f64,
    /// Window time beyond what the same images take to train alone, seconds.
    extra_s: f64,
}

#[derive(serde::Serialize)]
struct EpisodeMs {
    surgery: f64,
    build: f64,
    recal: f64,
    infer: f64,
    total: f64,
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
    /// Fixed input size CxHxW for graphs with dynamic H/W.
    #[arg(long, value_parser = parse_dims)]
    pub input_shape: Option<Vec<usize>>,
    /// Training arithmetic (mixed bf16/fp16 as `precision` in recipes).
    #[arg(long, value_enum, default_value = "fp32")]
    pub precision: rlal::train::recipe::Precision,
    /// Channels-last layout (as `channels-last` in recipes).
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

fn device_name(d: Device) -> String {
    match d {
        Device::Cpu => "cpu".into(),
        Device::Cuda(i) => format!("cuda:{i}"),
        other => format!("{other:?}").to_lowercase(),
    }
}

fn sync(d: Device) {
    if let Device::Cuda(i) = d {
        tch::Cuda::synchronize(i as i64);
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
    let (mut g, mut an) =
        analysis::import(&a.model, &ImportOptions { input_shape: a.input_shape.clone() })
            .map_err(Failure::input)?;
    let added = setup::apply_insert_bn(&mut g, &mut an, InsertBn::Auto, a.input_shape.as_deref())
        .with_context(ctx)
        .map_err(Failure::input)?;
    let input = setup::input_dims(&g, &an).with_context(ctx).map_err(Failure::input)?;
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
    use rlal::agent::{Agent, Explore};
    use rlal::rng::Rng;
    use rlal::search::reward::RewardSet;
    use rlal::search::run::{freeze, ort_usable, prepare, search_data, SearchData};
    use rlal::search::Recipe;

    let mut r = Recipe::load(&a.recipe).map_err(|m| Failure::input(anyhow::anyhow!("{m}")))?;
    if let Some(e) = a.engine {
        r.reward_engine = e;
    }
    if let Some(b) = a.reward_batch_size {
        r.reward_batch_size = b;
    }
    if let Some(n) = a.bn_samples {
        r.reward_bn_samples = n;
    }
    if let Some(t) = a.threads {
        r.threads = t;
    }
    if let Some(b) = a.ort_batch {
        r.reward_ort_batch = b;
    }
    if let Some(o) = a.overlap {
        r.agent.overlap = o;
    }
    if let Some(p) = a.ort_pad {
        r.reward_ort_pad = p;
    }
    let timed_episodes = a.episodes.unwrap_or(r.episodes_per_epoch);
    if a.model.is_some() {
        r.model = a.model.clone();
    }
    if a.data.is_some() {
        r.data = a.data.clone();
    }
    r.check().map_err(|m| Failure::input(anyhow::anyhow!("{m}")))?;
    if a.train_batches == 0
        || timed_episodes == 0
        || !(a.paper_subset > 0.0 && a.paper_subset < 1.0)
    {
        return Err(Failure::input(anyhow::anyhow!(
            "--train-batches and --episodes must be at least 1, --paper-subset in (0, 1)"
        )));
    }
    let job = |e: rlal::search::SearchError| match e {
        rlal::search::SearchError::Input(e) => Failure::input(e),
        rlal::search::SearchError::Job(e) => Failure::job(e),
    };
    let (g, an, budget) = prepare(&r, None, false).map_err(job)?;
    if r.threads > 0 {
        tch::set_num_threads(r.threads as i32);
    }
    let device = r.device.device().map_err(Failure::input)?;
    let SearchData { train, holdout, recal, .. } = search_data(&r, &g, &an, device).map_err(job)?;
    let mut net =
        Net::new(&g, &an, device).context("building the network").map_err(Failure::input)?;

    // Weight training: the run's step, data loading included, with the alignment penalty
    // of the search epochs (here towards the uniform policy at the budget).
    let mut optim = r.train_recipe(r.epochs).optim();
    (optim.lr, optim.warmup_epochs, optim.decay) = (r.lr.min(0.05), 0.0, Decay::Constant);
    let mut tr = Trainer::new(&net, &optim, 1, train.num_batches());
    let align = if r.alignment && r.beta > 0.0 {
        let ks = rlal::search::reward::keep_sets(
            &net,
            &budget,
            &rlal::search::reward::uniform_kept(&budget),
            r.criterion.p(),
        )
        .context("the alignment target")
        .map_err(Failure::job)?;
        Some((net.group_lasso_target(&rlal::search::reward::keep_vectors(&net, &ks)), r.beta))
    } else {
        None
    };
    let step = Step { align: align.as_ref().map(|(v, b)| (v, *b)), device };
    let (seen, secs) = timed_training(&mut net, &mut tr, &train, a.train_batches, &step)?;
    if seen == 0 {
        return Err(Failure::input(anyhow::anyhow!(
            "{}: too few training images for one timed batch",
            a.recipe.display()
        )));
    }
    let rate_before = seen as f64 / secs;

    // Episodes: random actions (the buffer epochs' distribution) on the frozen weights.
    let rset = RewardSet::new(&holdout, &net)
        .context("caching the reward subset")
        .map_err(Failure::job)?
        .with_recalibration(recal);
    let ort_ok = ort_usable(&r, device);
    let mut agent = Agent::new(r.agent.clone(), r.epochs, r.seed);
    let mut rng = Rng::new(r.seed).fork(0xbe4c);
    let tf = Instant::now();
    let frozen =
        freeze(&r, &net, &budget, ort_ok).context("freezing the weights").map_err(Failure::job)?;
    let freeze_s = tf.elapsed().as_secs_f64();
    let p = r.criterion.p();
    let episodes: Vec<_> = (0..=timed_episodes)
        .map(|_| agent.episode(&budget, 0, &mut rng, Explore::Random))
        .collect();
    for (i, ep) in episodes.iter().enumerate() {
        if i == 1 {
            let _ = rset.take_stages(); // the first episode is a warm-up
        }
        let acc = rset
            .reward_with(&mut net, frozen.as_ref(), &budget, &ep.kept, p)
            .context("episode reward")
            .map_err(Failure::job)?;
        agent.remember(ep, acc as f32);
    }
    let st = rset.take_stages();
    let (seen2, secs2) = timed_training(&mut net, &mut tr, &train, a.train_batches, &step)?;
    let rate_after = seen2 as f64 / secs2;
    let train_rate = (seen + seen2) as f64 / (secs + secs2);
    // Agent updates as in the last agent epoch: the buffer holds P random episodes of
    // every search epoch so far (rewards drawn, not evaluated), so the environment
    // model's GRU runs over all of those epochs, as it does late in a run.
    let last = r.agent_epochs.max(1) - 1;
    for t in r.warmup_epochs.min(last)..=last {
        for _ in 0..r.episodes_per_epoch {
            let ep = agent.episode(&budget, t, &mut rng, Explore::Random);
            let reward = rng.uniform_f32();
            agent.remember(&ep, reward);
        }
    }
    while agent.replay.len() < agent.cfg.batch_size {
        let ep = agent.episode(&budget, last, &mut rng, Explore::Random);
        let reward = rng.uniform_f32();
        agent.remember(&ep, reward);
    }
    let tu = Instant::now();
    let _ = agent.update(&mut rng);
    let updates_s = tu.elapsed().as_secs_f64();
    // With `agent.overlap`: one epoch's updates beside weight training, which goes on (at
    // least `--train-batches` batches) until they are done; the extra time over the same
    // images trained alone is what the overlapped updates cost.
    let overlap = r.agent.overlap.resolve(device);
    let beside = if overlap {
        let t0 = Instant::now();
        let (trained, joined) = std::thread::scope(|s| {
            let (agent, rng, threads) = (&mut agent, &mut rng, r.threads);
            let h = s.spawn(move || {
                if threads > 0 {
                    tch::set_num_threads(threads as i32);
                }
                let tu = Instant::now();
                let _ = agent.update(rng);
                tu.elapsed().as_secs_f64()
            });
            let trained = (|| -> Result<usize, Failure> {
                let (mut batches, mut images) = (0usize, 0usize);
                for e in 0u64.. {
                    for b in train.epoch(e) {
                        images += train_batch(
                            &mut net,
                            &mut tr,
                            &b.context("loading a training batch").map_err(Failure::job)?,
                            &step,
                        )?;
                        batches += 1;
                        // Finished (or panicked: then the join reports it).
                        if batches >= a.train_batches && h.is_finished() {
                            return Ok(images);
                        }
                    }
                }
                unreachable!("the loop ends when the updates are done")
            })();
            (trained, h.join())
        });
        let wall = t0.elapsed().as_secs_f64();
        let updates =
            joined.map_err(|_| Failure::job(anyhow::anyhow!("the agent updates panicked")))?;
        let images = trained?;
        Some(Beside {
            train_images_per_s: images as f64 / wall,
            updates_s: updates,
            extra_s: (wall - images as f64 / train_rate).max(0.0),
        })
    } else {
        None
    };

    let n = st.episodes.max(1) as f64;
    let full_macs = budget.cost.full_macs().max(1) as f64;
    let scored_macs_ratio = episodes[1..].iter().map(|e| e.macs as f64).sum::<f64>()
        / (episodes.len() - 1).max(1) as f64
        / full_macs;
    let ms = |x: f64| 1000.0 * x / n;
    let ep_s = st.total() / n;
    let per_image = st.infer / n / st.images.max(1) as f64;
    let fixed = ep_s - st.infer / n;
    let n_train = train.num_samples();
    let train_epoch_s = n_train as f64 / train_rate;
    let pe = r.episodes_per_epoch as f64;
    let search_share = (pe * ep_s + freeze_s + updates_s) / train_epoch_s;
    let episodes_paper = pe * (fixed + per_image * a.paper_subset * n_train as f64) + freeze_s;
    let rep = SearchReport {
        recipe: a.recipe.display().to_string(),
        model: r.model.as_ref().map(|m| m.display().to_string()).unwrap_or_default(),
        engine: format!("{:?}", r.reward_engine.resolve(device, ort_ok)).to_lowercase()
            + if r.reward_engine == rlal::search::recipe::RewardEngine::Ort && !ort_ok {
                " (fell back to libtorch)"
            } else {
                ""
            },
        device: device_name(device),
        threads: tch::get_num_threads(),
        train_images: n_train,
        reward_images: st.images,
        reward_batch_size: r.reward_batch_size,
        bn_samples: r.reward_bn_samples,
        train_images_per_s: train_rate,
        train_images_per_s_windows: [rate_before, rate_after],
        train_epoch_s,
        episodes: st.episodes,
        scored_macs_ratio,
        train_gmacs_per_s: train_rate * 3.0 * full_macs / 1e9,
        reward_gmacs_per_s: scored_macs_ratio * full_macs / per_image.max(1e-12) / 1e9,
        episodes_per_epoch: r.episodes_per_epoch,
        episode_ms: EpisodeMs {
            surgery: ms(st.surgery),
            build: ms(st.build),
            recal: ms(st.recal),
            infer: ms(st.infer),
            total: 1000.0 * ep_s,
        },
        reward_images_per_s: 1.0 / per_image.max(1e-12),
        freeze_s,
        updates_s,
        search_share,
        search_share_paper: (episodes_paper + updates_s) / train_epoch_s,
        episodes_share_paper: episodes_paper / train_epoch_s,
        paper_subset: a.paper_subset,
        overlap,
        search_share_paper_overlapped: beside.as_ref().map(|b| {
            (episodes_paper + b.extra_s + (b.updates_s - train_epoch_s).max(0.0)) / train_epoch_s
        }),
        beside,
    };
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
            r.episodes_per_epoch,
            pe * ep_s,
            rep.updates_s
        );
        println!("  search / training: {:.1}% with this recipe", 100.0 * rep.search_share);
        println!(
            "  at the paper's proportions (P = {}, reward subset {:.0}% of the training images): {:.1}% ({:.1}% without the agent updates)",
            r.episodes_per_epoch,
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

/// One training step of a search epoch: alignment target and β, device.
struct Step<'a> {
    align: Option<(&'a rlal::train::masks::GroupLasso, f64)>,
    device: tch::Device,
}

/// Trains `batches` batches of the epoch-0 order (after 2 untimed ones) with the run's
/// step, data loading included: images and seconds.
fn timed_training(
    net: &mut Net,
    tr: &mut Trainer,
    train: &rlal::data::Loader,
    batches: usize,
    step: &Step,
) -> Result<(usize, f64), Failure> {
    let (mut seen, mut secs) = (0usize, 0f64);
    let mut t0 = Instant::now();
    for (i, b) in train.epoch(0).enumerate().take(batches + 2) {
        let n = train_batch(
            net,
            tr,
            &b.context("loading a training batch").map_err(Failure::job)?,
            step,
        )?;
        if i >= 2 {
            secs += t0.elapsed().as_secs_f64();
            seen += n;
        }
        t0 = Instant::now();
    }
    Ok((seen, secs))
}

/// One training step of `rlal prune`'s joint epochs ([`Trainer::step_batch`] with the
/// alignment penalty), synchronised: its images.
fn train_batch(
    net: &mut Net,
    tr: &mut Trainer,
    b: &rlal::data::Batch,
    step: &Step,
) -> Result<usize, Failure> {
    let mut pen = |n: &Net| Ok(step.align.map(|(g, beta)| g.penalty(n) * beta));
    tr.step_batch(net, b, Some(&mut pen))
        .map_err(|e| Failure::job(anyhow::anyhow!("training step: {e}")))?;
    sync(step.device);
    Ok(b.labels.len())
}
