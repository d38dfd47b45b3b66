//! The job's first phase: import the model, check the budget (measuring a latency
//! budget's table), open the data, build the network, its trainer and the search policy,
//! and restore them from a checkpoint on `--resume`.
use super::state::{open_metrics, CKPT};
use super::{Job, RunOptions};
use crate::agent::{Budget, Metric};
use crate::analysis::{self, Analysis};
use crate::data::{Loader, LoaderConfig};
use crate::ir::Graph;
use crate::rng::{Rng, Stream};
use crate::search::best::Incumbents;
use crate::search::recipe::{Recipe, RewardEngine, SearchSpace, Start};
use crate::search::report;
use crate::search::reward::{self, RewardSet};
use crate::search::{latency, policy};
use crate::search::{Input, SearchError};
use crate::train::trainer::{self, Trainer};
use crate::train::{bn_init, setup, Net};
use anyhow::{anyhow, Context};
use std::path::Path;
use std::time::Instant;
use tch::{Device, Tensor};

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

/// The loaders and the adaptive-BN batch of recipe `r` for the imported graph (input errors).
pub fn search_data(
    r: &Recipe,
    g: &Graph,
    an: &Analysis,
    device: tch::Device,
) -> Result<SearchData, SearchError> {
    let data = r.data.clone().ok_or_else(|| Input(anyhow!("no dataset")))?;
    let model = setup::model_input(g, an).map_err(Input)?;
    let (train, holdout_idx, test) = setup::loaders(
        &r.training,
        r.search.reward_samples,
        &data,
        model,
        setup::num_classes(g, an),
    )
    .map_err(Input)?;
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
    let holdout = Loader::new(train.dataset().clone(), holdout_idx, eval.clone(), hcfg)?;
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
        )?;
        Some(trainer::batch_on(&l.batch(0, 0)?, device).0)
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
    match crate::validate::ort_available() {
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
    let model = r.model.clone().ok_or_else(|| Input(anyhow!("no model")))?;
    let (mut g, mut an) = analysis::import(&model, &r.import_options())?;
    setup::apply_insert_bn(&mut g, &mut an, r.training.insert_bn, r.input_shape.as_deref())
        .map_err(Input)?;
    let bad_budget = |e: crate::agent::BudgetError| Input(anyhow!("{}: {e}", model.display()));
    let layers = match r.search_space {
        SearchSpace::All => an.layers.clone(),
        SearchSpace::Blocks => analysis::block_layers(&g, &an),
    };
    let spec = r.budget();
    let mut budget = if spec.metric == Metric::Latency {
        let t = match table.filter(|p| p.exists()) {
            Some(p) => latency::load(p)?,
            None => latency::measure(
                &g,
                &an,
                r.input_shape.as_deref(),
                spec.batch,
                r.training.threads,
                latency::Effort::default(),
                progress,
            )?,
        };
        Budget::with_latency(an.cost.clone(), layers, t, spec.ratio, r.max_prune_ratio)
            .map_err(bad_budget)?
    } else {
        Budget::with_metric(an.cost.clone(), layers, spec.metric, spec.ratio, r.max_prune_ratio)
            .map_err(bad_budget)?
    };
    budget.set_multiple(r.channel_multiple).map_err(bad_budget)?;
    Ok((g, an, budget))
}

/// [`prepare`] for a run, and its directory (rank 0): a fresh run drops stale checkpoints
/// and report; the recipe and a latency budget's table are written. In a multi-rank job,
/// rank 0 measures the latency table and the others read it, so every rank has the same budget.
fn prepare_run(r: &Recipe, o: &RunOptions) -> Result<(Graph, Analysis, Budget), SearchError> {
    let table = o.run_dir.join(LATENCY_TABLE);
    let barrier = || crate::dist::parallel().map_or(Ok(()), |w| w.barrier());
    if !crate::dist::is_root() {
        barrier()?;
        return prepare(r, Some(&table), false);
    }
    let prepared = prepare(r, o.resume.then_some(table.as_path()), o.progress);
    if let Ok((_, _, budget)) = &prepared {
        write_run_dir(r, o, budget, &table)?;
    }
    barrier()?;
    prepared
}

/// The run directory of a fresh or resumed run: stale checkpoints and report of a
/// fresh run removed, the recipe and a latency budget's `table` written.
fn write_run_dir(r: &Recipe, o: &RunOptions, budget: &Budget, table: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(&o.run_dir)
        .with_context(|| format!("creating {}", o.run_dir.display()))?;
    if !o.resume {
        // A fresh run never continues from stale checkpoints of an earlier run in the same directory.
        let _ = std::fs::remove_dir_all(o.run_dir.join(CKPT));
        let _ = std::fs::remove_file(o.run_dir.join("report.json"));
    }
    if let Some(t) = &budget.latency {
        latency::save(t, table)?;
    }
    let yaml = serde_yaml::to_string(r).context("serialising the recipe")?;
    crate::util::write_atomic(&o.run_dir.join("recipe.yaml"), yaml.as_bytes())
        .context("writing recipe.yaml")
}

