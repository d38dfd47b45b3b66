//! Command-line interface: one struct per subcommand, a `///` doc on every flag.
mod args;
mod bench;
mod bench_agent;
mod bench_data;
mod bench_latency;
mod eval;
mod export;
mod import;
mod prune;
mod train;

use clap::{Parser, Subcommand};
use prune::PruneArgs;
use train::TrainArgs;

/// rlal: prune CNNs given as ONNX with RLAL (joint training + RL-guided channel pruning).
#[derive(Parser, Debug)]
#[command(name = "rlal", version, about, long_about = None)]
pub struct Cli {
    /// No progress display and no per-epoch lines on stderr (errors, warnings and final
    /// results are still printed). Without it, progress redraws in place only when stderr
    /// is a terminal; a redirected log gets one line per epoch.
    #[arg(long, short, global = true)]
    pub quiet: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Parse and check an ONNX model, infer shapes, count MACs/params, find prunable channel groups.
    Import(import::ImportArgs),
    /// Prune channels (uniform or per-layer ratios, L1/L2 filter norm), write the smaller ONNX atomically, validate it.
    Export(export::ExportArgs),
    /// Train an imported graph (no pruning) with a YAML recipe and write the trained ONNX.
    Train(train::TrainArgs),
    /// Classification accuracy of an ONNX model on a dataset split (engines: tch, ort).
    Eval(eval::EvalArgs),
    /// Jointly train and prune with the RLAL agent (paper Alg. 1), fine-tune, export runs/<name>/pruned.onnx and validate it.
    Prune(prune::PruneArgs),
    /// Performance measurements: `rlal bench train` times training steps (images/s) of rlal's libtorch executor; `rlal bench search` times a recipe's episodes by stage against its weight training.
    Bench(bench::BenchArgs),
}

/// A failure with its exit code (1: the job failed, 2: bad usage or input).
pub struct Failure {
    pub code: i32,
    pub error: anyhow::Error,
}

impl Failure {
    pub fn input(e: impl Into<anyhow::Error>) -> Failure {
        Failure { code: 2, error: e.into() }
    }
    pub fn job(e: impl Into<anyhow::Error>) -> Failure {
        Failure { code: 1, error: e.into() }
    }
}

/// A recipe that cannot be read or has a bad value is bad input.
impl From<rlal::train::recipe::RecipeError> for Failure {
    fn from(e: rlal::train::recipe::RecipeError) -> Failure {
        Failure::input(e)
    }
}

pub fn run(cli: Cli) -> Result<(), Failure> {
    // In a multi-rank job only rank 0 reports progress.
    let quiet = cli.quiet || !rlal::dist::is_root();
    rlal::util::set_quiet(quiet);
    match cli.command {
        Command::Import(a) => import::run(a),
        Command::Export(a) => export::run(a),
        Command::Train(a) => train::run(TrainArgs { quiet, ..a }),
        Command::Eval(a) => eval::run(a),
        Command::Prune(a) => prune::run(PruneArgs { quiet, ..a }),
        Command::Bench(a) => bench::run(a),
    }
}

/// The input preprocessing recorded in `model`'s metadata (`props`), if any; a
/// malformed record is an input error naming the file.
pub fn model_preprocess(
    model: &std::path::Path,
    props: &[(String, String)],
) -> Result<Option<rlal::data::Preprocess>, Failure> {
    rlal::data::Preprocess::from_props(model, props).map_err(Failure::input)
}

#[cfg(test)]
#[path = "flags_tests.rs"]
mod flags_tests;
