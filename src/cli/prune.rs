//! `rlal prune --recipe r.yaml [model.onnx] [flags]`: RLAL joint training and
//! pruning (paper Alg. 1), surgery, fine-tuning, export to
//! `runs/<name>/pruned.onnx` and validation. Defaults < recipe < flags.
use super::args::{InputArgs, TrainingArgs};
use super::Failure;
use anyhow::{anyhow, Context};
use rlal::search::recipe::{Metric, NormKind};
use rlal::search::{self, Policy, Recipe, RunOptions, SearchError};
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct PruneArgs {
    /// The ONNX model (overrides the recipe's `model`).
    pub model: Option<PathBuf>,
    /// YAML recipe (docs/RECIPES.md; `rlal::search::recipe`).
    #[arg(long)]
    pub recipe: Option<PathBuf>,
    /// Dataset directory (overrides `data`).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Run name (overrides `name`); the run directory is `runs/<name>`.
    #[arg(long)]
    pub name: Option<String>,
    /// Run directory (default `runs/<name>`).
    #[arg(long)]
    pub run_dir: Option<PathBuf>,
    /// Target MACs ratio in (0, 1): the budget `{metric: macs, ratio: R}` (replaces the recipe's `budget`, its batch kept).
    #[arg(long, value_name = "R")]
    pub macs_ratio: Option<f64>,
    /// Target params ratio in (0, 1): a parameter budget, `{metric: params, ratio: R}` (replaces the recipe's `budget`).
    #[arg(long, value_name = "R", conflicts_with = "macs_ratio")]
    pub params_ratio: Option<f64>,
    /// Target latency ratio in (0, 1): a latency budget from a per-layer ONNX Runtime latency table, `{metric: latency, ratio: R}` (replaces the recipe's `budget`, its batch kept).
    #[arg(long, value_name = "R", conflicts_with_all = ["macs_ratio", "params_ratio"])]
    pub latency_ratio: Option<f64>,
    /// Batch size of the latency table (overrides `budget.batch`).
    #[arg(long, value_name = "N")]
    pub latency_batch: Option<usize>,
    /// Round kept widths to multiples of N (overrides `channel-multiple`).
    #[arg(long, value_name = "N")]
    pub channel_multiple: Option<usize>,
    /// Width policy (overrides `policy`).
    #[arg(long, value_enum)]
    pub policy: Option<Policy>,
    /// Weights-only epochs before the search (overrides `search.weights-only-epochs`).
    #[arg(long)]
    pub warmup_epochs: Option<usize>,
    /// Replay-filling random-episode epochs (overrides `search.buffer-epochs`).
    #[arg(long)]
    pub buffer_epochs: Option<usize>,
    /// Epoch where episodes and agent updates stop (overrides `search.agent-epochs`).
    #[arg(long)]
    pub agent_epochs: Option<usize>,
    /// Episodes per epoch (overrides `search.episodes-per-epoch`).
    #[arg(long)]
    pub episodes_per_epoch: Option<usize>,
    /// Held-out images for the reward (overrides `search.reward-samples`).
    #[arg(long)]
    pub reward_samples: Option<usize>,
    /// Fine-tuning epochs (overrides `finetune.epochs`).
    #[arg(long)]
    pub finetune_epochs: Option<usize>,
    /// Filter-ranking norm (overrides `search.criterion`).
    #[arg(long, value_enum)]
    pub criterion: Option<NormKind>,
    /// Turn the alignment loss off (paper's "w/o SR"; sets `search.alignment: false`).
    #[arg(long)]
    pub no_alignment: bool,
    /// Turn the environment model off (paper's "w/o EE"; sets `agent.env-model: false`).
    #[arg(long)]
    pub no_env_model: bool,
    #[command(flatten)]
    pub training: TrainingArgs,
    #[command(flatten)]
    pub input: InputArgs,
    /// Continue the run in this directory after a crash or Ctrl-C (its recipe.yaml is the recipe; flags still override).
    #[arg(long, value_name = "RUN_DIR", conflicts_with_all = ["recipe", "run_dir", "name"])]
    pub resume: Option<PathBuf>,
    /// Print the merged recipe and exit.
    #[arg(long)]
    pub show_recipe: bool,
    /// Parse and check the recipe and the budget (imports the model, reads no data) and exit.
    #[arg(long)]
    pub check: bool,
    /// Set from the global `--quiet`.
    #[arg(skip)]
    pub quiet: bool,
}

