//! `rlal bench search`: the cost of the search's episodes (reward evaluation by
//! stage, agent updates) against weight training for a prune recipe, projected to
//! the paper's proportions. The CLI (`rlal bench search`) only merges its flags into
//! the recipe and prints this report.
use super::job::{freeze, ort_usable, prepare, search_data, SearchData};
use super::recipe::Recipe;
use super::reward::{self, RewardSet, RewardStages};
use super::SearchError;
use crate::agent::{Agent, Budget, Explore};
use crate::rng::{Rng, Stream};
use crate::train::masks::GroupLasso;
use crate::train::schedule::Decay;
use crate::train::trainer::Trainer;
use crate::train::Net;
use anyhow::Context;
use std::time::Instant;
use tch::Device;

/// What `rlal bench search` measures besides the recipe.
#[derive(Clone, Debug)]
pub struct SearchBenchOptions {
    /// Timed training batches (after 2 untimed ones).
    pub train_batches: usize,
    /// Timed episodes (after 1 untimed).
    pub episodes: usize,
    /// Reward subset as a share of the training images for the projection (paper: 0.1).
    pub paper_subset: f64,
}

fn job(e: impl Into<anyhow::Error>) -> SearchError {
    SearchError::Job(e.into())
}

fn input(e: impl Into<anyhow::Error>) -> SearchError {
    SearchError::Input(e.into())
}

/// A device as reports name it ("cpu", "cuda:0").
pub fn device_name(d: Device) -> String {
    match d {
        Device::Cuda(i) => format!("cuda:{i}"),
        _ => "cpu".into(),
    }
}

/// Waits for the device's queued work (timings of CUDA steps).
pub fn sync(d: Device) {
    if let Device::Cuda(i) = d {
        tch::Cuda::synchronize(i as i64);
    }
}

/// The figures of `rlal bench search`.
#[derive(serde::Serialize)]
pub struct SearchReport {
    pub recipe: String,
    pub model: String,
    pub engine: String,
    pub device: String,
    pub threads: i32,
    pub train_images: usize,
    pub reward_images: usize,
    pub reward_batch_size: usize,
    pub bn_samples: usize,
    /// Weight training (forward, cross-entropy + β·L_align, backward, SGD, data loading
    /// with augmentation), images/s: over two windows of `--train-batches`, one before
    /// and one after the episodes, so that a drift of the machine's speed affects
    /// training and scoring alike.
    pub train_images_per_s: f64,
    /// The two windows' rates, images/s.
    pub train_images_per_s_windows: [f64; 2],
    /// One epoch of weight training at that rate, seconds.
    pub train_epoch_s: f64,
    pub episodes: usize,
    /// Mean MACs of the scored networks / MACs of the full network.
    pub scored_macs_ratio: f64,
    /// Useful multiply-accumulates per second: training (forward + backward = 3 x the
    /// forward MACs) and scoring (the scored networks' MACs, padding not counted), in GMAC/s.
    pub train_gmacs_per_s: f64,
    pub reward_gmacs_per_s: f64,
    /// Episodes per search epoch in the projections (the recipe's P).
    pub episodes_per_epoch: usize,
    /// Per episode, milliseconds: surgery, build, recal, infer, and their total.
    pub episode_ms: EpisodeMs,
    /// Reward-subset images per second of the scoring stage alone.
    pub reward_images_per_s: f64,
    /// Once per search epoch: freezing the weights, seconds.
    pub freeze_s: f64,
    /// Agent updates of one search epoch (`updates-per-epoch` env-model + SAC steps), seconds;
    /// timed as in the last agent epoch (a replay buffer with P episodes of every search epoch).
    pub updates_s: f64,
    /// (episodes + freeze + updates) / training epoch with this recipe's reward subset.
    pub search_share: f64,
    /// The same with a reward subset of `paper_subset` of the training images and P episodes.
    pub search_share_paper: f64,
    /// Of `search_share_paper`, without the agent updates (a fixed cost per epoch that shrinks with larger data).
    pub episodes_share_paper: f64,
    pub paper_subset: f64,
    /// `agent.overlap` on this device: the updates run beside the next epoch's training.
    pub overlap: bool,
    /// With `overlap`: one epoch's agent updates timed beside weight training.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub beside: Option<Beside>,
    /// With `overlap`: the share at the paper's proportions counting the episodes, the
    /// training slowdown while the updates run, and any wait for updates longer than an epoch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub search_share_paper_overlapped: Option<f64>,
}

/// One epoch's agent updates run beside weight training.
#[derive(serde::Serialize)]
pub struct Beside {
    /// Training throughput over the window in which the updates ran, img/s.
    pub train_images_per_s: f64,
    /// The updates' own time beside training, seconds.
    pub updates_s: f64,
    /// Window time beyond what the same images take to train alone, seconds.
    pub extra_s: f64,
}

