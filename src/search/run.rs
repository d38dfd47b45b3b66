//! Algorithm 1 (joint training and pruning) followed by surgery, fine-tuning,
//! export and validation. See `docs/METHOD.md` for the mapping to the paper.
//!
//! Every completed epoch of joint training is checkpointed atomically into
//! `<run>/checkpoints/` (weights, SGD momenta, agent networks and their Adam
//! moments in one tensor file; epoch, step, RNG, best policy, replay buffer in
//! `search.json`, which names the complete tensor file); fine-tuning
//! checkpoints into `<run>/checkpoints/finetune/`. `--resume` continues from
//! there and reaches the same result as an uninterrupted run (same seed,
//! device and thread count).
use super::recipe::{Phase, Policy, Recipe, RewardEngine, SearchSpace};
use super::report::{self, EpochRow, LayerChoice};
use super::reward::{self, RewardSet};
use super::SearchError;
use super::{latency, plot};
use crate::agent::{Agent, Budget, Explore, Metric, Replay};
use crate::analysis::{self, Analysis};
use crate::data::{Loader, LoaderConfig};
use crate::ir::Graph;
use crate::rng::Rng;
use crate::train::checkpoint::{self, fingerprint, CheckpointState};
use crate::train::masks::GroupLasso;
use crate::train::trainer::{self, TrainConfig, Trainer};
use crate::train::{evaluate, setup, Net};
use anyhow::{anyhow, Context};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;
use tch::Tensor;

/// Where and how verbosely to run.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// The run directory (default `runs/<name>`).
    pub run_dir: PathBuf,
    pub progress: bool,
    /// Continue from the run directory's checkpoints (a fresh start when there are none).
    pub resume: bool,
}

pub use super::best::Best;
use super::best::{Incumbents, Selection};

/// `checkpoints/search.json`: everything of the joint phase that is not a tensor.
#[derive(Serialize, Deserialize)]
struct SearchState {
    /// Joint-training epochs completed.
    epoch: usize,
    step: usize,
    rng: [u64; 4],
    /// The architectures the selection rule keeps (best first).
    incumbents: Incumbents,
    replay: Replay,
    search_seconds: f64,
    elapsed_seconds: f64,
    /// Tensor file (net weights `net.*`, SGD momenta `sgd.*`, agent `agent.*`), relative to the checkpoint directory.
    tensors: String,
    /// Fingerprint of the network the weights belong to.
    graph: String,
    /// Ranks of the job that wrote it (a resume needs the same).
    #[serde(default = "one")]
    world: usize,
}

fn one() -> usize {
    1
}

const CKPT: &str = "checkpoints";

impl CheckpointState for SearchState {
    fn tensors(&self) -> &str {
        &self.tensors
    }
    fn graph(&self) -> &str {
        &self.graph
    }
}

/// File name of the joint phase's state in the checkpoint directory.
const SEARCH_STATE: &str = "search.json";

/// Restores the joint phase from `dir` (None: no checkpoint there).
fn load_checkpoint(
    dir: &Path,
    net: &mut Net,
    tr: &mut Trainer,
    agent: &mut Agent,
) -> anyhow::Result<Option<SearchState>> {
    let Some((st, all)) = checkpoint::load::<SearchState>(dir, SEARCH_STATE, net)? else {
        return Ok(None);
    };
    let p = dir.join(&st.tensors);
    tr.restore(net, &all, &p)?;
    tr.step = st.step;
    agent.load_tensors(&all).map_err(|m| anyhow!("{}: {m}", p.display()))?;
    agent.replay = st.replay.clone();
    Ok(Some(st))
}

fn reanalyse(g: &Graph, input_shape: Option<&[usize]>) -> anyhow::Result<Analysis> {
    let facts =
        crate::ir::infer::infer(g, input_shape).map_err(|e| anyhow!("shape inference: {e}"))?;
    Ok(Analysis::new(g, facts, Vec::new()))
}

/// The data of a search: the weight-training images, the held-out reward subset (eval
/// transform, never trained on), the test split, and for adaptive BN a fixed batch of
/// training images on the network's device (the first of the seeded epoch-0 order).
pub struct SearchData {
    /// The graph input's non-batch dims (C, H, W; H, W, C for a channels-last model).
    pub dims: [usize; 3],
    pub train: Loader,
    pub holdout: Loader,
    pub test: Loader,
    pub recal: Option<Tensor>,
}

/// The loaders and the adaptive-BN batch of recipe `r` for the imported graph.
pub fn search_data(
    r: &Recipe,
    g: &Graph,
    an: &Analysis,
    device: tch::Device,
) -> Result<SearchData, SearchError> {
    let input = SearchError::Input;
    let data = r.data.clone().ok_or_else(|| input(anyhow!("no dataset")))?;
    let model = setup::model_input(g, an).map_err(|e| input(e.into()))?;
    let (train, holdout_idx, test) = setup::loaders(
        &r.training,
        r.search.reward_samples,
        &data,
        model,
        setup::num_classes(g, an),
    )
    .map_err(|e| input(e.into()))?;
    // The held-out and adaptive-BN images: the test split's transform (normalisation
    // and the model's layout, no augmentation).
    let eval = test.transform().clone();
    let hcfg = LoaderConfig {
        batch_size: r.search.reward_batch_size,
        shuffle: false,
        drop_last: false,
        seed: r.training.seed,
        workers: setup::workers(r.training.workers, r.training.threads),
        prefetch: 4,
    };
    let holdout = Loader::new(train.dataset().clone(), holdout_idx, eval.clone(), hcfg)
        .map_err(|e| input(e.into()))?;
    let recal = if r.search.reward_bn_samples > 0 {
        let idx: Vec<usize> = train.order(0).into_iter().take(r.search.reward_bn_samples).collect();
        let n = idx.len();
        let l = Loader::new(
            train.dataset().clone(),
            idx,
            eval,
            LoaderConfig {
                batch_size: n.max(1),
                shuffle: false,
                drop_last: false,
                seed: r.training.seed,
                workers: 0,
                prefetch: 1,
            },
        )
        .map_err(|e| input(e.into()))?;
        let b = l.batch(0, 0).map_err(|e| input(e.into()))?;
        Some(trainer::batch_on(&b, device).0)
    } else {
        None
    };
    Ok(SearchData { dims: model.dims, train, holdout, test, recal })
}

