//! `rlal bench latency`: a pruned model beside the unpruned one (and, when given, a
//! natively narrow reference of the same widths, e.g. the same architecture built
//! narrow in PyTorch and exported), timed interleaved in one process with ONNX
//! Runtime at each batch size, with ONNX Runtime's profile by op type: the ceiling
//! of what pruning can give and where the time goes.
use super::Failure;
use anyhow::Context;
use rlal::validate::{latency, profile, Runner};
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct LatencyBenchArgs {
    /// An `rlal prune` run directory: its pruned.onnx and unpruned.onnx.
    #[arg(long, conflicts_with_all = ["pruned", "unpruned"])]
    pub run: Option<PathBuf>,
    #[arg(long, requires = "unpruned")]
    pub pruned: Option<PathBuf>,
    #[arg(long, requires = "pruned")]
    pub unpruned: Option<PathBuf>,
    /// A natively narrow model of the pruned widths (the reference pruning should match).
    #[arg(long)]
    pub native: Option<PathBuf>,
    /// Batch sizes.
    #[arg(long, value_delimiter = ',', default_value = "1,64")]
    pub batch: Vec<usize>,
    /// Timed runs per model and batch (interleaved: one run of each model in turn).
    #[arg(long, default_value_t = 30)]
    pub runs: usize,
    #[arg(long, default_value_t = 5)]
    pub warmup: usize,
    /// ONNX Runtime intra-op threads (0: its default).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Op types listed per model in the profile.
    #[arg(long, default_value_t = 8)]
    pub top: usize,
    #[arg(long)]
    pub json: bool,
}

#[derive(serde::Serialize)]
struct ModelAt {
    model: String,
    median_ms: f64,
    /// Unpruned median over this model's.
    speedup: f64,
    profile: profile::OpTimes,
}

#[derive(serde::Serialize)]
struct BatchReport {
    batch: usize,
    models: Vec<ModelAt>,
    /// Pruned median over the native reference's (1.0: surgery costs nothing).
    pruned_over_native: Option<f64>,
}

pub fn run(a: LatencyBenchArgs) -> Result<(), Failure> {
    let models = models(&a)?;
    if a.batch.is_empty() || a.batch.contains(&0) || a.runs == 0 {
        return Err(Failure::input(anyhow::anyhow!("--batch sizes and --runs must be at least 1")));
    }
    let mut loaded = Vec::new();
    for (name, path) in &models {
        let g = rlal::onnx::load(path).map_err(Failure::input)?;
        let dims =
            input_dims(&g).with_context(|| path.display().to_string()).map_err(Failure::input)?;
        let bytes = rlal::onnx::to_bytes(&g);
        // Sessions that do not spin-wait, so one model's threads never slow the next run.
        let runner = latency::quiet_ort(&bytes, a.threads)
            .with_context(|| format!("loading {} in ONNX Runtime", path.display()))
            .map_err(Failure::job)?;
        loaded.push((name.clone(), bytes, dims, runner));
    }
    let mut reports = Vec::new();
    for &b in &a.batch {
        reports.push(at_batch(&a, &mut loaded, b).map_err(Failure::job)?);
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&reports).expect("report serialises"));
    } else {
        for r in &reports {
            print!("{}", text(r, a.top));
        }
    }
    Ok(())
}

/// (label, path) of the unpruned, pruned and native models.
fn models(a: &LatencyBenchArgs) -> Result<Vec<(String, PathBuf)>, Failure> {
    let (unpruned, pruned) = match (&a.run, &a.unpruned, &a.pruned) {
        (Some(d), _, _) => (d.join("unpruned.onnx"), d.join("pruned.onnx")),
        (None, Some(u), Some(p)) => (u.clone(), p.clone()),
        _ => {
            return Err(Failure::input(anyhow::anyhow!(
                "give --run RUN_DIR, or --pruned and --unpruned"
            )))
        }
    };
    let mut v = vec![("unpruned".to_string(), unpruned), ("pruned".to_string(), pruned)];
    if let Some(n) = &a.native {
        v.push(("native".to_string(), n.clone()));
    }
    Ok(v)
}