#[derive(serde::Serialize)]
pub struct EpisodeMs {
    pub surgery: f64,
    pub build: f64,
    pub recal: f64,
    pub infer: f64,
    pub total: f64,
}

/// Measures recipe `r` (`label`: how the report names it).
pub fn run(r: &Recipe, label: &str, o: &SearchBenchOptions) -> Result<SearchReport, SearchError> {
    let (g, an, budget) = prepare(r, None, false)?;
    if r.training.threads > 0 {
        tch::set_num_threads(r.training.threads as i32);
    }
    let device = r.training.device.device().map_err(input)?;
    let SearchData { train, holdout, recal, .. } = search_data(r, &g, &an, device)?;
    let mut net = Net::new(&g, &an, device).context("building the network").map_err(input)?;

    // Weight training: the run's step, data loading included, with the alignment penalty
    // of the search epochs (here towards the uniform policy at the budget).
    let mut tr = trainer(r, &net, &train);
    let align = alignment_target(r, &net, &budget)?;
    let step = Step { align: align.as_ref().map(|(v, b)| (v, *b)), device };
    let mut w = Training { net: &mut net, tr: &mut tr, train: &train, step: &step };
    let before = timed_training(&mut w, o.train_batches)?;
    if before.0 == 0 {
        return Err(input(anyhow::anyhow!("{label}: too few training images for one timed batch")));
    }

    let rset = RewardSet::new(&holdout, w.net)
        .context("caching the reward subset")
        .map_err(job)?
        .with_recalibration(recal);
    let ort_ok = ort_usable(r, device);
    let mut s = Searcher {
        agent: Agent::new(r.agent.clone(), budget.layers.len(), r.training.epochs, r.training.seed),
        rng: Rng::stream(r.training.seed, Stream::BenchSearch),
    };
    let episodes = scored_episodes(r, &budget, &rset, w.net, &mut s, ort_ok, o.episodes)?;
    let after = timed_training(&mut w, o.train_batches)?;
    let train_rate = images_per_s((before.0 + after.0, before.1 + after.1));
    let updates = agent_updates(r, &budget, &mut s, &mut w, o.train_batches, train_rate)?;
    let m = Measured {
        device,
        ort_ok,
        windows: [before, after],
        train_rate,
        train_images: train.num_samples(),
        episodes,
        updates,
    };
    Ok(report(r, label, o, &budget, m))
}

/// Images per second of a window (images, seconds).
fn images_per_s((images, secs): (usize, f64)) -> f64 {
    images as f64 / secs
}

/// The run's optimiser at a constant learning rate (at most 0.05), without warm-up.
fn trainer(r: &Recipe, net: &Net, train: &crate::data::Loader) -> Trainer {
    let mut optim = r.training.optim();
    (optim.lr, optim.warmup_epochs, optim.decay) = (r.training.lr.min(0.05), 0.0, Decay::Constant);
    Trainer::new(net, &optim, 1, train.num_batches())
}

/// With `search.alignment` and β > 0: the alignment target (the uniform policy at the
/// budget) and β.
fn alignment_target(
    r: &Recipe,
    net: &Net,
    budget: &Budget,
) -> Result<Option<(GroupLasso, f64)>, SearchError> {
    if !(r.search.alignment && r.search.beta > 0.0) {
        return Ok(None);
    }
    let ks = reward::keep_sets(net, budget, &reward::uniform_kept(budget), r.search.criterion.p())
        .context("the alignment target")
        .map_err(job)?;
    Ok(Some((net.group_lasso_target(&reward::keep_vectors(net, &ks)), r.search.beta)))
}

/// The benchmark's agent and its random stream.
struct Searcher {
    agent: Agent,
    rng: Rng,
}

/// What the episodes' phase measured.
struct Episodes {
    /// Freezing the weights, seconds.
    freeze_s: f64,
    /// Mean MACs of the timed episodes' networks.
    mean_macs: f64,
    /// The timed episodes' time by stage.
    stages: RewardStages,
}

/// Episodes: random actions (the buffer epochs' distribution) on the frozen weights, one
/// untimed warm-up then `timed` ones.
fn scored_episodes(
    r: &Recipe,
    budget: &Budget,
    rset: &RewardSet,
    net: &mut Net,
    s: &mut Searcher,
    ort_ok: bool,
    timed: usize,
) -> Result<Episodes, SearchError> {
    let tf = Instant::now();
    let frozen = freeze(r, net, budget, ort_ok).context("freezing the weights").map_err(job)?;
    let freeze_s = tf.elapsed().as_secs_f64();
    let p = r.search.criterion.p();
    let episodes: Vec<_> =
        (0..=timed).map(|_| s.agent.episode(budget, 0, &mut s.rng, Explore::Random)).collect();
    for (i, ep) in episodes.iter().enumerate() {
        if i == 1 {
            let _ = rset.take_stages(); // the first episode is a warm-up
        }
        let acc = rset
            .reward_with(net, frozen.as_ref(), budget, &ep.kept, p)
            .context("episode reward")
            .map_err(job)?;
        s.agent.remember(ep, acc as f32);
    }
    let mean_macs = episodes[1..].iter().map(|e| e.macs as f64).sum::<f64>()
        / (episodes.len() - 1).max(1) as f64;
    Ok(Episodes { freeze_s, mean_macs, stages: rset.take_stages() })
}