/// Whether ONNX Runtime can score the rewards on `device`: the engine may use it
/// (`ort`, or `auto` on the CPU) and libonnxruntime loads. Without it the same
/// narrow networks run in libtorch (`reward-engine: ort` says so with a warning).
pub fn ort_usable(r: &Recipe, device: tch::Device) -> bool {
    if !r.search.reward_engine.wants_ort(device) {
        return false;
    }
    match crate::validate::ort::OrtModel::probe() {
        Ok(()) => true,
        Err(e) => {
            if r.search.reward_engine == RewardEngine::Ort {
                eprintln!("warning: reward-engine ort: {e}; computing rewards in libtorch instead (reward-engine pruned)");
            }
            false
        }
    }
}

/// The frozen weights of one epoch's episodes for the recipe's reward engine (`None`: masked rewards).
pub fn freeze(
    r: &Recipe,
    net: &Net,
    budget: &Budget,
    ort_ok: bool,
) -> Result<Option<reward::Frozen>, crate::train::TrainError> {
    match r.search.reward_engine.resolve(net.device(), ort_ok) {
        e @ (RewardEngine::Pruned | RewardEngine::Ort) => {
            let mut f = reward::Frozen::new(
                net,
                budget,
                r.search.criterion.p(),
                r.input_shape.as_deref(),
                r.search.reward_bn_samples > 0,
            )?;
            if e == RewardEngine::Ort {
                let sessions = if r.training.threads > 0 {
                    r.training.threads
                } else {
                    std::thread::available_parallelism().map_or(1, |n| n.get())
                };
                f.ort = Some(reward::OrtScoring {
                    sessions,
                    batch: r.search.reward_ort_batch,
                    pad: r.search.reward_ort_pad,
                });
            }
            Ok(Some(f))
        }
        RewardEngine::Masked | RewardEngine::Auto => Ok(None),
    }
}

/// File name of a latency budget's table in the run directory.
pub const LATENCY_TABLE: &str = "latency_table.json";

/// Imports the model (with `insert-bn`) and checks the budget: input errors,
/// but for a latency budget's table, which is read from `table` when that file
/// exists (a resumed run) and measured otherwise.
pub fn prepare(
    r: &Recipe,
    table: Option<&Path>,
    progress: bool,
) -> Result<(Graph, Analysis, Budget), SearchError> {
    let model = r.model.clone().ok_or_else(|| SearchError::Input(anyhow!("no model")))?;
    let (mut g, mut an) =
        analysis::import(&model, &r.import_options()).map_err(|e| SearchError::Input(e.into()))?;
    setup::apply_insert_bn(&mut g, &mut an, r.training.insert_bn, r.input_shape.as_deref())
        .map_err(|e| SearchError::Input(e.into()))?;
    let bad_budget =
        |e: crate::agent::BudgetError| SearchError::Input(anyhow!("{}: {e}", model.display()));
    let layers = match r.search_space {
        SearchSpace::All => an.layers.clone(),
        SearchSpace::Blocks => analysis::block_layers(&g, &an),
    };
    let mut budget = if r.metric() == Metric::Latency {
        let t = match table.filter(|p| p.exists()) {
            Some(p) => latency::load(p).map_err(SearchError::Job)?,
            None => latency::measure(
                &g,
                &an,
                r.input_shape.as_deref(),
                r.latency_batch,
                r.training.threads,
                latency::Effort::default(),
                progress,
            )
            .map_err(SearchError::Job)?,
        };
        Budget::with_latency(an.cost.clone(), layers, t, r.ratio(), r.max_prune_ratio)
            .map_err(bad_budget)?
    } else {
        Budget::with_metric(an.cost.clone(), layers, r.metric(), r.ratio(), r.max_prune_ratio)
            .map_err(bad_budget)?
    };
    budget.set_multiple(r.channel_multiple).map_err(bad_budget)?;
    Ok((g, an, budget))
}

/// A finished epoch whose agent updates run beside the next epoch's weight training
/// (`agent.overlap`): its metrics row and checkpoint wait for them. (The best policy
/// needs no copy: only the next epoch's episodes change it.)
struct Pending {
    /// Complete but for the updates' statistics and their wait.
    row: EpochRow,
    episodes_seconds: f64,
    /// Weights and SGD momenta at the end of the epoch (copies).
    snapshot: Vec<(String, Tensor)>,
    step: usize,
    elapsed: f64,
}

