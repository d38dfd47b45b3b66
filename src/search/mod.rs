//! The RLAL search (`rlal prune`): paper Alg. 1 joining the training engine
//! ([`crate::train`]), the agent ([`crate::agent`]) and the surgery
//! ([`crate::rewrite`]) into one run from an ONNX graph to a pruned,
//! fine-tuned, validated ONNX.
//!
//! * [`recipe`]: the YAML recipe (fields, defaults, checks);
//! * [`run`]: Alg. 1, surgery, fine-tuning, export;
//! * [`best`]: which architecture the search keeps (selection rule);
//! * [`agent_bench`]: `rlal bench agent`, the agent on a synthetic accuracy surface with a known optimum;
//! * [`surface`]: those surfaces (families, run effects) and their optimum;
//! * [`agent_suite`]: `rlal bench agent --suite`, the held-out matrix of graphs, surfaces and budgets;
//! * [`reward`]: keep-sets by filter norm, rewards, L_align, baselines;
//! * [`report`]: metrics rows, `best_policy.yaml`, validation, reports;
//! * [`latency`]: the per-layer ONNX Runtime latency table of latency budgets;
//! * [`plot`]: SVG plots of rewards, accuracy and kept channels.
pub mod agent_bench;
pub mod agent_suite;
pub mod best;
pub mod latency;
pub mod plot;
pub mod recipe;
pub mod report;
pub mod reward;
pub mod run;
pub mod search_bench;
pub mod surface;

pub use recipe::{Policy, Recipe};
pub use run::{run, RunOptions};

/// A failed run: bad input (exit code 2) or a failure during the job (1).
#[derive(Debug)]
pub enum SearchError {
    Input(anyhow::Error),
    Job(anyhow::Error),
}

impl std::fmt::Display for SearchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SearchError::Input(e) | SearchError::Job(e) => write!(f, "{e:#}"),
        }
    }
}