/// What the agent updates' phase measured.
struct Updates {
    /// One search epoch's updates alone, seconds.
    updates_s: f64,
    /// `agent.overlap` on this device.
    overlap: bool,
    /// With `overlap`: the updates beside weight training.
    beside: Option<Beside>,
}

/// One search epoch's agent updates on a replay buffer as in the last agent epoch: alone,
/// and with `agent.overlap` beside weight training (see [`updates_beside_training`]).
fn agent_updates(
    r: &Recipe,
    budget: &Budget,
    s: &mut Searcher,
    w: &mut Training,
    min_batches: usize,
    train_rate: f64,
) -> Result<Updates, SearchError> {
    fill_replay_as_in_last_agent_epoch(r, budget, &mut s.agent, &mut s.rng);
    let tu = Instant::now();
    s.agent.update(&mut s.rng).map_err(job)?;
    let updates_s = tu.elapsed().as_secs_f64();
    let overlap = r.agent.overlap.resolve(w.step.device);
    let beside = if overlap {
        Some(updates_beside_training(r, &mut s.agent, &mut s.rng, w, min_batches, train_rate)?)
    } else {
        None
    };
    Ok(Updates { updates_s, overlap, beside })
}

/// What the phases of [`run`] measured.
struct Measured {
    device: Device,
    ort_ok: bool,
    /// The training windows before and after the episodes: images, seconds.
    windows: [(usize, f64); 2],
    /// Over both windows, images/s.
    train_rate: f64,
    train_images: usize,
    episodes: Episodes,
    updates: Updates,
}

/// The figures of the report from the measurements, projected to the paper's proportions.
fn report(
    r: &Recipe,
    label: &str,
    o: &SearchBenchOptions,
    budget: &Budget,
    m: Measured,
) -> SearchReport {
    let st = &m.episodes.stages;
    let (freeze_s, updates_s) = (m.episodes.freeze_s, m.updates.updates_s);
    let n = st.episodes.max(1) as f64;
    let full_macs = budget.cost.full_macs().max(1) as f64;
    let scored_macs_ratio = m.episodes.mean_macs / full_macs;
    let ep_s = st.total() / n;
    let per_image = st.infer / n / st.images.max(1) as f64;
    let fixed = ep_s - st.infer / n;
    let n_train = m.train_images;
    let train_epoch_s = n_train as f64 / m.train_rate;
    let pe = r.search.episodes_per_epoch as f64;
    let search_share = (pe * ep_s + freeze_s + updates_s) / train_epoch_s;
    let episodes_paper = pe * (fixed + per_image * o.paper_subset * n_train as f64) + freeze_s;
    let overlapped = m.updates.beside.as_ref().map(|b| {
        (episodes_paper + b.extra_s + (b.updates_s - train_epoch_s).max(0.0)) / train_epoch_s
    });
    SearchReport {
        recipe: label.to_string(),
        model: r.model.as_ref().map(|m| m.display().to_string()).unwrap_or_default(),
        engine: engine_name(r, m.device, m.ort_ok),
        device: device_name(m.device),
        threads: tch::get_num_threads(),
        train_images: n_train,
        reward_images: st.images,
        reward_batch_size: r.search.reward_batch_size,
        bn_samples: r.search.reward_bn_samples,
        train_images_per_s: m.train_rate,
        train_images_per_s_windows: m.windows.map(images_per_s),
        train_epoch_s,
        episodes: st.episodes,
        scored_macs_ratio,
        train_gmacs_per_s: m.train_rate * 3.0 * full_macs / 1e9,
        reward_gmacs_per_s: scored_macs_ratio * full_macs / per_image.max(1e-12) / 1e9,
        episodes_per_epoch: r.search.episodes_per_epoch,
        episode_ms: episode_ms(st),
        reward_images_per_s: 1.0 / per_image.max(1e-12),
        freeze_s,
        updates_s,
        search_share,
        search_share_paper: (episodes_paper + updates_s) / train_epoch_s,
        episodes_share_paper: episodes_paper / train_epoch_s,
        paper_subset: o.paper_subset,
        overlap: m.updates.overlap,
        search_share_paper_overlapped: overlapped,
        beside: m.updates.beside,
    }
}

