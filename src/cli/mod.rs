//! Command-line interface: one struct per subcommand, a `///` doc on every flag.
mod import;

use clap::{Parser, Subcommand};

/// rlal: prune CNNs given as ONNX with RLAL (joint training + RL-guided channel pruning).
#[derive(Parser, Debug)]
#[command(name = "rlal", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Parse and check an ONNX model, infer shapes, count MACs/params, find prunable channel groups.
    Import(import::ImportArgs),
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

pub fn run(cli: Cli) -> Result<(), Failure> {
    match cli.command {
        Command::Import(a) => import::run(a),
    }
}

/// Parses `3x32x32` (or `3,32,32`) into dims.
pub fn parse_dims(s: &str) -> Result<Vec<usize>, String> {
    s.split(['x', 'X', ','])
        .map(|p| p.trim().parse::<usize>().map_err(|_| format!("'{s}' is not a shape like 3x32x32")))
        .collect::<Result<Vec<_>, _>>()
        .and_then(|v| if v.is_empty() || v.contains(&0) { Err(format!("'{s}' is not a shape like 3x32x32")) } else { Ok(v) })
}
