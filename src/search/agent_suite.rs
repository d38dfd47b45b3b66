//! `rlal bench agent --suite`: the held-out agent benchmark. A fixed matrix of
//! graphs × surface scenarios × MACs budgets × methods, run on **test seeds**
//! (from [`TEST_FIRST_SEED`]) that no default may be tuned on: defaults are
//! chosen on the dev seeds [`DEV_SEEDS`] only (docs/BENCHMARKS.md). Every cell
//! is one [`agent_bench::bench`] (its own surfaces per seed, every method on
//! them); the report keeps each cell's optima and per-seed regrets, not the
//! per-epoch traces, and renders as one markdown table.
use super::agent_bench::{self, method_name, BenchReport, Method, MethodSummary};
use super::recipe::Recipe;
use super::surface::{Family, Noise, Optimum, SurfaceConfig};
use serde::Serialize;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

/// Seeds every default is tuned on.
pub const DEV_SEEDS: std::ops::Range<u64> = 0..100;
/// The suite's test seeds: `TEST_FIRST_SEED ..`, never used for tuning.
pub const TEST_FIRST_SEED: u64 = 1000;
/// Test seeds per cell by default.
pub const TEST_SEEDS: u64 = 3;
/// MACs budgets of the matrix.
pub const BUDGETS: [f64; 3] = [0.3, 0.5, 0.7];
/// The methods of the suite when `--methods` is not given.
pub const DEFAULT_METHODS: [Method; 5] =
    [Method::Rlal, Method::Random, Method::Evolution, Method::Local, Method::Uniform];
/// Graphs of the matrix: (name, recipe). MobileNetV2's recipe has the paper's
/// block search space (`search-space: blocks`).
pub const GRAPHS: [(&str, &str); 2] = [
    ("resnet56", "recipes/resnet56_cifar10.yaml"),
    ("mobilenetv2", "recipes/mobilenetv2_cifar10.yaml"),
];

/// The episode schedule of every cell.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Schedule {
    /// 30 epochs: warm-up 2, replay buffer 2-4, agent 4-12, P = 10 (the suite in
    /// about 35 minutes on 2 cores: 45 s of one core per cell and seed, measured).
    Short,
    /// The paper's CIFAR-10 schedule: 200 epochs, warm-up 10, buffer 10-20, agent 20-90, P = 10.
    Paper,
}

impl Schedule {
    /// (epochs, warm-up, buffer, agent until, episodes per epoch).
    pub fn epochs(self) -> (usize, usize, usize, usize, usize) {
        match self {
            Schedule::Short => (30, 2, 2, 12, 10),
            Schedule::Paper => (200, 10, 10, 90, 10),
        }
    }

    pub fn apply(self, r: &mut Recipe) {
        let (epochs, warm, buffer, agent, p) = self.epochs();
        r.training.epochs = epochs;
        let s = &mut r.search;
        (s.weights_only_epochs, s.buffer_epochs, s.agent_epochs, s.episodes_per_epoch) =
            (warm, buffer, agent, p);
    }
}

/// A surface family with its run effects.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Scenario {
    pub family: Family,
    pub noise: Noise,
    pub alignment_feedback: bool,
}

impl Scenario {
    pub fn name(&self) -> String {
        let mut s = format!("{:?}", self.family).to_lowercase();
        if self.noise == Noise::Correlated {
            s += "+correlated";
        }
        if self.alignment_feedback {
            s += "+feedback";
        }
        s
    }

    pub fn config(&self, base: &SurfaceConfig) -> SurfaceConfig {
        let (family, noise, alignment_feedback) =
            (self.family, self.noise, self.alignment_feedback);
        SurfaceConfig { family, noise, alignment_feedback, ..base.clone() }
    }
}

/// The suite's scenarios: today's separable surface as it was, then every family
/// with correlated noise and alignment feedback (what a real run has).
pub fn scenarios() -> Vec<Scenario> {
    let real = |family| Scenario { family, noise: Noise::Correlated, alignment_feedback: true };
    let plain = Scenario {
        family: Family::Separable,
        noise: Noise::Independent,
        alignment_feedback: false,
    };
    std::iter::once(plain)
        .chain([Family::Separable, Family::Features, Family::Cliff, Family::Coupled].map(real))
        .collect()
}

/// One cell of the matrix: a graph, a scenario, a budget, every method on every seed.
#[derive(Clone, Debug, Serialize)]
pub struct Cell {
    pub graph: String,
    pub scenario: String,
    pub surface: SurfaceConfig,
    pub budget_ratio: f64,
    pub layers: usize,
    pub optimum: Vec<Optimum>,
    pub optimum_exact: bool,
    pub uniform_value: Vec<f64>,
    pub summaries: Vec<MethodSummary>,
    pub seconds: f64,
}