/// The reward engine as reports name it, with a note when ONNX Runtime fell back.
fn engine_name(r: &Recipe, device: Device, ort_ok: bool) -> String {
    format!("{:?}", r.search.reward_engine.resolve(device, ort_ok)).to_lowercase()
        + if r.search.reward_engine == crate::search::recipe::RewardEngine::Ort && !ort_ok {
            " (fell back to libtorch)"
        } else {
            ""
        }
}

/// Milliseconds per episode by stage.
fn episode_ms(st: &RewardStages) -> EpisodeMs {
    let n = st.episodes.max(1) as f64;
    let ms = |x: f64| 1000.0 * x / n;
    EpisodeMs {
        surgery: ms(st.surgery),
        build: ms(st.build),
        recal: ms(st.recal),
        infer: ms(st.infer),
        total: 1000.0 * (st.total() / n),
    }
}

/// One training step of a search epoch: alignment target and β, device.
struct Step<'a> {
    align: Option<(&'a GroupLasso, f64)>,
    device: tch::Device,
}

/// Trains `batches` batches of the epoch-0 order (after 2 untimed ones) with the run's
/// step, data loading included: images and seconds.
fn timed_training(w: &mut Training, batches: usize) -> Result<(usize, f64), SearchError> {
    let (mut seen, mut secs) = (0usize, 0f64);
    let mut t0 = Instant::now();
    for (i, b) in w.train.epoch(0).enumerate().take(batches + 2) {
        let b = b.context("loading a training batch").map_err(job)?;
        let n = train_batch(w.net, w.tr, &b, w.step)?;
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
    b: &crate::data::Batch,
    step: &Step,
) -> Result<usize, SearchError> {
    let mut pen = |n: &Net| Ok(step.align.map(|(g, beta)| g.penalty(n) * beta));
    tr.step_batch(net, b, Some(&mut pen))
        .map_err(|e| job(anyhow::anyhow!("training step: {e}")))?;
    sync(step.device);
    Ok(b.labels.len())
}

/// The replay buffer as in the last agent epoch: P random episodes of every search epoch
/// so far (rewards drawn, not evaluated), at least one agent batch, so the environment
/// model's GRU runs over all of those epochs as it does late in a run.
fn fill_replay_as_in_last_agent_epoch(
    r: &Recipe,
    budget: &Budget,
    agent: &mut Agent,
    rng: &mut Rng,
) {
    let last = r.search.agent_epochs.max(1) - 1;
    for t in r.search.weights_only_epochs.min(last)..=last {
        for _ in 0..r.search.episodes_per_epoch {
            let ep = agent.episode(budget, t, rng, Explore::Random);
            let reward = rng.uniform_f32();
            agent.remember(&ep, reward);
        }
    }
    while agent.replay.len() < agent.cfg.batch_size {
        let ep = agent.episode(budget, last, rng, Explore::Random);
        let reward = rng.uniform_f32();
        agent.remember(&ep, reward);
    }
}

/// Weight training as in a search epoch: the network, its trainer, data and step.
struct Training<'a, 'b> {
    net: &'a mut Net,
    tr: &'a mut Trainer,
    train: &'a crate::data::Loader,
    step: &'a Step<'b>,
}

/// With `agent.overlap`: one epoch's updates beside weight training, which goes on (at
/// least `min_batches` batches) until they are done; the extra time over the same images
/// trained alone (at `train_rate`) is what the overlapped updates cost.
fn updates_beside_training(
    r: &Recipe,
    agent: &mut Agent,
    rng: &mut Rng,
    w: &mut Training,
    min_batches: usize,
    train_rate: f64,
) -> Result<Beside, SearchError> {
    let t0 = Instant::now();
    let (trained, joined) = std::thread::scope(|s| {
        let threads = r.training.threads;
        let h = s.spawn(move || {
            if threads > 0 {
                tch::set_num_threads(threads as i32);
            }
            let tu = Instant::now();
            agent.update(rng).map(|_| tu.elapsed().as_secs_f64())
        });
        let trained = (|| -> Result<usize, SearchError> {
            let (mut batches, mut images) = (0usize, 0usize);
            for e in 0u64.. {
                for b in w.train.epoch(e) {
                    images += train_batch(
                        w.net,
                        w.tr,
                        &b.context("loading a training batch").map_err(job)?,
                        w.step,
                    )?;
                    batches += 1;
                    // Finished (or panicked: then the join reports it).
                    if batches >= min_batches && h.is_finished() {
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
        joined.map_err(|_| job(anyhow::anyhow!("the agent updates panicked")))?.map_err(job)?;
    let images = trained?;
    Ok(Beside {
        train_images_per_s: images as f64 / wall,
        updates_s: updates,
        extra_s: (wall - images as f64 / train_rate).max(0.0),
    })
}