/// Writes a finished epoch: its metrics row (and progress line), its checkpoint
/// (`named`: the network's tensors at the end of that epoch) and the plots.
#[allow(clippy::too_many_arguments)]
fn close_epoch(
    o: &RunOptions,
    epochs: usize,
    ckpt: &Path,
    metrics: Option<&mut std::fs::File>,
    rows: &mut Vec<EpochRow>,
    row: EpochRow,
    mut named: Vec<(String, Tensor)>,
    agent: &Agent,
    st: &SearchState,
) -> Result<(), SearchError> {
    let job = SearchError::Job;
    // Rank 0 writes the job's files (the other ranks hold the same state).
    let Some(metrics) = metrics else { return Ok(()) };
    writeln!(metrics, "{}", serde_json::to_string(&row).expect("metrics serialise"))
        .context("writing metrics.jsonl")
        .map_err(job)?;
    metrics.flush().context("writing metrics.jsonl").map_err(job)?;
    if o.progress {
        crate::util::progress_done(format_args!("{}", row.line(epochs)));
    }
    rows.push(row);
    named.extend(agent.tensors());
    checkpoint::save(ckpt, SEARCH_STATE, named, st).map_err(|e| job(e.into()))?;
    plot::write_search(&o.run_dir, rows).map_err(job)
}

/// The rewards of an epoch's episodes (`score(i, kept)`): one process scores all; the
/// ranks of a multi-rank job score every `world`-th episode each (rank r: episodes
/// r, r + world, ...) and sum the rewards, so every rank ends with all of them.
fn score_episodes(
    episodes: &[(Vec<usize>, Option<crate::agent::Episode>)],
    mut score: impl FnMut(usize, &[usize]) -> Result<f64, crate::train::TrainError>,
) -> anyhow::Result<Vec<f64>> {
    let (rank, world) = crate::dist::parallel().map_or((0, 1), |w| (w.rank, w.size));
    let mut accs = vec![0.0; episodes.len()];
    for (i, (kept, _)) in episodes.iter().enumerate().skip(rank).step_by(world) {
        accs[i] = score(i, kept)?;
    }
    crate::dist::sum_f64(&mut accs)?;
    Ok(accs)
}

/// Opens `metrics.jsonl` for appending (`keep`: the lines a resumed checkpoint covers) or empty.
fn open_metrics(path: &Path, keep: bool) -> anyhow::Result<std::fs::File> {
    let f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    if !keep {
        f.set_len(0).with_context(|| format!("truncating {}", path.display()))?;
    }
    Ok(f)
}

/// [`prepare`] for a run, and its directory (rank 0): a fresh run drops stale checkpoints
/// and report; the recipe and a latency budget's table are written. In a multi-rank job,
/// rank 0 measures the latency table and the others read it, so every rank has the same budget.
fn prepare_run(r: &Recipe, o: &RunOptions) -> Result<(Graph, Analysis, Budget), SearchError> {
    let job = SearchError::Job;
    let table = o.run_dir.join(LATENCY_TABLE);
    let barrier = || match crate::dist::parallel() {
        Some(w) => w.barrier().map_err(|e| job(e.into())),
        None => Ok(()),
    };
    if !crate::dist::is_root() {
        barrier()?;
        return prepare(r, Some(&table), false);
    }
    let prepared = prepare(r, o.resume.then_some(table.as_path()), o.progress);
    let written = prepared.as_ref().ok().map(|(_, _, budget)| {
        std::fs::create_dir_all(&o.run_dir)
            .with_context(|| format!("creating {}", o.run_dir.display()))?;
        if !o.resume {
            // A fresh run never continues from stale checkpoints of an earlier run in the same directory.
            let _ = std::fs::remove_dir_all(o.run_dir.join(CKPT));
            let _ = std::fs::remove_file(o.run_dir.join("report.json"));
        }
        if let Some(t) = &budget.latency {
            latency::save(t, &table)?;
        }
        let yaml = serde_yaml::to_string(r).context("serialising the recipe")?;
        crate::util::write_atomic(&o.run_dir.join("recipe.yaml"), yaml.as_bytes())
            .context("writing recipe.yaml")
    });
    if let Some(Err(e)) = written {
        return Err(job(e));
    }
    barrier()?;
    prepared
}

/// The architecture to prune to after the joint phase: the best incumbent, with
/// `selection: rescore` scored again on the final weights (and whether that
/// changed the choice); baselines without episodes (none kept) take their rule's
/// architecture on the final weights.
fn choose(
    r: &Recipe,
    net: &mut Net,
    budget: &Budget,
    rset: &RewardSet,
    mut inc: Incumbents,
    ort_ok: bool,
) -> Result<(Best, Option<bool>), SearchError> {
    let job = SearchError::Job;
    let p = r.search.criterion.p();
    let mut changed = None;
    if r.search.selection == Selection::Rescore
        && matches!(r.policy, Policy::Rlal | Policy::Random)
        && !inc.items.is_empty()
    {
        let frozen = freeze(r, net, budget, ort_ok).map_err(|e| job(e.into()))?;
        changed = Some(
            inc.rescore(r.training.epochs, |kept| {
                rset.reward_with(net, frozen.as_ref(), budget, kept, p)
            })
            .map_err(|e| job(e.into()))?,
        );
    }
    if let Some(b) = inc.best() {
        return Ok((b.clone(), changed));
    }
    let kept = match r.policy {
        Policy::L1Global => reward::l1_global_kept(net, budget, p).map_err(|e| job(e.into()))?,
        _ => reward::uniform_kept(budget),
    };
    let acc = rset.reward(net, budget, &kept, p).map_err(|e| job(e.into()))?;
    Ok((Best { reward: acc, kept, epoch: r.training.epochs }, changed))
}

