//! `rlal bench agent`: the agent on a synthetic accuracy surface with a known
//! optimum (library: `rlal::search::agent_bench`).
use super::Failure;
use rlal::agent::{ActionMap, AgentConfig, EmbedInit, RewardNorm};
use rlal::search::agent_bench::{self, Method, SurfaceConfig};
use rlal::search::best::Selection;
use rlal::search::recipe::Recipe;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct AgentBenchArgs {
    /// The prune recipe: model, budget, schedule (epochs, warm-up, buffer, agent
    /// epochs, episodes per epoch), agent and selection settings.
    #[arg(long, default_value = "recipes/resnet56_cifar10.yaml")]
    pub recipe: PathBuf,
    /// Override the recipe's model.
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Seeds (each seed draws its own surface; every method runs on it).
    #[arg(long, default_value_t = 5)]
    pub seeds: u64,
    /// First seed: the run covers seeds first-seed .. first-seed + seeds (to split a
    /// comparison over several processes).
    #[arg(long, default_value_t = 0)]
    pub first_seed: u64,
    /// Methods to compare.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "rlal,no-env-model,random,uniform"
    )]
    pub methods: Vec<Method>,
    /// Reward subset size for the binomial noise (default: the recipe's reward-samples).
    #[arg(long)]
    pub reward_samples: Option<usize>,
    /// Sensitivity drift from the first to the last epoch (0: a stationary surface).
    #[arg(long, default_value_t = 0.8)]
    pub drift: f64,
    /// Accuracy uniform pruning loses on the final surface.
    #[arg(long, default_value_t = 0.08)]
    pub uniform_drop: f64,
    /// Interacting pairs of consecutive layers.
    #[arg(long, default_value_t = 3)]
    pub pairs: usize,
    /// The paper's agent and selection rule (`AgentConfig::paper`: actor lr 1e-4, 100
    /// updates per epoch, gamma 0.99, raw rewards, fresh embeddings, clipped actions;
    /// max-reward selection) instead of the recipe's; the flags below still override.
    #[arg(long)]
    pub paper: bool,
    #[arg(long)]
    pub gamma: Option<f64>,
    #[arg(long)]
    pub alpha: Option<f64>,
    #[arg(long, value_enum)]
    pub reward_norm: Option<RewardNorm>,
    #[arg(long, value_enum)]
    pub embed_init: Option<EmbedInit>,
    #[arg(long, value_enum)]
    pub action_map: Option<ActionMap>,
    #[arg(long, value_enum)]
    pub selection: Option<Selection>,
    #[arg(long)]
    pub incumbents: Option<usize>,
    #[arg(long)]
    pub updates_per_epoch: Option<usize>,
    /// Any other `agent:` field of the recipe, as `key=value` (YAML value), repeatable:
    /// `--agent actor-lr=0.001 --agent tau=0.01`.
    #[arg(long = "agent", value_name = "KEY=VALUE")]
    pub agent_fields: Vec<String>,
    /// Output directory (agent_bench.json, regret.svg, rewards.svg).
    #[arg(long, default_value = "runs/bench-agent")]
    pub out: PathBuf,
    /// Print the summaries as JSON.
    #[arg(long)]
    pub json: bool,
}

fn recipe(a: &AgentBenchArgs) -> Result<Recipe, Failure> {
    let mut r = Recipe::load(&a.recipe).map_err(|m| Failure::input(anyhow::anyhow!("{m}")))?;
    if a.model.is_some() {
        r.model = a.model.clone();
    }
    r.data.get_or_insert_with(|| "(no data: synthetic rewards)".into());
    if a.paper {
        r.agent = AgentConfig { overlap: r.agent.overlap, ..AgentConfig::paper() };
        r.search.selection = Selection::MaxReward;
    }
    r.agent = with_fields(&r.agent, &a.agent_fields)?;
    let ag = &mut r.agent;
    ag.gamma = a.gamma.unwrap_or(ag.gamma);
    ag.alpha = a.alpha.unwrap_or(ag.alpha);
    ag.reward_norm = a.reward_norm.unwrap_or(ag.reward_norm);
    ag.embed_init = a.embed_init.unwrap_or(ag.embed_init);
    ag.action_map = a.action_map.unwrap_or(ag.action_map);
    ag.updates_per_epoch = a.updates_per_epoch.unwrap_or(ag.updates_per_epoch);
    r.search.selection = a.selection.unwrap_or(r.search.selection);
    r.search.incumbents = a.incumbents.unwrap_or(r.search.incumbents);
    r.check().map_err(|m| Failure::input(anyhow::anyhow!("{}: {m}", a.recipe.display())))?;
    if r.metric() == rlal::agent::Metric::Latency {
        return Err(Failure::input(anyhow::anyhow!(
            "{}: bench agent needs a MACs or params budget, not a latency budget",
            a.recipe.display()
        )));
    }
    Ok(r)
}

