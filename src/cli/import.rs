//! `rlal import model.onnx`
use super::{args::InputArgs, Failure};
use anyhow::Context;
use rlal::analysis::{self, report};
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct ImportArgs {
    /// The ONNX model (`.onnx`, or gzip-compressed `.onnx.gz`).
    pub model: PathBuf,
    /// Print the full analysis as JSON (totals, layers, groups, ops) instead of the table.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub input: InputArgs,
    /// Also write the normalised model (constants folded, identities dropped) to this file.
    #[arg(long)]
    pub save: Option<PathBuf>,
}

pub fn run(a: ImportArgs) -> Result<(), Failure> {
    let opts = a.input.options();
    let (g, an) = analysis::import(&a.model, &opts).map_err(Failure::input)?;
    let r = report::build(&a.model.display().to_string(), &g, &an);
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&r)
                .context("serialising the report")
                .map_err(Failure::job)?
        );
    } else {
        print!("{}", report::text(&r));
    }
    if let Some(out) = &a.save {
        rlal::onnx::save(&g, out).map_err(Failure::job)?;
        if !a.json {
            println!("\nwrote the normalised model to {}", out.display());
        }
    }
    Ok(())
}