/// Runs a whole pruning job; returns the report (also written to the run directory),
/// None on the ranks but rank 0 of a multi-rank job. The phases are the methods of
/// [`Job`]: prepare → joint epochs (Alg. 1) → choose the architecture → surgery and
/// fine-tuning → export and validation.
pub fn run(r: &Recipe, o: &RunOptions) -> Result<Option<report::Report>, SearchError> {
    if o.resume {
        if let Some(rep) = finished_report(o) {
            return Ok(Some(rep));
        }
    }
    let mut job = Job::prepare(r, o)?;
    job.joint()?;
    let chosen = job.choose()?;
    let tuned = job.finetune(&chosen)?;
    if !job.root {
        // Rank 0 exports, validates and reports.
        return Ok(None);
    }
    job.export(chosen, tuned).map(Some)
}

/// The report of a run that already completed (a `--resume` of it has nothing to do).
fn finished_report(o: &RunOptions) -> Option<report::Report> {
    let text = std::fs::read_to_string(o.run_dir.join("report.json")).ok()?;
    let rep = serde_json::from_str::<report::Report>(&text).ok()?;
    if o.progress {
        eprintln!("{} is complete; nothing to resume", o.run_dir.display());
    }
    Some(rep)
}

/// A pruning job between its phases: the recipe, the data, the network with its
/// trainer, the agent and the incumbents, and the bookkeeping of the epochs.
struct Job<'a> {
    r: &'a Recipe,
    o: &'a RunOptions,
    /// Rank 0 (or the only process): writes the run directory.
    root: bool,
    device: tch::Device,
    dims: [usize; 3],
    budget: Budget,
    train: Loader,
    test: Loader,
    rset: RewardSet,
    /// The adaptive-BN batch (also kept inside `rset`).
    recal_x: Option<Tensor>,
    ort_ok: bool,
    net: Net,
    tr: Trainer,
    agent: Agent,
    rng: Rng,
    inc: Incumbents,
    ckpt: PathBuf,
    metrics: Option<std::fs::File>,
    rows: Vec<EpochRow>,
    /// First epoch to run (after a resumed checkpoint).
    start: usize,
    t_search: f64,
    /// Seconds of the run before this process (a resumed run).
    elapsed0: f64,
    t_all: Instant,
}

/// The chosen architecture: the best policy, its layers and whether re-scoring changed it.
struct Chosen {
    best: Best,
    changed: Option<bool>,
    layers: Vec<LayerChoice>,
    /// Test accuracy of the masked (or narrow, recalibrated) sub-network before fine-tuning.
    masked_acc: f64,
    /// The trained full network as a graph.
    trained: Graph,
}

/// The pruned network after fine-tuning.
struct Tuned {
    net: Net,
    seconds: f64,
}

