//! The RLAL search (`rlal prune`): paper Alg. 1 joining the training engine
//! ([`crate::train`]), the agent ([`crate::agent`]) and the surgery
//! ([`crate::rewrite`]) into one run from an ONNX graph to a pruned,
//! fine-tuned, validated ONNX.
//!
//! * [`recipe`]: the YAML recipe (fields, defaults, checks);
//! * [`job`]: the pruning job: Alg. 1, surgery, fine-tuning, export;
//! * [`policy`]: the search policies (`rlal`, `random`, `evolution`, `local`, baselines) behind one trait;
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
pub mod job;
pub mod latency;
pub mod plot;
pub mod policy;
pub mod recipe;
pub mod report;
pub mod reward;
pub mod search_bench;
pub mod surface;

pub use job::{run, RunOptions};
pub use recipe::{Policy, Recipe};

/// A failed run: bad input (exit code 2) or a failure during the job (1).
///
/// Lower layers' errors convert once, with `?`: the errors of the layers that read the
/// user's model, data and budget ([`AnalysisError`](crate::analysis::AnalysisError),
/// [`DataError`](crate::data::DataError), [`BudgetError`](crate::agent::BudgetError))
/// are input; those of training, the runtime and the file system while the job runs
/// ([`TrainError`](crate::train::TrainError), [`DistError`](crate::dist::DistError),
/// `anyhow::Error`) are the job's. Where an error of the second kind is the input's
/// fault (a dataset that cannot be opened, a corrupt checkpoint to resume), the
/// caller says so with [`Input`]: `.map_err(Input)?`.
#[derive(Debug)]
pub enum SearchError {
    Input(anyhow::Error),
    Job(anyhow::Error),
}

/// A lower layer's error that is bad input where it arose (exit code 2).
pub struct Input<E>(pub E);

impl<E: Into<anyhow::Error>> From<Input<E>> for SearchError {
    fn from(e: Input<E>) -> Self {
        SearchError::Input(e.0.into())
    }
}

/// `From` impls classifying a lower layer's error by its kind (see [`SearchError`]).
macro_rules! kind {
    ($variant:ident: $($t:ty),*) => {$(
        impl From<$t> for SearchError {
            fn from(e: $t) -> Self {
                SearchError::$variant(e.into())
            }
        }
    )*};
}
kind!(Input: crate::analysis::AnalysisError, crate::data::DataError, crate::agent::BudgetError);
kind!(Job: anyhow::Error, crate::train::TrainError, crate::dist::DistError);

impl std::fmt::Display for SearchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SearchError::Input(e) | SearchError::Job(e) => write!(f, "{e:#}"),
        }
    }
}