impl Cell {
    fn new(graph: &str, scenario: &Scenario, rep: BenchReport) -> Cell {
        Cell {
            graph: graph.into(),
            scenario: scenario.name(),
            surface: rep.surface,
            budget_ratio: rep.budget_ratio,
            layers: rep.layers,
            optimum: rep.optimum,
            optimum_exact: rep.optimum_exact,
            uniform_value: rep.uniform_value,
            summaries: rep.summaries,
            seconds: rep.seconds,
        }
    }
}

/// Everything the suite measured.
#[derive(Clone, Debug, Serialize)]
pub struct SuiteReport {
    pub schedule: Option<Schedule>,
    pub seeds: Vec<u64>,
    /// Whether every seed is a test seed (>= [`TEST_FIRST_SEED`]).
    pub test_seeds: bool,
    pub methods: Vec<Method>,
    pub agent: crate::agent::AgentConfig,
    /// Where the searches started (`search.start-from`).
    pub start_from: super::policy::StartFrom,
    pub cells: Vec<Cell>,
    pub seconds: f64,
}

/// What the suite runs.
pub struct Matrix<'a> {
    /// (name, recipe with its schedule) per graph.
    pub graphs: &'a [(String, Recipe)],
    pub scenarios: &'a [Scenario],
    pub budgets: &'a [f64],
    pub methods: &'a [Method],
    pub seeds: &'a [u64],
    /// Surface settings other than the scenario's.
    pub surface: &'a SurfaceConfig,
    pub schedule: Option<Schedule>,
}

/// Runs every cell of `m` on `jobs` threads (cells in parallel, each cell's runs
/// in turn). `progress`: one line per finished cell.
pub fn run(m: &Matrix, jobs: usize, progress: bool) -> Result<SuiteReport, String> {
    let t0 = std::time::Instant::now();
    let mut units = Vec::new();
    for (g, r) in m.graphs {
        for &ratio in m.budgets {
            let mut r = r.clone();
            r.set_budget(Some((crate::agent::Metric::Macs, ratio)), None);
            let (_, _, budget) =
                super::job::prepare(&r, None, false).map_err(|e| format!("{g} at {ratio}: {e}"))?;
            let budget = std::sync::Arc::new(budget);
            units.extend(m.scenarios.iter().map(|s| (g.as_str(), r.clone(), budget.clone(), *s)));
        }
    }
    let next = AtomicUsize::new(0);
    let cells: Mutex<Vec<Option<Result<Cell, String>>>> = Mutex::new(vec![None; units.len()]);
    std::thread::scope(|sc| {
        for _ in 0..jobs.clamp(1, units.len().max(1)) {
            sc.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some((g, r, budget, s)) = units.get(i) else { return };
                let cfg = s.config(m.surface);
                let cell = agent_bench::bench(r, budget, &cfg, m.methods, m.seeds, false)
                    .map(|rep| Cell::new(g, s, rep))
                    .map_err(|e| format!("{g} {} at {}: {e}", s.name(), r.budget().ratio));
                if let (true, Ok(c)) = (progress, &cell) {
                    eprintln!("{}", progress_line(c));
                }
                cells.lock().expect("no thread panics holding the lock")[i] = Some(cell);
            });
        }
    });
    let cells = cells.into_inner().expect("no thread panicked").into_iter().flatten();
    let cells = cells.collect::<Result<Vec<Cell>, String>>()?;
    Ok(SuiteReport {
        schedule: m.schedule,
        seeds: m.seeds.to_vec(),
        test_seeds: m.seeds.iter().all(|&s| s >= TEST_FIRST_SEED),
        methods: m.methods.to_vec(),
        agent: m.graphs.first().map(|g| g.1.agent.clone()).unwrap_or_default(),
        start_from: m.graphs.first().map(|g| g.1.search.start_from).unwrap_or_default(),
        cells,
        seconds: t0.elapsed().as_secs_f64(),
    })
}

fn progress_line(c: &Cell) -> String {
    let per: Vec<String> = c
        .summaries
        .iter()
        .map(|s| format!("{} {:.2}", method_name(s.method), 100.0 * s.median_final_regret))
        .collect();
    format!(
        "{} {} {:.0}%: {} ({:.0} s)",
        c.graph,
        c.scenario,
        100.0 * c.budget_ratio,
        per.join(", "),
        c.seconds
    )
}