impl<'a> Job<'a> {
    /// Imports the model, checks the budget, opens the data, builds the network, its
    /// trainer and the agent, and restores them from a checkpoint on `--resume`.
    fn prepare(r: &'a Recipe, o: &'a RunOptions) -> Result<Job<'a>, SearchError> {
        let t_all = Instant::now();
        let (input, job) = (SearchError::Input, SearchError::Job);
        let (g, an, budget) = prepare_run(r, o)?;
        let layers = budget.layers.len();
        if r.training.threads > 0 {
            tch::set_num_threads(r.training.threads as i32);
        }
        let device = r.training.device.device().map_err(|e| input(e.into()))?;
        let SearchData { dims, train, holdout, test, recal } = search_data(r, &g, &an, device)?;
        // Data-parallel ranks train on their shares of every global batch.
        let train = trainer::shard(train).map_err(|e| input(e.into()))?;
        let mut net = Net::new(&g, &an, device).context("building the network").map_err(input)?;
        net.set_compute(r.training.precision, r.training.channels_last);
        let tr = Trainer::new(&net, &r.training.optim(), r.training.epochs, train.num_batches());
        let recal_x = recal.as_ref().map(Tensor::shallow_clone);
        let rset =
            RewardSet::new(&holdout, &net).map_err(|e| job(e.into()))?.with_recalibration(recal);
        let mut j = Job {
            r,
            o,
            root: crate::dist::is_root(),
            device,
            dims,
            ort_ok: ort_usable(r, device),
            budget,
            train,
            test,
            rset,
            recal_x,
            net,
            tr,
            agent: Agent::new(r.agent.clone(), layers, r.training.epochs, r.training.seed),
            rng: Rng::new(r.training.seed).fork(0x5ea4c4),
            inc: Incumbents::default(),
            ckpt: o.run_dir.join(CKPT),
            metrics: None,
            rows: Vec::new(),
            start: 0,
            t_search: 0.0,
            elapsed0: 0.0,
            t_all,
        };
        if o.resume {
            j.resume()?;
        }
        if j.root {
            j.metrics = Some(open_metrics(&j.metrics_path(), j.start > 0).map_err(job)?);
        }
        if o.progress {
            eprintln!("{}", j.headline(holdout.num_samples()));
        }
        Ok(j)
    }

    fn metrics_path(&self) -> PathBuf {
        self.o.run_dir.join("metrics.jsonl")
    }

    /// Continues from the run directory's checkpoint, when there is one.
    fn resume(&mut self) -> Result<(), SearchError> {
        let (input, job) = (SearchError::Input, SearchError::Job);
        let loaded = load_checkpoint(&self.ckpt, &mut self.net, &mut self.tr, &mut self.agent)
            .map_err(input)?;
        let Some(st) = loaded else { return Ok(()) };
        let state_file = self.ckpt.join(SEARCH_STATE);
        let world = crate::dist::world().map_or(1, |w| w.size);
        if st.world != world {
            return Err(input(anyhow!(
                "{}: the run was checkpointed with {} rank(s) and is resumed with {world}; resume with the same world size (the episodes' split and the data shards depend on it)",
                state_file.display(),
                st.world
            )));
        }
        (self.start, self.t_search, self.elapsed0) =
            (st.epoch, st.search_seconds, st.elapsed_seconds);
        self.rng = Rng::from_state(st.rng)
            .ok_or_else(|| input(anyhow!("{}: invalid RNG state", state_file.display())))?;
        self.inc = st.incumbents;
        if self.root {
            let path = self.metrics_path();
            let lines = crate::util::truncate_lines(&path, self.start)
                .with_context(|| format!("writing {}", path.display()))
                .map_err(job)?;
            self.rows = lines.iter().filter_map(|l| serde_json::from_str(l).ok()).collect();
        }
        if self.o.progress {
            eprintln!(
                "resuming {} after epoch {} of {}",
                self.o.run_dir.display(),
                self.start,
                self.r.training.epochs
            );
        }
        Ok(())
    }

    /// The run's first line: model, budget, policy, data and where rewards are computed.
    fn headline(&self, reward_images: usize) -> String {
        let (r, b) = (self.r, &self.budget);
        format!(
            "pruning {} to {:.1}% of {} {} (target {}) with policy {}: {} layers (search space {:?}), {} train / {} reward / {} test images, {} epochs on {:?}, rewards in {}",
            r.model.as_ref().map(|p| p.display().to_string()).unwrap_or_default(),
            100.0 * r.ratio(),
            b.full(),
            b.metric.name(),
            b.target,
            r.policy.name(),
            b.layers.len(),
            r.search_space,
            self.train.num_samples(),
            reward_images,
            self.test.num_samples(),
            r.training.epochs,
            self.device,
            match r.search.reward_engine.resolve(self.device, self.ort_ok) {
                RewardEngine::Ort => "ONNX Runtime (narrow networks)",
                RewardEngine::Pruned => "libtorch (narrow networks)",
                _ => "libtorch (masked full network)",
            }
        )
    }

    /// The state a checkpoint at the end of epoch `epoch` (1-based) holds.
    fn state(&self, epoch: usize, step: usize, elapsed: f64) -> SearchState {
        SearchState {
            epoch,
            step,
            rng: self.rng.state(),
            incumbents: self.inc.clone(),
            replay: self.agent.replay.clone(),
            search_seconds: self.t_search,
            elapsed_seconds: elapsed,
            tensors: format!("search-e{epoch}.ot"),
            graph: fingerprint(&self.net),
            world: crate::dist::world().map_or(1, |w| w.size),
        }
    }

    /// Writes a finished epoch's row, checkpoint (`named`: the trainer's tensors at the
    /// end of that epoch) and plots.
    fn close(
        &mut self,
        row: EpochRow,
        named: Vec<(String, Tensor)>,
        st: &SearchState,
    ) -> Result<(), SearchError> {
        close_epoch(
            self.o,
            self.r.training.epochs,
            &self.ckpt,
            self.metrics.as_mut(),
            &mut self.rows,
            row,
            named,
            &self.agent,
            st,
        )
    }

    /// Alg. 1: the joint epochs of weight training and search.
    fn joint(&mut self) -> Result<(), SearchError> {
        // An epoch whose agent updates run beside the next epoch's weight training.
        let mut pending: Option<Pending> = None;
        for t in self.start..self.r.training.epochs {
            pending = self.epoch(t, pending)?;
        }
        debug_assert!(pending.is_none(), "the last epoch never defers its updates");
        Ok(())
    }

    /// v_l of the best policy by current norms (Eq. 10), for the alignment penalty.
    fn alignment_target(&self) -> Result<Option<GroupLasso>, SearchError> {
        let (r, net) = (self.r, &self.net);
        match (self.inc.best(), r.search.alignment && r.search.beta > 0.0) {
            (Some(b), true) => {
                let ks = reward::keep_sets(net, &self.budget, &b.kept, r.search.criterion.p())
                    .map_err(|e| SearchError::Job(e.into()))?;
                Ok(Some(net.group_lasso_target(&reward::keep_vectors(net, &ks))))
            }
            _ => Ok(None),
        }
    }

    /// Joint epoch `t` (0-based): weight training (beside the previous epoch's deferred
    /// agent updates, which then close that epoch), then the epoch's episodes; returns
    /// this epoch when its own updates are deferred.
    fn epoch(
        &mut self,
        t: usize,
        pending: Option<Pending>,
    ) -> Result<Option<Pending>, SearchError> {
        let job = SearchError::Job;
        let t0 = Instant::now();
        let align = self.alignment_target()?;
        let (trained, updated) =
            self.train_beside_updates(t, t0, align.as_ref(), pending.is_some());
        if let Some(pd) = pending {
            let ((st, secs), wait) = updated.ok_or_else(|| {
                job(anyhow!("the agent updates of epoch {} failed (thread panicked)", pd.row.epoch))
            })?;
            let mut row = pd.row;
            row.set_updates(&st, secs, self.r.agent.env_model, self.agent.sac.cfg.alpha);
            row.update_overlapped = true;
            row.search_seconds = pd.episodes_seconds + wait;
            self.t_search += row.search_seconds;
            let state = self.state(row.epoch, pd.step, pd.elapsed);
            self.close(row, pd.snapshot, &state)?;
        }
        // The training time excludes the wait for the updates (counted as the previous epoch's search).
        let sums = trained?;
        let train_secs = sums.seconds;
        let t1 = Instant::now();
        let mut row = EpochRow {
            epoch: t + 1,
            lr: sums.sums.lr,
            train_loss: sums.sums.loss(),
            train_acc: sums.sums.accuracy(),
            // The penalty before β (Eq. 11).
            align_loss: align.is_some().then(|| sums.sums.extra() / self.r.search.beta),
            ..Default::default()
        };
        let defer = self.search(t, &mut row)?;
        let search_secs = t1.elapsed().as_secs_f64();
        row.best_reward = self.inc.best().map(|b| b.reward);
        row.mean_reward = (!row.rewards.is_empty())
            .then(|| row.rewards.iter().sum::<f64>() / row.rewards.len() as f64);
        let r = self.r;
        if t + 1 == r.training.epochs
            || (r.training.eval_every > 0 && (t + 1) % r.training.eval_every == 0)
        {
            row.test_acc =
                Some(evaluate(&self.net, &self.test).map_err(|e| job(e.into()))?.accuracy);
        }
        row.train_seconds = train_secs;
        row.search_seconds = search_secs;
        let elapsed = self.elapsed0 + self.t_all.elapsed().as_secs_f64();
        if defer {
            // Metrics row and checkpoint wait for the updates; the weights of this epoch are kept aside.
            let snapshot = self
                .tr
                .tensors(&self.net)
                .into_iter()
                .map(|(n, t)| (n, tch::no_grad(|| t.detach().copy())))
                .collect();
            let step = self.tr.step;
            return Ok(Some(Pending {
                row,
                episodes_seconds: search_secs,
                snapshot,
                step,
                elapsed,
            }));
        }
        self.t_search += search_secs;
        let state = self.state(t + 1, self.tr.step, elapsed);
        let named = self.tr.tensors(&self.net);
        self.close(row, named, &state)?;
        Ok(None)
    }

    /// Epoch `t`'s weight training; with `updates`, the agent's deferred updates run on
    /// their own thread meanwhile (neither reads what the other writes): the training
    /// sums with the seconds since `t0` at its end, and the updates' statistics, seconds
    /// and the wait for them after training (None when the thread panicked).
    #[allow(clippy::type_complexity)]
    fn train_beside_updates(
        &mut self,
        t: usize,
        t0: Instant,
        align: Option<&GroupLasso>,
        updates: bool,
    ) -> (Result<Trained, SearchError>, Option<((crate::agent::UpdateStats, f64), f64)>) {
        let (r, o) = (self.r, self.o);
        let (agent, rng, tr, net, train) =
            (&mut self.agent, &mut self.rng, &mut self.tr, &mut self.net, &self.train);
        std::thread::scope(|s| {
            let handle = updates.then(|| {
                s.spawn(move || {
                    if r.training.threads > 0 {
                        tch::set_num_threads(r.training.threads as i32);
                    }
                    let tu = Instant::now();
                    let st = agent.update(rng);
                    (st, tu.elapsed().as_secs_f64())
                })
            });
            let label = format!("epoch {}/{} train", t + 1, r.training.epochs);
            let mut pen = |n: &Net| Ok(align.map(|g| g.penalty(n) * r.search.beta));
            let sums = tr
                .epoch(net, train, t, &label, o.progress, Some(&mut pen))
                .map(|sums| Trained { sums, seconds: t0.elapsed().as_secs_f64() })
                .map_err(|e| SearchError::Job(e.into()));
            let tw = Instant::now();
            let updated =
                handle.and_then(|h| h.join().ok()).map(|u| (u, tw.elapsed().as_secs_f64()));
            (sums, updated)
        })
    }

    /// The search of epoch `t` (its phase decides): episodes scored on the frozen
    /// weights, incumbents re-scored, agent updates; true when the updates are deferred
    /// to run beside the next epoch's training.
    fn search(&mut self, t: usize, row: &mut EpochRow) -> Result<bool, SearchError> {
        let job = SearchError::Job;
        let r = self.r;
        let phase = r.phase(t);
        if !phase.searching() {
            row.phase =
                if t < r.search.weights_only_epochs { "warmup".into() } else { "weights".into() };
            return Ok(false);
        }
        row.phase = match r.policy {
            Policy::Rlal | Policy::Random => phase.name().into(),
            _ => "search".into(),
        };
        let episodes = self.episodes(t, phase)?;
        let tf = Instant::now();
        let frozen = freeze(r, &self.net, &self.budget, self.ort_ok).map_err(|e| job(e.into()))?;
        let freeze_secs = tf.elapsed().as_secs_f64();
        let _ = self.rset.take_stages();
        let p = r.search.criterion.p();
        let (net, budget, rset) = (&mut self.net, &self.budget, &self.rset);
        // The incumbents are scored on this epoch's weights before the episodes compete with them.
        if r.search.selection == Selection::Rescore
            && matches!(r.policy, Policy::Rlal | Policy::Random)
        {
            self.inc
                .rescore(t + 1, |kept| rset.reward_with(net, frozen.as_ref(), budget, kept, p))
                .map_err(|e| job(e.into()))?;
        }
        let (n_ep, progress) = (episodes.len(), self.o.progress);
        let mut best_seen = self.inc.best().map_or(0.0, |b| b.reward);
        let accs = score_episodes(&episodes, |i, kept| {
            let acc = rset.reward_with(net, frozen.as_ref(), budget, kept, p)?;
            best_seen = best_seen.max(acc);
            if progress {
                crate::util::progress(format_args!(
                    "epoch {}/{} episodes {} {}/{} reward {:.2}% best {:.2}%                ",
                    t + 1,
                    r.training.epochs,
                    trainer::bar(i + 1, n_ep),
                    i + 1,
                    n_ep,
                    100.0 * acc,
                    100.0 * best_seen
                ));
            }
            Ok(acc)
        })
        .map_err(job)?;
        for ((kept, ep), acc) in episodes.into_iter().zip(accs) {
            if let (Policy::Rlal, Some(ep)) = (r.policy, &ep) {
                self.agent.remember(ep, acc as f32);
            }
            row.rewards.push(acc);
            row.macs.push(self.budget.macs(&kept));
            // Baselines without search follow their current choice; searches keep the best.
            let b = Best { reward: acc, kept, epoch: t + 1 };
            match r.policy {
                Policy::Uniform | Policy::L1Global => self.inc.replace(b),
                _ => {
                    self.inc.offer(b, r.kept_incumbents(), r.search.selection == Selection::Rescore)
                }
            }
        }
        row.reward_stages =
            Some(reward::RewardStages { freeze: freeze_secs, ..self.rset.take_stages() });
        if phase != Phase::Agent {
            return Ok(false);
        }
        if r.agent.overlap.resolve(self.device) && t + 1 < r.training.epochs {
            return Ok(true);
        }
        let tu = Instant::now();
        let st = self.agent.update(&mut self.rng);
        row.set_updates(
            &st,
            tu.elapsed().as_secs_f64(),
            r.agent.env_model,
            self.agent.sac.cfg.alpha,
        );
        Ok(false)
    }

    /// The architectures epoch `t` scores: the agent's (or random) episodes, or the
    /// baseline's single choice.
    #[allow(clippy::type_complexity)]
    fn episodes(
        &mut self,
        t: usize,
        phase: Phase,
    ) -> Result<Vec<(Vec<usize>, Option<crate::agent::Episode>)>, SearchError> {
        let r = self.r;
        Ok(match r.policy {
            Policy::Rlal | Policy::Random => {
                if r.policy == Policy::Rlal {
                    self.agent.begin_epoch(t, r.agent_span());
                }
                let explore = if phase == Phase::Agent { Explore::Policy } else { Explore::Random };
                (0..r.search.episodes_per_epoch)
                    .map(|_| {
                        let ep = self.agent.episode(&self.budget, t, &mut self.rng, explore);
                        (ep.kept.clone(), Some(ep))
                    })
                    .collect()
            }
            Policy::Uniform => vec![(reward::uniform_kept(&self.budget), None)],
            Policy::L1Global => vec![(
                reward::l1_global_kept(&self.net, &self.budget, r.search.criterion.p())
                    .map_err(|e| SearchError::Job(e.into()))?,
                None,
            )],
        })
    }

    /// The architecture to prune to ([`choose`]), its layers (written with the policy and
    /// its plot by rank 0), and its test accuracy before fine-tuning, scored like the rewards.
    fn choose(&mut self) -> Result<Chosen, SearchError> {
        let job = SearchError::Job;
        let (r, p) = (self.r, self.r.search.criterion.p());
        let inc = std::mem::take(&mut self.inc);
        let (best, changed) = choose(r, &mut self.net, &self.budget, &self.rset, inc, self.ort_ok)?;
        let ks =
            reward::keep_sets(&self.net, &self.budget, &best.kept, p).map_err(|e| job(e.into()))?;
        let layers: Vec<LayerChoice> = self
            .budget
            .layers
            .iter()
            .zip(&best.kept)
            .map(|(l, &k)| LayerChoice {
                layer: l.index,
                group: l.group,
                name: l.label().to_string(),
                channels: l.channels,
                kept: k,
                ratio: k as f64 / l.channels as f64,
                kept_channels: ks[&l.group].clone(),
            })
            .collect();
        if self.root {
            report::write_policy(&self.o.run_dir, &best, &layers, &self.budget).map_err(job)?;
            plot::write_layers(&self.o.run_dir, &layers).map_err(job)?;
        }
        let masked_acc = self.masked_accuracy(&best, &ks)?;
        let trained = self.net.export().map_err(|e| job(e.into()))?;
        Ok(Chosen { best, changed, layers, masked_acc, trained })
    }

    /// Test accuracy of sub-network `best` (keep sets `ks`) before fine-tuning.
    fn masked_accuracy(&mut self, best: &Best, ks: &reward::KeepSets) -> Result<f64, SearchError> {
        let job = |e: crate::train::TrainError| SearchError::Job(e.into());
        let r = self.r;
        match &self.recal_x {
            Some(x) => {
                let f = reward::Frozen::new(
                    &self.net,
                    &self.budget,
                    r.search.criterion.p(),
                    r.input_shape.as_deref(),
                    true,
                )
                .map_err(job)?;
                let narrow = f.narrow_recalibrated(&best.kept, x).map_err(job)?;
                Ok(evaluate(&narrow, &self.test).map_err(job)?.accuracy)
            }
            None => {
                self.net.set_masks(&reward::keep_vectors(&self.net, ks)).map_err(job)?;
                let a = evaluate(&self.net, &self.test).map_err(job)?.accuracy;
                self.net.clear_masks();
                Ok(a)
            }
        }
    }

    /// Channel surgery to the chosen architecture and fine-tuning of the pruned network.
    fn finetune(&mut self, c: &Chosen) -> Result<Tuned, SearchError> {
        let job = SearchError::Job;
        let (r, o) = (self.r, self.o);
        let ks = reward::keep_sets(&self.net, &self.budget, &c.best.kept, r.search.criterion.p())
            .map_err(|e| job(e.into()))?;
        let an_t = reanalyse(&c.trained, r.input_shape.as_deref()).map_err(job)?;
        let pruned =
            crate::rewrite::surgery::prune(&c.trained, &an_t, &ks, r.input_shape.as_deref())
                .map_err(|e| job(anyhow!("surgery: {e}")))?;
        let an_p = reanalyse(&pruned.graph, r.input_shape.as_deref()).map_err(job)?;
        let t_ft = Instant::now();
        let mut net = Net::new(&pruned.graph, &an_p, self.device)
            .context("building the pruned network")
            .map_err(job)?;
        net.set_compute(r.training.precision, r.training.channels_last);
        if r.finetune.epochs > 0 {
            if o.progress {
                eprintln!(
                    "fine-tuning the pruned network ({} -> {} MACs) for {} epochs",
                    pruned.macs_before, pruned.macs_after, r.finetune.epochs
                );
            }
            let optim = r.finetune_training().optim();
            let cfg = TrainConfig {
                epochs: r.finetune.epochs,
                optim,
                eval_every: r.training.eval_every,
                checkpoint_dir: Some(self.ckpt.join("finetune")),
                resume: o.resume,
                metrics: Some(o.run_dir.join("finetune.jsonl")),
                progress: o.progress,
                seed: r.training.seed ^ 0xf1e7,
            };
            trainer::train(&mut net, &self.train, Some(&self.test), &cfg)
                .map_err(|e| job(e.into()))?;
        }
        Ok(Tuned { net, seconds: t_ft.elapsed().as_secs_f64() })
    }

    /// Writes unpruned.onnx and pruned.onnx (BN folded unless `keep-bn`), validates them
    /// in ONNX Runtime (accuracy, MACs, latency; the latency budget's estimate against
    /// the measured), and writes the report.
    fn export(self, c: Chosen, tuned: Tuned) -> Result<report::Report, SearchError> {
        let job = SearchError::Job;
        let (r, o) = (self.r, self.o);
        let ft_rows: Vec<serde_json::Value> =
            std::fs::read_to_string(o.run_dir.join("finetune.jsonl"))
                .unwrap_or_default()
                .lines()
                .filter_map(|l| serde_json::from_str(l).ok())
                .collect();
        let ft_rows = if r.finetune.epochs > 0 { ft_rows } else { Vec::new() };
        plot::write_accuracy(&o.run_dir, &self.rows, &ft_rows).map_err(job)?;
        let mut out = tuned.net.export().map_err(|e| job(e.into()))?;
        let mut unpruned = c.trained;
        if !r.training.keep_bn {
            crate::ir::bn::fold_bn(&mut out);
            crate::ir::bn::fold_bn(&mut unpruned);
        }
        crate::onnx::save(&unpruned, &o.run_dir.join("unpruned.onnx"))
            .context("writing unpruned.onnx")
            .map_err(job)?;
        crate::onnx::save(&out, &o.run_dir.join("pruned.onnx"))
            .context("writing pruned.onnx")
            .map_err(job)?;
        let ctx = report::Context {
            recipe: r,
            best: &c.best,
            final_choice_changed: c.changed,
            layers: c.layers,
            masked_acc: c.masked_acc,
            search_seconds: self.t_search,
            finetune_seconds: tuned.seconds,
            total_seconds: self.elapsed0 + self.t_all.elapsed().as_secs_f64(),
            train_seconds: self.rows.iter().map(|r| r.train_seconds).sum(),
            search_overhead: search_overhead(&self.rows),
        };
        let batch = r.training.batch_size.clamp(1, 64);
        let mut rep =
            report::validate(&ctx, &unpruned, &out, &self.test, self.dims, batch).map_err(job)?;
        rep.latency_budget = self.latency_budget(&c.best, &unpruned, &out)?;
        report::write(&o.run_dir, &rep).map_err(job)?;
        Ok(rep)
    }

    /// A latency budget's estimate against the measured latency of both models.
    fn latency_budget(
        &self,
        best: &Best,
        unpruned: &Graph,
        pruned: &Graph,
    ) -> Result<Option<report::LatencyBudget>, SearchError> {
        let job = SearchError::Job;
        let (Some(t), budget) = (&self.budget.latency, &self.budget) else { return Ok(None) };
        let e = latency::Effort { warmup: 3, runs: 20 };
        let ms = |g: &Graph| latency::model_ms(g, self.dims, t.batch, t.threads, e);
        let ns = |kv: &[usize]| t.eval(&budget.cost, kv) as f64 / 1e6;
        Ok(Some(report::LatencyBudget {
            batch: t.batch,
            threads: t.threads,
            target_ms: budget.target as f64 / 1e6,
            estimated_unpruned_ms: ns(&budget.cost.full),
            estimated_pruned_ms: ns(&budget.kept_vector(&best.kept)),
            measured_unpruned_ms: ms(unpruned).context("timing unpruned.onnx").map_err(job)?,
            measured_pruned_ms: ms(pruned).context("timing pruned.onnx").map_err(job)?,
        }))
    }
}

/// Search seconds per training second over the epochs that scored episodes.
fn search_overhead(rows: &[EpochRow]) -> f64 {
    let (tr, se) = rows
        .iter()
        .filter(|r| !r.rewards.is_empty())
        .fold((0.0, 0.0), |(a, b), r| (a + r.train_seconds, b + r.search_seconds));
    if tr > 0.0 {
        se / tr
    } else {
        0.0
    }
}

/// One epoch's weight training: its sums and seconds (alignment target included).
struct Trained {
    sums: crate::train::trainer::EpochSums,
    seconds: f64,
}