/// C, H, W of the model's first input (fixed dims).
fn input_dims(g: &rlal::ir::Graph) -> anyhow::Result<Vec<usize>> {
    let id = *g.inputs.first().context("the model has no input")?;
    let shape = g.value(id).shape.clone().context("the input has no declared shape")?;
    shape
        .iter()
        .skip(1)
        .map(|d| match d {
            rlal::ir::Dim::Fixed(n) => Ok(*n),
            other => anyhow::bail!("input dimension {other} is not fixed"),
        })
        .collect()
}

type Loaded = (String, Vec<u8>, Vec<usize>, Box<dyn Runner>);

/// Interleaved timings (one run of each model in turn) and each model's profile at batch `b`.
fn at_batch(a: &LatencyBenchArgs, loaded: &mut [Loaded], b: usize) -> anyhow::Result<BatchReport> {
    let shape = |dims: &[usize]| [vec![b], dims.to_vec()].concat();
    let inputs: Vec<Vec<f32>> =
        loaded.iter().map(|(_, _, d, _)| latency::random_input(&shape(d), 7)).collect();
    for _ in 0..a.warmup {
        for (m, x) in loaded.iter_mut().zip(&inputs) {
            m.3.run(&shape(&m.2), x.clone())?;
        }
    }
    let mut times = vec![Vec::with_capacity(a.runs); loaded.len()];
    for _ in 0..a.runs {
        for ((m, x), t) in loaded.iter_mut().zip(&inputs).zip(&mut times) {
            let d = x.clone();
            let s = std::time::Instant::now();
            m.3.run(&shape(&m.2), d)?;
            t.push(s.elapsed().as_secs_f64() * 1e3);
        }
    }
    let medians: Vec<f64> = times.iter_mut().map(|t| median(t)).collect();
    let mut models = Vec::new();
    for ((name, bytes, dims, _), &ms) in loaded.iter().zip(&medians) {
        let prof = profile::profile(bytes, &shape(dims), a.threads, a.warmup, a.runs.min(20))
            .with_context(|| format!("profiling the {name} model"))?;
        models.push(ModelAt {
            model: name.clone(),
            median_ms: ms,
            speedup: medians[0] / ms,
            profile: prof,
        });
    }
    let pruned_over_native = medians.get(2).map(|n| medians[1] / n);
    Ok(BatchReport { batch: b, models, pruned_over_native })
}

fn median(t: &mut [f64]) -> f64 {
    t.sort_by(f64::total_cmp);
    let n = t.len();
    if n % 2 == 1 {
        t[n / 2]
    } else {
        (t[n / 2 - 1] + t[n / 2]) / 2.0
    }
}

fn text(r: &BatchReport, top: usize) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let _ = writeln!(s, "batch {}", r.batch);
    for m in &r.models {
        let _ = writeln!(
            s,
            "  {:<9} {:>9.3} ms  {:>5.2}x vs unpruned",
            m.model, m.median_ms, m.speedup
        );
    }
    if let Some(x) = r.pruned_over_native {
        let _ = writeln!(s, "  pruned / native: {x:.3} (1.0: surgery adds nothing)");
    }
    let ops: Vec<&String> = r.models[0].profile.by_op.iter().take(top).map(|(o, _)| o).collect();
    let mut extra: Vec<&String> = r
        .models
        .iter()
        .flat_map(|m| m.profile.by_op.iter().take(top).map(|(o, _)| o))
        .filter(|o| !ops.contains(o))
        .collect();
    extra.sort();
    extra.dedup();
    let _ = write!(s, "  {:<22}", "ms/run by op type");
    for m in &r.models {
        let _ = write!(s, " {:>10}", m.model);
    }
    let _ = writeln!(s);
    for op in ops.into_iter().chain(extra) {
        let _ = write!(s, "  {op:<22}");
        for m in &r.models {
            let _ = write!(s, " {:>10.3}", m.profile.ms(op));
        }
        let _ = writeln!(s);
    }
    let _ = write!(s, "  {:<22}", "all kernels");
    for m in &r.models {
        let _ = write!(s, " {:>10.3}", m.profile.total_ms);
    }
    let _ = writeln!(s);
    s
}