/// The report as markdown: what ran, then per cell the optimum and each method's
/// median final regret (points) with its per-seed values.
pub fn markdown(rep: &SuiteReport) -> String {
    let kind = if rep.test_seeds { "test seeds" } else { "NOT test seeds" };
    let seeds: Vec<String> = rep.seeds.iter().map(|s| s.to_string()).collect();
    let mut s = format!(
        "Schedule {}, {kind} {}, searches start from {}, {:.0} s in all. Regret in accuracy \
         points, median (per seed); optimum `exact` (DP) or `ref` (best found: reference search \
         or a method).\n\n",
        rep.schedule.map_or("(recipe's)".to_string(), |x| format!("{x:?}").to_lowercase()),
        seeds.join(" "),
        format!("{:?}", rep.start_from).to_lowercase(),
        rep.seconds
    );
    let methods: Vec<String> = rep.methods.iter().map(|&m| method_name(m)).collect();
    s += &format!("| graph | surface | MACs | optimum | {} |\n", methods.join(" | "));
    s += &format!("|---|---|---|---|{}\n", "---|".repeat(methods.len()));
    for c in &rep.cells {
        let opt = if c.optimum_exact { "exact" } else { "ref" };
        let cols: Vec<String> = c.summaries.iter().map(regret_cell).collect();
        s += &format!(
            "| {} | {} | {:.0}% | {opt} | {} |\n",
            c.graph,
            c.scenario,
            100.0 * c.budget_ratio,
            cols.join(" | ")
        );
    }
    s
}

fn regret_cell(m: &MethodSummary) -> String {
    let per: Vec<String> = m.final_regret.iter().map(|x| format!("{:.2}", 100.0 * x)).collect();
    format!("**{:.2}** ({})", 100.0 * m.median_final_regret, per.join(" "))
}

/// Writes `agent_suite.json` and `agent_suite.md` into `dir`.
pub fn write(dir: &std::path::Path, rep: &SuiteReport) -> anyhow::Result<()> {
    use anyhow::Context;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let files = [
        ("agent_suite.json", serde_json::to_vec_pretty(rep)?),
        ("agent_suite.md", markdown(rep).into_bytes()),
    ];
    for (name, bytes) in files {
        crate::util::write_atomic(&dir.join(name), &bytes)
            .with_context(|| format!("writing {}", dir.join(name).display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The suite's machinery on a tiny matrix (ResNet-20, 9 layers; one seed; 8
    /// epochs): correct optima and reports for every scenario, not regret.
    #[test]
    fn a_tiny_suite_reports_valid_optima_and_regrets_for_every_scenario() {
        let mut r = Recipe::parse(concat!(
            "data: unused\nsearch:\n  reward-samples: 500\n",
            "agent:\n  updates-per-epoch: 4\n  batch-size: 16\n"
        ))
        .unwrap();
        r.model = Some(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("graphs/resnet20_mnist.onnx"),
        );
        (r.training.epochs, r.search.weights_only_epochs, r.search.buffer_epochs) = (8, 1, 2);
        (r.search.agent_epochs, r.search.episodes_per_epoch) = (6, 4);
        r.channel_multiple = 4;
        let graphs = [("resnet20".to_string(), r)];
        let (sc, methods) = (scenarios(), DEFAULT_METHODS);
        let m = Matrix {
            graphs: &graphs,
            scenarios: &sc,
            budgets: &[0.3, 0.7],
            methods: &methods,
            seeds: &[3],
            surface: &SurfaceConfig { reward_samples: 500, ..Default::default() },
            schedule: None,
        };
        let rep = run(&m, 2, false).unwrap();
        assert_eq!(rep.cells.len(), 2 * sc.len());
        assert!(!rep.test_seeds);
        for c in &rep.cells {
            let coupled = c.surface.family == Family::Coupled;
            let (o, u) = (&c.optimum[0], c.uniform_value[0]);
            assert!(o.exact != coupled && o.kept.len() == 9, "{}: {o:?}", c.scenario);
            assert!(
                o.value.is_finite() && o.value <= 0.92 && o.value >= u,
                "{}: {o:?} {u}",
                c.scenario
            );
            let ran: Vec<Method> = c.summaries.iter().map(|s| s.method).collect();
            assert_eq!(ran, DEFAULT_METHODS, "{}", c.scenario);
            for s in &c.summaries {
                let r = s.final_regret[0];
                assert!(
                    r.is_finite() && (-1e-9..=o.value).contains(&r),
                    "{} {:?}: {r}",
                    c.scenario,
                    s.method
                );
            }
        }
        let json = serde_json::to_value(&rep).unwrap();
        let cell = &json["cells"][rep.cells.len() - 1];
        for k in ["graph", "scenario", "budget_ratio", "optimum", "optimum_exact", "summaries"] {
            assert!(!cell[k].is_null(), "{k} missing: {cell}");
        }
        assert_eq!(cell["surface"]["family"], "coupled");
        assert_eq!(cell["surface"]["noise"], "correlated");
        assert!(
            cell["optimum"][0]["source"].as_str().unwrap().contains("reference-search")
                || cell["optimum"][0]["source"].as_str().unwrap().starts_with("method:")
        );
        let md = markdown(&rep);
        assert_eq!(
            md.lines().filter(|l| l.starts_with("| resnet20 |")).count(),
            rep.cells.len(),
            "{md}"
        );
        assert!(
            md.contains("coupled+correlated+feedback") && md.contains("NOT test seeds"),
            "{md}"
        );
    }
}
