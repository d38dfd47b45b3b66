//! `rlal bench agent`: the agent on a synthetic accuracy surface with a known
//! optimum (library: `rlal::search::agent_bench`).
use super::Failure;
use rlal::agent::{ActionMap, AgentConfig, EmbedInit, RewardNorm};
use rlal::search::agent_bench::{self, Method};
use rlal::search::agent_suite::{self, Schedule};
use rlal::search::best::Selection;
use rlal::search::recipe::{Recipe, StartFrom};
use rlal::search::surface::{Family, Noise, SurfaceConfig};
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct AgentBenchArgs {
    /// The prune recipe: model, budget, schedule (epochs, warm-up, buffer, agent
    /// epochs, episodes per epoch), agent and selection settings (with `--suite`:
    /// ignored, the suite's graphs and schedule are fixed).
    #[arg(long, default_value = "recipes/resnet56_cifar10.yaml")]
    pub recipe: PathBuf,
    /// Override the recipe's model.
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Seeds (each seed draws its own surface; every method runs on it). Default 5;
    /// with `--suite` 3.
    #[arg(long)]
    pub seeds: Option<u64>,
    /// First seed: the run covers seeds first-seed .. first-seed + seeds (to split a
    /// comparison over several processes). Default 0 (dev seeds are 0-99: tune on
    /// these only); with `--suite` 1000 (the held-out test seeds).
    #[arg(long)]
    pub first_seed: Option<u64>,
    /// The held-out suite: ResNet-56 and MobileNetV2 (block search space) × the
    /// surface scenarios × 30/50/70% MACs × the methods, on test seeds, with the
    /// `short` (30 epochs) or the `paper` schedule (200 epochs); writes
    /// agent_suite.json and agent_suite.md.
    #[arg(long, value_enum)]
    pub suite: Option<Schedule>,
    /// Suite cells run at a time (default: the available cores).
    #[arg(long)]
    pub jobs: Option<usize>,
    /// Surface family: separable (today's), features, cliff, coupled.
    #[arg(long, value_enum, default_value = "separable")]
    pub surface: Family,
    /// Reward noise: independent per reward, or correlated within an epoch.
    #[arg(long, value_enum, default_value = "independent")]
    pub noise: Noise,
    /// The alignment target's reward (and its neighbours') rises with the epochs it
    /// has been the target.
    #[arg(long)]
    pub alignment_feedback: bool,
    /// Methods to compare (default rlal,no-env-model,random,evolution,local,uniform;
    /// with `--suite` rlal,random,evolution,local,uniform).
    #[arg(long, value_enum, value_delimiter = ',')]
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
    /// Where the searches start (`search.start-from`: random or uniform).
    #[arg(long, value_enum)]
    pub start_from: Option<StartFrom>,
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

fn recipe(a: &AgentBenchArgs, path: &std::path::Path) -> Result<Recipe, Failure> {
    let read = Recipe::load(path)?;
    let mut r = read.clone();
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
    r.search.start_from = a.start_from.unwrap_or(r.search.start_from);
    r.check().map_err(|e| e.after_flags(Some(path), &read, &r))?;
    if r.budget().metric == rlal::agent::Metric::Latency {
        return Err(Failure::input(anyhow::anyhow!(
            "{}: bench agent needs a MACs or params budget, not a latency budget",
            path.display()
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

/// The surface settings of the flags (the recipe's reward subset unless given).
fn surface(a: &AgentBenchArgs, r: &Recipe) -> Result<SurfaceConfig, Failure> {
    let s = SurfaceConfig {
        family: a.surface,
        reward_samples: a.reward_samples.unwrap_or(r.search.reward_samples),
        drift: a.drift,
        uniform_drop: a.uniform_drop,
        pairs: a.pairs,
        noise: a.noise,
        alignment_feedback: a.alignment_feedback,
        ..Default::default()
    };
    s.check().map_err(|m| Failure::input(anyhow::anyhow!("--{m}")))?;
    Ok(s)
}

/// `--methods`, or the default of a single run or of the suite.
fn methods(a: &AgentBenchArgs) -> Vec<Method> {
    match (a.methods.is_empty(), a.suite) {
        (false, _) => a.methods.clone(),
        (true, Some(_)) => agent_suite::DEFAULT_METHODS.to_vec(),
        (true, None) => agent_bench::DEFAULT_METHODS.to_vec(),
    }
}

/// first-seed .. first-seed + seeds, with the defaults of a single run or of the suite.
fn seeds(a: &AgentBenchArgs) -> Result<Vec<u64>, Failure> {
    let (n, first) = match a.suite {
        Some(_) => (agent_suite::TEST_SEEDS, agent_suite::TEST_FIRST_SEED),
        None => (5, 0),
    };
    let (n, first) = (a.seeds.unwrap_or(n), a.first_seed.unwrap_or(first));
    if n == 0 {
        return Err(Failure::input(anyhow::anyhow!("--seeds must not be 0")));
    }
    if a.suite.is_none() && first.saturating_add(n) > agent_suite::TEST_FIRST_SEED {
        eprintln!("note: seeds from {} are the suite's held-out test seeds: tune on dev seeds (0-99) only", agent_suite::TEST_FIRST_SEED);
    }
    Ok((first..first.saturating_add(n)).collect())
}

pub fn run(a: AgentBenchArgs) -> Result<(), Failure> {
    // The agent's networks are small: one thread each is fastest and leaves the
    // other cores to other work (several OpenMP threads per process oversubscribe).
    tch::set_num_threads(1);
    if let Some(schedule) = a.suite {
        return run_suite(&a, schedule);
    }
    let r = recipe(&a, &a.recipe)?;
    let (scfg, seeds) = (surface(&a, &r)?, seeds(&a)?);
    let (_, _, budget) = rlal::search::job::prepare(&r, None, false).map_err(|e| match e {
        rlal::search::SearchError::Input(e) => Failure::input(e),
        rlal::search::SearchError::Job(e) => Failure::job(e),
    })?;
    let rep = agent_bench::bench(&r, &budget, &scfg, &methods(&a), &seeds, !a.json)
        .map_err(|m| Failure::input(anyhow::anyhow!("{}: {m}", a.recipe.display())))?;
    agent_bench::write(&a.out, &rep).map_err(Failure::job)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&rep.summaries).expect("summaries serialise"));
        return Ok(());
    }
    println!("{} ({} layers) at {:.0}%, surface {:?}, noise {:?}, feedback {}: {} seeds, {} epochs ({} warm-up, {} buffer, agent until {}), P = {}, selection {:?} (k = {}), {:.1} s", rep.model, rep.layers, 100.0 * rep.budget_ratio, rep.surface.family, rep.surface.noise, rep.surface.alignment_feedback, seeds.len(), rep.epochs, rep.warmup_epochs, rep.buffer_epochs, rep.agent_epochs, rep.episodes_per_epoch, rep.selection, rep.incumbents, rep.seconds);
    println!(
        "optimum (final surface, median) {:.2}%, exact on {}/{} seeds (else the best found); uniform {:.2}%",
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
            "| {} | {:.2} | {} | {} / {} | {} | {}/{} |",
            s.method.label(),
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

/// `--suite`: the fixed matrix on the suite's graphs with `schedule`.
fn run_suite(a: &AgentBenchArgs, schedule: Schedule) -> Result<(), Failure> {
    if a.model.is_some() {
        return Err(Failure::input(anyhow::anyhow!(
            "--model does not apply to --suite (its graphs are fixed)"
        )));
    }
    let mut graphs = Vec::new();
    for (name, path) in agent_suite::GRAPHS {
        let mut r = recipe(a, std::path::Path::new(path))?;
        schedule.apply(&mut r);
        graphs.push((name.to_string(), r));
    }
    let scfg = surface(a, &graphs[0].1)?;
    let (seeds, scenarios) = (seeds(a)?, agent_suite::scenarios());
    let m = agent_suite::Matrix {
        graphs: &graphs,
        scenarios: &scenarios,
        budgets: &agent_suite::BUDGETS,
        methods: &methods(a),
        seeds: &seeds,
        surface: &scfg,
        schedule: Some(schedule),
    };
    let jobs =
        a.jobs.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let rep =
        agent_suite::run(&m, jobs, !a.json).map_err(|m| Failure::input(anyhow::anyhow!("{m}")))?;
    agent_suite::write(&a.out, &rep).map_err(Failure::job)?;
    print!("{}", agent_suite::markdown(&rep));
    println!("wrote {}", a.out.join("agent_suite.json").display());
    Ok(())
}