impl PruneArgs {
    /// The budget flag given (`--macs-ratio R` ...): its metric and ratio.
    fn budget_ratio(&self) -> Option<(Metric, f64)> {
        let flags = [
            (Metric::Macs, self.macs_ratio),
            (Metric::Params, self.params_ratio),
            (Metric::Latency, self.latency_ratio),
        ];
        flags.into_iter().find_map(|(m, r)| Some((m, r?)))
    }

    /// The recipe file: `--resume`'s run directory's, or `--recipe`.
    fn recipe_file(&self) -> Result<Option<PathBuf>, Failure> {
        let Some(dir) = &self.resume else { return Ok(self.recipe.clone()) };
        let p = dir.join("recipe.yaml");
        if !p.is_file() {
            return Err(Failure::input(anyhow!(
                "{}: not a run directory of rlal prune (no recipe.yaml)",
                dir.display()
            )));
        }
        Ok(Some(p))
    }
}

fn merged(a: &PruneArgs) -> Result<Recipe, Failure> {
    let file = a.recipe_file()?;
    let read = file.as_deref().map_or(Ok(Recipe::default()), Recipe::load)?;
    let mut r = read.clone();
    macro_rules! over {
        ($dst:expr; $($f:ident),*) => { $( if let Some(v) = a.$f.clone() { $dst.$f = v.into(); } )* };
    }
    over!(r; name, channel_multiple, policy);
    over!(r.search; buffer_epochs, agent_epochs, episodes_per_epoch, reward_samples, criterion);
    if let Some(n) = a.warmup_epochs {
        r.search.weights_only_epochs = n;
    }
    if let Some(n) = a.finetune_epochs {
        r.finetune.epochs = n;
    }
    a.training.apply(&mut r.training);
    a.input.apply(&mut r.input_shape, &mut r.input_layout, &mut r.bind);
    if a.model.is_some() {
        r.model = a.model.clone();
    }
    if a.data.is_some() {
        r.data = a.data.clone();
    }
    r.set_budget(a.budget_ratio(), a.latency_batch);
    r.search.alignment &= !a.no_alignment;
    r.agent.env_model &= !a.no_env_model;
    r.check().map_err(|e| e.after_flags(file.as_deref(), &read, &r))?;
    Ok(r)
}

fn failure(e: SearchError) -> Failure {
    match e {
        SearchError::Input(e) => Failure::input(e),
        SearchError::Job(e) => Failure::job(e),
    }
}

pub fn run(a: PruneArgs) -> Result<(), Failure> {
    let mut r = merged(&a)?;
    if let Some(model) = r.model.clone() {
        let props = rlal::onnx::read_props(&model).map_err(Failure::input)?;
        let line = r.training.adopt_preprocess(super::model_preprocess(&model, &props)?.as_ref());
        if !a.quiet && !a.show_recipe {
            eprintln!("{line}");
        }
    }
    if a.show_recipe {
        print!(
            "{}",
            serde_yaml::to_string(&r).context("serialising the recipe").map_err(Failure::job)?
        );
        return Ok(());
    }
    if a.check {
        let (_, _, b) = search::job::prepare(&r, None, !a.quiet).map_err(failure)?;
        println!(
            "recipe ok: {} prunable layers, target {} of {} {}",
            b.layers.len(),
            b.target,
            b.full(),
            b.metric.name()
        );
        return Ok(());
    }
    let run_dir = a
        .resume
        .clone()
        .or_else(|| a.run_dir.clone())
        .unwrap_or_else(|| PathBuf::from("runs").join(&r.name));
    let rep = search::run(
        &r,
        &RunOptions { run_dir: run_dir.clone(), progress: !a.quiet, resume: a.resume.is_some() },
    )
    .map_err(failure)?;
    let Some(rep) = rep else { return Ok(()) };
    println!("{}", search::report::summary(&rep));
    println!("pruned model: {}\nreport: {} (and report.md, metrics.jsonl, best_policy.yaml, rewards.svg, accuracy.svg, layers.svg)", run_dir.join("pruned.onnx").display(), run_dir.join("report.json").display());
    Ok(())
}
