//! The pruning job (`rlal prune`): Algorithm 1 (joint training and pruning)
//! followed by surgery, fine-tuning, export and validation, in phases that are the
//! methods of [`Job`], one file each: [`prepare`](mod@prepare) (import, budget, data,
//! network, resume) → [`epoch`] (the joint epochs) → [`choose`](mod@choose) (the
//! architecture to prune to) → [`finetune`](mod@finetune) (surgery and fine-tuning)
//! → [`export`](mod@export) (ONNX files, validation, report); [`state`] holds the
//! checkpoint of the joint phase. See `docs/METHOD.md` for the mapping to the paper.
//!
//! The search policy (`policy:`) is a [`SearchPolicy`](super::policy::SearchPolicy);
//! everything else is the same for every policy.
//!
//! Every completed epoch of joint training is checkpointed atomically into
//! `<run>/checkpoints/` (weights, SGD momenta and the policy's tensors, e.g. the
//! agent's networks and their Adam moments, in one tensor file; epoch, step, RNG,
//! incumbents and the policy's state, e.g. the replay buffer, in `search.json`,
//! which names the complete tensor file); fine-tuning
//! checkpoints into `<run>/checkpoints/finetune/`. `--resume` continues from
//! there and reaches the same result as an uninterrupted run (same seed,
//! device and thread count).
mod choose;
mod epoch;
mod export;
mod finetune;
mod prepare;
mod state;

pub use super::best::Best;
use super::best::Incumbents;
use super::policy::SearchPolicy;
use super::recipe::Recipe;
use super::report::{self, EpochRow, LayerChoice};
use super::reward::RewardSet;
use super::SearchError;
use crate::agent::Budget;
use crate::data::Loader;
use crate::ir::Graph;
use crate::rng::Rng;
use crate::train::trainer::Trainer;
use crate::train::Net;
pub use prepare::{freeze, ort_usable, prepare, search_data, SearchData, LATENCY_TABLE};
use std::path::PathBuf;
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
/// trainer, the search policy and the incumbents, and the bookkeeping of the epochs.
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
    policy: Box<dyn SearchPolicy>,
    /// The search's random stream ([`crate::rng::Stream::Search`]).
    rng: Rng,
    inc: Incumbents,
    ckpt: PathBuf,
    metrics: Option<std::fs::File>,
    rows: Vec<EpochRow>,
    /// First epoch to run (after a resumed checkpoint).
    start: usize,
    t_search: f64,
    /// `start: pretrained`: the given model's figures, measured before any training.
    original: Option<crate::search::report::Figures>,
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