/// `agent` with `key=value` fields set (the recipe's spelling and checks).
fn with_fields(agent: &AgentConfig, fields: &[String]) -> Result<AgentConfig, Failure> {
    let bad = |m: String| Failure::input(anyhow::anyhow!("--agent: {m}"));
    let mut v = serde_yaml::to_value(agent).map_err(|e| bad(e.to_string()))?;
    for f in fields {
        let (k, val) = f.split_once('=').ok_or_else(|| bad(format!("'{f}' is not key=value")))?;
        let val: serde_yaml::Value =
            serde_yaml::from_str(val).map_err(|e| bad(format!("{f}: {e}")))?;
        v.as_mapping_mut().expect("a struct serialises to a mapping").insert(k.into(), val);
    }
    serde_yaml::from_value(v).map_err(|e| bad(e.to_string()))
}

pub fn run(a: AgentBenchArgs) -> Result<(), Failure> {
    let r = recipe(&a)?;
    if a.seeds == 0
        || a.methods.is_empty()
        || a.drift.is_nan()
        || a.drift < 0.0
        || a.uniform_drop.is_nan()
        || a.uniform_drop <= 0.0
        || a.uniform_drop >= 1.0
    {
        return Err(Failure::input(anyhow::anyhow!(
            "--seeds and --methods must not be empty, --drift >= 0, --uniform-drop in (0, 1)"
        )));
    }
    let (_, _, budget) = rlal::search::job::prepare(&r, None, false).map_err(|e| match e {
        rlal::search::SearchError::Input(e) => Failure::input(e),
        rlal::search::SearchError::Job(e) => Failure::job(e),
    })?;
    // The agent's networks are small: one thread each is fastest and leaves the
    // other cores to other work (several OpenMP threads per process oversubscribe).
    tch::set_num_threads(1);
    let scfg = SurfaceConfig {
        reward_samples: a.reward_samples.unwrap_or(r.search.reward_samples),
        drift: a.drift,
        uniform_drop: a.uniform_drop,
        pairs: a.pairs,
    };
    let seeds: Vec<u64> = (a.first_seed..a.first_seed.saturating_add(a.seeds)).collect();
    let rep = agent_bench::bench(&r, &budget, &scfg, &a.methods, &seeds, !a.json)
        .map_err(|m| Failure::input(anyhow::anyhow!("{}: {m}", a.recipe.display())))?;
    agent_bench::write(&a.out, &rep).map_err(Failure::job)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&rep.summaries).expect("summaries serialise"));
        return Ok(());
    }
    println!("{} ({} layers) at {:.0}%: {} seeds, {} epochs ({} warm-up, {} buffer, agent until {}), P = {}, selection {:?} (k = {}), {:.1} s", rep.model, rep.layers, 100.0 * rep.budget_ratio, seeds.len(), rep.epochs, rep.warmup_epochs, rep.buffer_epochs, rep.agent_epochs, rep.episodes_per_epoch, rep.selection, rep.incumbents, rep.seconds);
    println!(
        "optimum (final surface, median) {:.2}%, exact on {}/{} seeds; uniform {:.2}%",
        100.0 * agent_bench::median(&rep.optimum.iter().map(|o| o.value).collect::<Vec<_>>()),
        rep.optimum.iter().filter(|o| o.exact).count(),
        rep.optimum.len(),
        100.0 * agent_bench::median(&rep.uniform_value)
    );
    println!("| method | median final regret (points) | regrets per seed | mean reward first/last 10 agent epochs | greedy regret | final re-score changed choice |");
    println!("|---|---|---|---|---|---|");
    let pts = |v: Option<f64>| v.map_or("-".to_string(), |x| format!("{:.2}", 100.0 * x));
    for s in &rep.summaries {
        let per: Vec<String> = s.final_regret.iter().map(|x| format!("{:.2}", 100.0 * x)).collect();
        println!(
            "| {:?} | {:.2} | {} | {} / {} | {} | {}/{} |",
            s.method,
            100.0 * s.median_final_regret,
            per.join(" "),
            pts(s.mean_reward_first_agent_epochs),
            pts(s.mean_reward_last_agent_epochs),
            pts(s.median_greedy_regret),
            s.final_choice_changed,
            s.final_regret.len()
        );
    }
    println!("wrote {}", a.out.join("agent_bench.json").display());
    Ok(())
}