/// `start: pretrained`: BN inserted after the given convs starts at its input's statistics
/// on the recalibration images (or the first training batch, the same on every rank), so
/// the given model keeps its function in train mode too ([`bn_init::data_identity_bn`]).
fn start_inserted_bn(
    net: &Net,
    train: &Loader,
    recal: Option<&Tensor>,
    device: Device,
    progress: bool,
) -> Result<(), SearchError> {
    let x = match recal {
        Some(x) => x.shallow_clone(),
        None => trainer::batch_on(&train.batch(0, 0).map_err(Input)?, device).0,
    };
    let n = bn_init::data_identity_bn(net, &x).map_err(|e| SearchError::Job(e.into()))?;
    if progress && n > 0 {
        eprintln!(
            "pretrained start: {n} BatchNormalization inserted after convs without one, set to the identity on the data's statistics ({} images)",
            x.size()[0]
        );
    }
    Ok(())
}

impl<'a> Job<'a> {
    /// Imports the model, checks the budget, opens the data, builds the network, its
    /// trainer and the search policy, and restores them from a checkpoint on `--resume`.
    pub(super) fn prepare(r: &'a Recipe, o: &'a RunOptions) -> Result<Job<'a>, SearchError> {
        let t_all = Instant::now();
        let (g, an, budget) = prepare_run(r, o)?;
        let layers = budget.layers.len();
        if r.training.threads > 0 {
            tch::set_num_threads(r.training.threads as i32);
        }
        let device = r.training.device.device().map_err(Input)?;
        let SearchData { dims, train, holdout, test, recal } = search_data(r, &g, &an, device)?;
        let mut net = Net::new(&g, &an, device).context("building the network").map_err(Input)?;
        if r.start == Start::Pretrained {
            start_inserted_bn(&net, &train, recal.as_ref(), device, o.progress)?;
        }
        // Data-parallel ranks train on their shares of every global batch.
        let train = trainer::shard(train).map_err(Input)?;
        net.set_compute(r.training.precision, r.training.channels_last);
        let tr = Trainer::new(&net, &r.training.optim(), r.training.epochs, train.num_batches());
        let recal_x = recal.as_ref().map(Tensor::shallow_clone);
        let rset = RewardSet::new(&holdout, &net)?.with_recalibration(recal);
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
            policy: policy::build(r, layers, r.training.seed),
            rng: Rng::stream(r.training.seed, Stream::Search),
            inc: Incumbents::default(),
            ckpt: o.run_dir.join(CKPT),
            metrics: None,
            rows: Vec::new(),
            start: 0,
            t_search: 0.0,
            original: None,
            elapsed0: 0.0,
            t_all,
        };
        if r.start == Start::Pretrained {
            j.original = Some(j.measure_original()?);
        }
        if o.resume {
            j.resume()?;
        }
        if j.root {
            j.metrics = Some(open_metrics(&j.metrics_path(), j.start > 0)?);
        }
        if o.progress {
            eprintln!("{}", j.headline(holdout.num_samples()));
        }
        Ok(j)
    }

    /// The model as the user gave it (no BN inserted), measured like the report's
    /// rows: accuracy on the test split in ONNX Runtime, MACs, params, latency.
    fn measure_original(&self) -> Result<report::Figures, SearchError> {
        let r = self.r;
        let model = r.model.as_ref().ok_or_else(|| SearchError::Input(anyhow!("no model")))?;
        let (g, _) = analysis::import(model, &r.import_options())
            .map_err(|e| SearchError::Input(e.into()))?;
        let batch = r.training.batch_size.clamp(1, 64);
        let (f, engine, n) = report::figures(&g, &self.test, self.dims, batch, r.training.threads)
            .with_context(|| format!("measuring the given model {}", model.display()))
            .map_err(SearchError::Job)?;
        if self.o.progress {
            eprintln!(
                "original model {}: {:.2}% on {n} test images ({engine}), {} MACs, {} params, {:.3} ms at batch 1",
                model.display(),
                100.0 * f.accuracy,
                f.macs,
                f.params,
                f.latency_ms
            );
        }
        Ok(f)
    }

    /// The run's first line: model, budget, policy, data and where rewards are computed.
    fn headline(&self, reward_images: usize) -> String {
        let (r, b) = (self.r, &self.budget);
        format!(
            "pruning {} to {:.1}% of {} {} (target {}) with policy {}: {} layers (search space {:?}), {} train / {} reward / {} test images, {} epochs on {:?}, rewards in {}",
            r.model.as_ref().map(|p| p.display().to_string()).unwrap_or_default(),
            100.0 * r.budget().ratio,
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
}
