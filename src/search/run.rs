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
use crate::analysis::{self, Analysis, ImportOptions};
use crate::data::{Loader, LoaderConfig, Normalize, Transform};
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
    /// The graph's input C, H, W.
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
    let tr = r.train_recipe(r.epochs);
    let dims = setup::input_dims(g, an).map_err(|e| input(e.into()))?;
    let (train, holdout_idx, test) =
        setup::loaders(&tr, &data, dims, setup::num_classes(g, an)).map_err(|e| input(e.into()))?;
    let norm = Normalize { scale: r.scale, mean: r.mean.clone(), std: r.std.clone() };
    let hcfg = LoaderConfig {
        batch_size: r.reward_batch_size,
        shuffle: false,
        drop_last: false,
        seed: r.seed,
        workers: setup::workers(r.workers, r.threads),
        prefetch: 4,
    };
    let holdout =
        Loader::new(train.dataset().clone(), holdout_idx, Transform::eval(norm.clone()), hcfg)
            .map_err(|e| input(e.into()))?;
    let recal = if r.reward_bn_samples > 0 {
        let idx: Vec<usize> = train.order(0).into_iter().take(r.reward_bn_samples).collect();
        let n = idx.len();
        let l = Loader::new(
            train.dataset().clone(),
            idx,
            Transform::eval(norm),
            LoaderConfig {
                batch_size: n.max(1),
                shuffle: false,
                drop_last: false,
                seed: r.seed,
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
    Ok(SearchData { dims, train, holdout, test, recal })
}

/// Whether ONNX Runtime can score the rewards on `device`: the engine may use it
/// (`ort`, or `auto` on the CPU) and libonnxruntime loads. Without it the same
/// narrow networks run in libtorch (`reward-engine: ort` says so with a warning).
pub fn ort_usable(r: &Recipe, device: tch::Device) -> bool {
    if !r.reward_engine.wants_ort(device) {
        return false;
    }
    match crate::validate::ort::OrtModel::probe() {
        Ok(()) => true,
        Err(e) => {
            if r.reward_engine == RewardEngine::Ort {
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
    match r.reward_engine.resolve(net.device(), ort_ok) {
        e @ (RewardEngine::Pruned | RewardEngine::Ort) => {
            let mut f = reward::Frozen::new(
                net,
                budget,
                r.criterion.p(),
                r.input_shape.as_deref(),
                r.reward_bn_samples > 0,
            )?;
            if e == RewardEngine::Ort {
                let sessions = if r.threads > 0 {
                    r.threads
                } else {
                    std::thread::available_parallelism().map_or(1, |n| n.get())
                };
                f.ort = Some(reward::OrtScoring {
                    sessions,
                    batch: r.reward_ort_batch,
                    pad: r.reward_ort_pad,
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
        analysis::import(&model, &ImportOptions { input_shape: r.input_shape.clone() })
            .map_err(|e| SearchError::Input(e.into()))?;
    setup::apply_insert_bn(&mut g, &mut an, r.insert_bn, r.input_shape.as_deref())
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
                r.threads,
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
    let p = r.criterion.p();
    let mut changed = None;
    if r.selection == Selection::Rescore
        && matches!(r.policy, Policy::Rlal | Policy::Random)
        && !inc.items.is_empty()
    {
        let frozen = freeze(r, net, budget, ort_ok).map_err(|e| job(e.into()))?;
        changed = Some(
            inc.rescore(r.epochs, |kept| rset.reward_with(net, frozen.as_ref(), budget, kept, p))
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
    Ok((Best { reward: acc, kept, epoch: r.epochs }, changed))
}

/// Runs a whole pruning job; returns the report (also written to the run directory),
/// None on the ranks but rank 0 of a multi-rank job.
pub fn run(r: &Recipe, o: &RunOptions) -> Result<Option<report::Report>, SearchError> {
    let t_all = Instant::now();
    let input = SearchError::Input;
    let job = SearchError::Job;
    if o.resume {
        if let Ok(text) = std::fs::read_to_string(o.run_dir.join("report.json")) {
            if let Ok(rep) = serde_json::from_str::<report::Report>(&text) {
                if o.progress {
                    eprintln!("{} is complete; nothing to resume", o.run_dir.display());
                }
                return Ok(Some(rep));
            }
        }
    }
    let (g, an, budget) = prepare_run(r, o)?;
    if r.threads > 0 {
        tch::set_num_threads(r.threads as i32);
    }
    let device = r.device.device().map_err(|e| input(e.into()))?;
    let SearchData { dims, train, holdout, test, recal } = search_data(r, &g, &an, device)?;
    // Data-parallel ranks train on their shares of every global batch.
    let train = trainer::shard(train);
    let root = crate::dist::is_root();
    let ckpt = o.run_dir.join(CKPT);

    // ---- Alg. 1: joint training and search ----
    let mut net = Net::new(&g, &an, device).context("building the network").map_err(input)?;
    net.set_compute(r.precision, r.channels_last);
    let mut tr =
        Trainer::new(&net, &r.train_recipe(r.epochs).optim(), r.epochs, train.num_batches());
    let mut agent = Agent::new(r.agent.clone(), r.epochs, r.seed);
    let mut rng = Rng::new(r.seed).fork(0x5ea4c4);
    let p = r.criterion.p();
    let mut inc = Incumbents::default();
    let (mut start, mut t_search, mut elapsed0) = (0usize, 0f64, 0f64);
    let metrics_path = o.run_dir.join("metrics.jsonl");
    let mut rows: Vec<EpochRow> = Vec::new();
    if o.resume {
        if let Some(st) = load_checkpoint(&ckpt, &mut net, &mut tr, &mut agent).map_err(input)? {
            (start, t_search, elapsed0) = (st.epoch, st.search_seconds, st.elapsed_seconds);
            rng = Rng::from_state(st.rng).ok_or_else(|| {
                input(anyhow!("{}: invalid RNG state", ckpt.join(SEARCH_STATE).display()))
            })?;
            inc = st.incumbents;
            let world = crate::dist::world().map_or(1, |w| w.size);
            if st.world != world {
                return Err(input(anyhow!(
                    "{}: the run was checkpointed with {} rank(s) and is resumed with {world}; resume with the same world size (the episodes' split and the data shards depend on it)",
                    ckpt.join(SEARCH_STATE).display(),
                    st.world
                )));
            }
            if root {
                let lines = crate::util::truncate_lines(&metrics_path, start)
                    .with_context(|| format!("writing {}", metrics_path.display()))
                    .map_err(job)?;
                rows = lines.iter().filter_map(|l| serde_json::from_str(l).ok()).collect();
            }
            if o.progress {
                eprintln!("resuming {} after epoch {start} of {}", o.run_dir.display(), r.epochs);
            }
        }
    }
    let mut metrics =
        if root { Some(open_metrics(&metrics_path, start > 0).map_err(job)?) } else { None };
    let ort_ok = ort_usable(r, device);
    if o.progress {
        eprintln!(
            "pruning {} to {:.1}% of {} {} (target {}) with policy {}: {} layers (search space {:?}), {} train / {} reward / {} test images, {} epochs on {:?}, rewards in {}",
            r.model.as_ref().map(|p| p.display().to_string()).unwrap_or_default(),
            100.0 * r.ratio(),
            budget.full(),
            budget.metric.name(),
            budget.target,
            r.policy.name(),
            budget.layers.len(),
            r.search_space,
            train.num_samples(),
            holdout.num_samples(),
            test.num_samples(),
            r.epochs,
            device,
            match r.reward_engine.resolve(device, ort_ok) {
                RewardEngine::Ort => "ONNX Runtime (narrow networks)",
                RewardEngine::Pruned => "libtorch (narrow networks)",
                _ => "libtorch (masked full network)",
            }
        );
    }
    let recal_x = recal.as_ref().map(Tensor::shallow_clone);
    let rset = RewardSet::new(&holdout, &net).map_err(|e| job(e.into()))?.with_recalibration(recal);
    let overlap = r.agent.overlap.resolve(device);
    // An epoch whose agent updates run beside the next epoch's weight training.
    let mut pending: Option<Pending> = None;
    for t in start..r.epochs {
        let t0 = Instant::now();
        // v_l of the best policy by current norms (Eq. 10), for the penalty only.
        let align: Option<GroupLasso> = match (inc.best(), r.alignment && r.beta > 0.0) {
            (Some(b), true) => Some(net.group_lasso_target(&reward::keep_vectors(
                &net,
                &reward::keep_sets(&net, &budget, &b.kept, p).map_err(|e| job(e.into()))?,
            ))),
            _ => None,
        };
        // The previous epoch's agent updates (if deferred) run on their own thread while
        // this epoch trains the weights; neither reads what the other writes.
        let (trained, updated) = std::thread::scope(|s| {
            let handle = pending.is_some().then(|| {
                let (agent, rng, threads) = (&mut agent, &mut rng, r.threads);
                s.spawn(move || {
                    if threads > 0 {
                        tch::set_num_threads(threads as i32);
                    }
                    let tu = Instant::now();
                    let st = agent.update(rng);
                    (st, tu.elapsed().as_secs_f64())
                })
            });
            let label = format!("epoch {}/{} train", t + 1, r.epochs);
            let mut pen = |n: &Net| Ok(align.as_ref().map(|g| g.penalty(n) * r.beta));
            let trained = tr
                .epoch(&mut net, &train, t, &label, o.progress, Some(&mut pen))
                .map(|s| (s, t0.elapsed().as_secs_f64()))
                .map_err(|e| job(e.into()));
            let tw = Instant::now();
            let updated = handle.map(|h| h.join().map(|u| (u, tw.elapsed().as_secs_f64())));
            (trained, updated)
        });
        if let Some(pd) = pending.take() {
            let ((st, secs), wait) = match updated {
                Some(Ok(u)) => u,
                _ => {
                    return Err(job(anyhow!(
                        "the agent updates of epoch {} failed (thread panicked)",
                        pd.row.epoch
                    )))
                }
            };
            let mut row = pd.row;
            row.set_updates(&st, secs, r.agent.env_model, r.agent.alpha);
            row.update_overlapped = true;
            row.search_seconds = pd.episodes_seconds + wait;
            t_search += row.search_seconds;
            let state = SearchState {
                epoch: row.epoch,
                step: pd.step,
                rng: rng.state(),
                incumbents: inc.clone(),
                replay: agent.replay.clone(),
                search_seconds: t_search,
                elapsed_seconds: pd.elapsed,
                tensors: format!("search-e{}.ot", row.epoch),
                graph: fingerprint(&net),
                world: crate::dist::world().map_or(1, |w| w.size),
            };
            close_epoch(
                o,
                r.epochs,
                &ckpt,
                metrics.as_mut(),
                &mut rows,
                row,
                pd.snapshot,
                &agent,
                &state,
            )?;
        }
        // The training time excludes the wait for the updates (counted as the previous epoch's search).
        let (sums, train_secs) = trained?;
        // ---- episodes on the frozen weights ----
        let t1 = Instant::now();
        let phase = r.phase(t);
        let searching = phase.searching();
        let mut row = EpochRow {
            epoch: t + 1,
            lr: sums.lr,
            train_loss: sums.loss(),
            train_acc: sums.accuracy(),
            // The penalty before β (Eq. 11).
            align_loss: align.is_some().then(|| sums.extra() / r.beta),
            ..Default::default()
        };
        let mut defer = false;
        if searching {
            row.phase = "search".into();
            if r.policy == Policy::Rlal {
                agent.begin_epoch(t);
            }
            let episodes: Vec<(Vec<usize>, Option<crate::agent::Episode>)> = match r.policy {
                Policy::Rlal | Policy::Random => {
                    let explore =
                        if phase == Phase::Agent { Explore::Policy } else { Explore::Random };
                    row.phase = phase.name().into();
                    (0..r.episodes_per_epoch)
                        .map(|_| {
                            let ep = agent.episode(&budget, t, &mut rng, explore);
                            (ep.kept.clone(), Some(ep))
                        })
                        .collect()
                }
                Policy::Uniform => vec![(reward::uniform_kept(&budget), None)],
                Policy::L1Global => vec![(
                    reward::l1_global_kept(&net, &budget, p).map_err(|e| job(e.into()))?,
                    None,
                )],
            };
            let n_ep = episodes.len();
            let tf = Instant::now();
            let frozen = freeze(r, &net, &budget, ort_ok).map_err(|e| job(e.into()))?;
            let freeze_secs = tf.elapsed().as_secs_f64();
            let _ = rset.take_stages();
            // The incumbents are scored on this epoch's weights before the episodes compete with them.
            if r.selection == Selection::Rescore
                && matches!(r.policy, Policy::Rlal | Policy::Random)
            {
                inc.rescore(t + 1, |kept| {
                    rset.reward_with(&mut net, frozen.as_ref(), &budget, kept, p)
                })
                .map_err(|e| job(e.into()))?;
            }
            let mut best_seen = inc.best().map_or(0.0, |b| b.reward);
            let accs = score_episodes(&episodes, |i, kept| {
                let acc = rset.reward_with(&mut net, frozen.as_ref(), &budget, kept, p)?;
                best_seen = best_seen.max(acc);
                if o.progress {
                    crate::util::progress(format_args!(
                        "epoch {}/{} episodes {} {}/{} reward {:.2}% best {:.2}%                ",
                        t + 1,
                        r.epochs,
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
                    agent.remember(ep, acc as f32);
                }
                row.rewards.push(acc);
                row.macs.push(budget.macs(&kept));
                // Baselines without search follow their current choice; searches keep the best.
                let b = Best { reward: acc, kept, epoch: t + 1 };
                match r.policy {
                    Policy::Uniform | Policy::L1Global => inc.replace(b),
                    _ => inc.offer(b, r.kept_incumbents(), r.selection == Selection::Rescore),
                }
            }
            row.reward_stages = Some(crate::search::reward::RewardStages {
                freeze: freeze_secs,
                ..rset.take_stages()
            });
            if phase == Phase::Agent {
                if overlap && t + 1 < r.epochs {
                    defer = true;
                } else {
                    let tu = Instant::now();
                    let st = agent.update(&mut rng);
                    row.set_updates(
                        &st,
                        tu.elapsed().as_secs_f64(),
                        r.agent.env_model,
                        r.agent.alpha,
                    );
                }
            }
        } else {
            row.phase = if t < r.warmup_epochs { "warmup".into() } else { "weights".into() };
        }
        let search_secs = t1.elapsed().as_secs_f64();
        row.best_reward = inc.best().map(|b| b.reward);
        row.mean_reward = (!row.rewards.is_empty())
            .then(|| row.rewards.iter().sum::<f64>() / row.rewards.len() as f64);
        if t + 1 == r.epochs || (r.eval_every > 0 && (t + 1) % r.eval_every == 0) {
            row.test_acc = Some(evaluate(&net, &test).map_err(|e| job(e.into()))?.accuracy);
        }
        row.train_seconds = train_secs;
        row.search_seconds = search_secs;
        let elapsed = elapsed0 + t_all.elapsed().as_secs_f64();
        if defer {
            // Metrics row and checkpoint wait for the updates; the weights of this epoch are kept aside.
            let snapshot = tr
                .tensors(&net)
                .into_iter()
                .map(|(n, t)| (n, tch::no_grad(|| t.detach().copy())))
                .collect();
            let step = tr.step;
            pending = Some(Pending { row, episodes_seconds: search_secs, snapshot, step, elapsed });
            continue;
        }
        t_search += search_secs;
        let state = SearchState {
            epoch: t + 1,
            step: tr.step,
            rng: rng.state(),
            incumbents: inc.clone(),
            replay: agent.replay.clone(),
            search_seconds: t_search,
            elapsed_seconds: elapsed,
            tensors: format!("search-e{}.ot", t + 1),
            graph: fingerprint(&net),
            world: crate::dist::world().map_or(1, |w| w.size),
        };
        close_epoch(
            o,
            r.epochs,
            &ckpt,
            metrics.as_mut(),
            &mut rows,
            row,
            tr.tensors(&net),
            &agent,
            &state,
        )?;
    }
    debug_assert!(pending.is_none(), "the last epoch never defers its updates");
    // ---- the final architecture ----
    let (best, final_changed) = choose(r, &mut net, &budget, &rset, inc, ort_ok)?;
    let ks = reward::keep_sets(&net, &budget, &best.kept, p).map_err(|e| job(e.into()))?;
    let layers: Vec<LayerChoice> = budget
        .layers
        .iter()
        .zip(&best.kept)
        .map(|(l, &k)| LayerChoice {
            layer: l.index,
            group: l.group,
            name: l.name.clone(),
            channels: l.channels,
            kept: k,
            ratio: k as f64 / l.channels as f64,
            kept_channels: ks[&l.group].clone(),
        })
        .collect();
    if root {
        report::write_policy(&o.run_dir, &best, &layers, &budget).map_err(job)?;
        plot::write_layers(&o.run_dir, &layers).map_err(job)?;
    }
    // Test accuracy of the best sub-network before fine-tuning, scored like the rewards.
    let masked_acc = match &recal_x {
        Some(x) => {
            let f = reward::Frozen::new(&net, &budget, p, r.input_shape.as_deref(), true)
                .map_err(|e| job(e.into()))?;
            evaluate(&f.narrow_recalibrated(&best.kept, x).map_err(|e| job(e.into()))?, &test)
                .map_err(|e| job(e.into()))?
                .accuracy
        }
        None => {
            net.set_masks(&reward::keep_vectors(&net, &ks)).map_err(|e| job(e.into()))?;
            let a = evaluate(&net, &test).map_err(|e| job(e.into()))?.accuracy;
            net.clear_masks();
            a
        }
    };
    let trained = net.export().map_err(|e| job(e.into()))?;
    let an_t = reanalyse(&trained, r.input_shape.as_deref()).map_err(job)?;
    let pruned = crate::rewrite::surgery::prune(&trained, &an_t, &ks, r.input_shape.as_deref())
        .map_err(|e| job(anyhow!("surgery: {e}")))?;
    let an_p = reanalyse(&pruned.graph, r.input_shape.as_deref()).map_err(job)?;

    // ---- fine-tuning ----
    let t_ft = Instant::now();
    let mut net2 = Net::new(&pruned.graph, &an_p, device)
        .context("building the pruned network")
        .map_err(job)?;
    net2.set_compute(r.precision, r.channels_last);
    let mut ft_rows = Vec::new();
    if r.finetune_epochs > 0 {
        if o.progress {
            eprintln!(
                "fine-tuning the pruned network ({} -> {} MACs) for {} epochs",
                pruned.macs_before, pruned.macs_after, r.finetune_epochs
            );
        }
        let mut optim = r.train_recipe(r.finetune_epochs).optim();
        optim.lr = r.finetune_lr.unwrap_or(r.lr);
        optim.warmup_epochs = optim.warmup_epochs.min(r.finetune_epochs as f64);
        let cfg = TrainConfig {
            epochs: r.finetune_epochs,
            optim,
            eval_every: r.eval_every,
            checkpoint_dir: Some(ckpt.join("finetune")),
            resume: o.resume,
            metrics: Some(o.run_dir.join("finetune.jsonl")),
            progress: o.progress,
            seed: r.seed ^ 0xf1e7,
        };
        trainer::train(&mut net2, &train, Some(&test), &cfg).map_err(|e| job(e.into()))?;
        ft_rows = std::fs::read_to_string(o.run_dir.join("finetune.jsonl"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .collect();
    }
    let ft_secs = t_ft.elapsed().as_secs_f64();
    if !root {
        // Rank 0 exports, validates and reports.
        return Ok(None);
    }
    plot::write_accuracy(&o.run_dir, &rows, &ft_rows).map_err(job)?;

    // ---- export and validation ----
    let mut out = net2.export().map_err(|e| job(e.into()))?;
    let mut unpruned = trained;
    if !r.keep_bn {
        crate::rewrite::bn::fold_bn(&mut out);
        crate::rewrite::bn::fold_bn(&mut unpruned);
    }
    crate::onnx::save(&unpruned, &o.run_dir.join("unpruned.onnx"))
        .context("writing unpruned.onnx")
        .map_err(job)?;
    let pruned_path = o.run_dir.join("pruned.onnx");
    crate::onnx::save(&out, &pruned_path).context("writing pruned.onnx").map_err(job)?;
    let ctx = report::Context {
        recipe: r,
        best: &best,
        final_choice_changed: final_changed,
        layers,
        masked_acc,
        search_seconds: t_search,
        finetune_seconds: ft_secs,
        total_seconds: elapsed0 + t_all.elapsed().as_secs_f64(),
        train_seconds: rows.iter().map(|r| r.train_seconds).sum(),
        search_overhead: {
            let (tr, se) = rows
                .iter()
                .filter(|r| !r.rewards.is_empty())
                .fold((0.0, 0.0), |(a, b), r| (a + r.train_seconds, b + r.search_seconds));
            if tr > 0.0 {
                se / tr
            } else {
                0.0
            }
        },
    };
    let mut rep = report::validate(&ctx, &unpruned, &out, &test, dims, r.batch_size.clamp(1, 64))
        .map_err(job)?;
    if let Some(t) = &budget.latency {
        let e = latency::Effort { warmup: 3, runs: 20 };
        let ms = |g: &Graph| latency::model_ms(g, dims, t.batch, t.threads, e);
        let ns = |kv: &[usize]| t.eval(&budget.cost, kv) as f64 / 1e6;
        rep.latency_budget = Some(report::LatencyBudget {
            batch: t.batch,
            threads: t.threads,
            target_ms: budget.target as f64 / 1e6,
            estimated_unpruned_ms: ns(&budget.cost.full),
            estimated_pruned_ms: ns(&budget.kept_vector(&best.kept)),
            measured_unpruned_ms: ms(&unpruned).context("timing unpruned.onnx").map_err(job)?,
            measured_pruned_ms: ms(&out).context("timing pruned.onnx").map_err(job)?,
        });
    }
    report::write(&o.run_dir, &rep).map_err(job)?;
    Ok(Some(rep))
}
