//! The `rlal` command: parse, run, print the whole error chain, exit with
//! 0 (success), 1 (the job failed) or 2 (bad usage or bad input).
mod cli;

use clap::Parser;

fn main() {
    let args = cli::Cli::parse();
    if let Err(e) = cli::run(args) {
        eprintln!("error: {}", e.error);
        for cause in e.error.chain().skip(1) {
            eprintln!("  cause: {cause}");
        }
        std::process::exit(e.code);
    }
}
