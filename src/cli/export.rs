//! `rlal export OUT.onnx --model IN.onnx (--uniform R | --ratios FILE.yaml)`:
//! prune channels by filter norm, write the smaller model atomically, and
//! validate it (MACs/params, ONNX Runtime and tract, latency, accuracy).
//! `rlal export OUT.onnx --run runs/NAME`: write the final (fine-tuned,
//! pruned) model of an `rlal prune` run and re-validate it against the run's
//! unpruned model on the run's dataset.
use super::{args::InputArgs, Failure};
use anyhow::{anyhow, Context};
use rlal::analysis::{self, Analysis, ImportOptions};
use rlal::ir::Graph;
use rlal::ir::Layout;
use rlal::rewrite::{rank, surgery, Criterion, Plan};
use rlal::validate::compare::{self, Check, Comparison, Model, Setup, Timing};
use rlal::validate::latency::Latency;
use rlal::validate::{Ep, ValidateError};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Ratios file (`--ratios`): a YAML mapping from a prunable layer (its index
/// in `rlal import`'s table, or the name of its producer conv) to the fraction
/// of its channels to remove (`floor(ratio × channels)` go, at least one
/// stays). Layers not listed keep all channels. Example:
///
/// ```yaml
/// 0: 0.5
/// 3: 0.25
/// /layer3/layer3.2/conv1/Conv: 0.6
/// ```
#[derive(clap::Args, Debug)]
#[command(
    after_help = "RATIOS FILE (--ratios): a YAML mapping from a prunable layer (index in `rlal import`'s table, or its producer conv's name) to the fraction of its channels to remove, e.g.\n  0: 0.5\n  /layer3/layer3.2/conv1/Conv: 0.6\nLayers not listed are not pruned. Ratios are in [0, 1); floor(ratio x channels) channels go, at least one stays.\n\nExit codes: 0 ok, 1 the job failed, 2 bad input (model, flags, ratios file)."
)]
pub struct ExportArgs {
    /// The normalisation of `--data`, resolved from the flags and the model (not a flag).
    #[arg(skip)]
    pub normalize: Option<rlal::data::Normalize>,
    /// Where to write the pruned model (`.onnx`, or `.onnx.gz`); written atomically (temp file + rename).
    pub out: PathBuf,
    /// The source ONNX model (`.onnx` or `.onnx.gz`).
    #[arg(long, required_unless_present = "run", conflicts_with = "run")]
    pub model: Option<PathBuf>,
    /// An `rlal prune` run directory: export its pruned.onnx (fine-tuned) and validate it against its unpruned.onnx.
    #[arg(long, value_name = "RUN_DIR", conflicts_with_all = ["uniform", "ratios", "align", "criterion"])]
    pub run: Option<PathBuf>,
    /// Remove this fraction of channels from every prunable layer, e.g. 0.5.
    #[arg(long, conflicts_with = "ratios", required_unless_present_any = ["ratios", "run"])]
    pub uniform: Option<f64>,
    /// Per-layer ratios from a YAML file (see below).
    #[arg(long)]
    pub ratios: Option<PathBuf>,
    /// Filter-norm criterion that ranks channels (ties keep the lower index).
    #[arg(long, value_enum, default_value_t = Criterion::L1)]
    pub criterion: Criterion,
    /// Round each layer's kept channel count up to a multiple of this (1: the paper's floor rule
    /// only). 8 or 16 suit ONNX Runtime's blocked CPU convs.
    #[arg(long, default_value_t = 1)]
    pub align: usize,
    /// Requested MACs ratio (pruned / original), reported next to the achieved one.
    #[arg(long)]
    pub target: Option<f64>,
    /// Print the plan and the predicted MACs/params; write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Print the report as JSON instead of tables.
    #[arg(long)]
    pub json: bool,
    /// Dataset folder (MNIST IDX, CIFAR binary, class folders): report accuracy before/after on its test split.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Evaluate at most this many samples of `--data` (default: all).
    #[arg(long)]
    pub samples: Option<usize>,
    /// The normalisation of `--data`; given, it is recorded in the written model.
    #[command(flatten)]
    pub norm: super::args::NormArgs,
    /// Batch size N of the second latency measurement (the first is batch 1) and of `--data`.
    #[arg(long, default_value_t = 64)]
    pub batch: usize,
    /// Timed runs per latency figure (median reported, after warm-up).
    #[arg(long, default_value_t = 20)]
    pub runs: usize,
    /// Untimed warm-up runs before each latency figure.
    #[arg(long, default_value_t = 3)]
    pub warmup: usize,
    /// ONNX Runtime intra-op threads (0: its default).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// ONNX Runtime execution provider of the validation. `cuda` needs a CUDA build of
    /// ONNX Runtime (the `onnxruntime-gpu` wheel's libonnxruntime.so in ORT_DYLIB_PATH)
    /// and fails with a clear error otherwise; latency then includes host↔device copies.
    #[arg(long, value_enum, default_value = "cpu")]
    pub ep: Ep,
    /// Keep BatchNormalization nodes instead of folding them into the convs.
    #[arg(long)]
    pub keep_bn: bool,
    /// Skip the runtime validation (ORT/tract runs, latency, accuracy).
    #[arg(long)]
    pub no_validate: bool,
    #[command(flatten)]
    pub input: InputArgs,
}

/// One pruned layer in the report.
#[derive(Serialize)]
struct LayerRow {
    layer: Option<usize>,
    name: String,
    from: usize,
    to: usize,
}

#[derive(Serialize, Default)]
struct Validation {
    /// Engine of the latency/accuracy figures ("ort", "ort-cuda", or "tract" when ONNX Runtime is missing).
    engine: String,
    latency_before: Vec<Latency>,
    latency_after: Vec<Latency>,
    /// before / after median, per batch size.
    speedup: Vec<(usize, f64)>,
    /// Max |pruned - original with the removed channels zeroed| (random input).
    max_diff_masked: Option<f32>,
    /// Max |ONNX Runtime - tract| on the pruned model (random input).
    max_diff_ort_tract: Option<f32>,
    accuracy_before: Option<f64>,
    accuracy_after: Option<f64>,
    samples: Option<usize>,
}

#[derive(Serialize)]
struct Report {
    model: String,
    out: Option<String>,
    criterion: Criterion,
    /// What happened to BatchNormalization nodes ("kept", "N folded into convs").
    bn: String,
    layers: Vec<LayerRow>,
    macs_before: u64,
    macs_after: u64,
    macs_ratio: f64,
    params_before: u64,
    params_after: u64,
    params_ratio: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    target_macs_ratio: Option<f64>,
    surgery_ms: f64,
    write_ms: f64,
    bytes: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    validation: Option<Validation>,
}

pub fn run(a: ExportArgs) -> Result<(), Failure> {
    check_args(&a)?;
    if let Some(dir) = a.run.clone() {
        return run_export(a, &dir);
    }
    let model = a
        .model
        .clone()
        .ok_or_else(|| Failure::input(anyhow!("give --model FILE or --run RUN_DIR")))?;
    let opts = a.input.options();
    let (g, an) = analysis::import(&model, &opts).map_err(Failure::input)?;
    let a = with_normalize(a, &model, &g)?;
    let cannot = format!("{}: cannot validate the pruned model", model.display());
    ensure_validatable(&a, &g, &an, &cannot)?;
    let ratios = ratios(&a, &an)?;
    let keep = rank::keep_sets_aligned(&g, &an, &ratios, a.criterion, a.align);
    let t0 = Instant::now();
    let plan = Plan::build(&g, &an, &keep).map_err(Failure::input)?;
    let mut report = plan_report(&a, &model, &an, &plan);
    if a.dry_run {
        if !a.json {
            print!("{plan}");
        }
        return print_report(&report, a.json);
    }
    let pruned =
        surgery::prune(&g, &an, &keep, opts.input_shape.as_deref()).map_err(Failure::job)?;
    report.macs_after = pruned.macs_after;
    report.params_after = pruned.params_after;
    report.macs_ratio = ratio(report.macs_after, report.macs_before);
    report.params_ratio = ratio(report.params_after, report.params_before);
    report.surgery_ms = t0.elapsed().as_secs_f64() * 1e3;
    let mut out_graph = pruned.graph.clone();
    record_preprocess(&a, &g, &an, &mut out_graph);
    if !a.keep_bn {
        let n = rlal::ir::bn::fold_bn(&mut out_graph);
        rlal::rewrite::check::check(&out_graph, opts.input_shape.as_deref())
            .context("after folding BatchNormalization")
            .map_err(Failure::job)?;
        report.bn = format!("{n} folded into convs");
    }
    write_and_validate(&a, &out_graph, &mut report, |w| validate(&a, &g, &an, &pruned, w))?;
    print_report(&report, a.json)
}

/// Flag values that clap cannot check, and a CUDA execution provider that this ONNX
/// Runtime lacks (refused before any work; ORT missing altogether falls back to tract).
fn check_args(a: &ExportArgs) -> Result<(), Failure> {
    if let Some(t) = a.target.filter(|t| !(0.0..=1.0).contains(t)) {
        return Err(Failure::input(anyhow!("--target {t} must be a MACs ratio in [0, 1]")));
    }
    if a.batch == 0 {
        return Err(Failure::input(anyhow!("--batch must be at least 1")));
    }
    if !a.no_validate {
        if let Err(e @ ValidateError::Ep { .. }) = rlal::validate::check_ep(a.ep) {
            return Err(Failure::input(anyhow::Error::from(e)));
        }
    }
    Ok(())
}

/// Unless `--dry-run` or `--no-validate`: an input error when validation cannot feed `g`
/// (`cannot` begins the message).
fn ensure_validatable(
    a: &ExportArgs,
    g: &Graph,
    an: &Analysis,
    cannot: &str,
) -> Result<(), Failure> {
    if !a.dry_run && !a.no_validate {
        data_input(g, an)
            .with_context(|| format!("{cannot} (--no-validate skips it)"))
            .map_err(Failure::input)?;
    }
    Ok(())
}

/// One ratio per prunable layer, from `--ratios` or `--uniform`.
fn ratios(a: &ExportArgs, an: &Analysis) -> Result<Vec<f64>, Failure> {
    match (&a.ratios, a.uniform) {
        (Some(file), _) => read_ratios(file, an).map_err(Failure::input),
        (None, Some(r)) if (0.0..1.0).contains(&r) => Ok(vec![r; an.layers.len()]),
        (None, Some(r)) => Err(Failure::input(anyhow!("--uniform {r} must be in [0, 1)"))),
        (None, None) => Err(Failure::input(anyhow!("give --uniform R or --ratios FILE"))),
    }
}

/// `after / before` (0 before counts as 1).
fn ratio(after: u64, before: u64) -> f64 {
    after as f64 / before.max(1) as f64
}

/// The report of `plan` as predicted (MACs and params of the kept channels), before surgery.
fn plan_report(a: &ExportArgs, model: &Path, an: &Analysis, plan: &Plan) -> Report {
    let layers: Vec<LayerRow> = plan
        .changes
        .iter()
        .map(|c| LayerRow {
            layer: c.layer,
            name: an
                .layers
                .iter()
                .find(|l| Some(l.index) == c.layer)
                .map_or(c.label.clone(), |l| l.name.clone()),
            from: c.from,
            to: c.to,
        })
        .collect();
    let (macs_before, params_before) = (an.cost.full_macs(), an.cost.full_params());
    let (macs_after, params_after) = (an.cost.macs(&plan.kept), an.cost.params(&plan.kept));
    Report {
        model: model.display().to_string(),
        out: None,
        criterion: a.criterion,
        bn: if a.keep_bn { "kept".into() } else { "folded after surgery".into() },
        layers,
        macs_before,
        macs_after,
        macs_ratio: ratio(macs_after, macs_before),
        params_before,
        params_after,
        params_ratio: ratio(params_after, params_before),
        target_macs_ratio: a.target,
        surgery_ms: 0.0,
        write_ms: 0.0,
        bytes: 0,
        validation: None,
    }
}

/// Writes `g` to `OUT` atomically (time and size into `report`) and, unless
/// `--no-validate`, re-reads it and validates what was written with `check`.
fn write_and_validate(
    a: &ExportArgs,
    g: &Graph,
    report: &mut Report,
    check: impl FnOnce(&Graph) -> anyhow::Result<Validation>,
) -> Result<(), Failure> {
    let t1 = Instant::now();
    rlal::onnx::save(g, &a.out).map_err(Failure::job)?;
    report.write_ms = t1.elapsed().as_secs_f64() * 1e3;
    report.bytes = std::fs::metadata(&a.out).map(|m| m.len() as usize).unwrap_or(0);
    report.out = Some(a.out.display().to_string());
    if !a.no_validate {
        let written = rlal::onnx::load(&a.out)
            .with_context(|| format!("re-reading {}", a.out.display()))
            .map_err(Failure::job)?;
        report.validation = Some(check(&written).map_err(Failure::job)?);
    }
    Ok(())
}

/// Prints the report: JSON with `--json`, else tables.
fn print_report(report: &Report, json: bool) -> Result<(), Failure> {
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(report)
                .context("serialising the report")
                .map_err(Failure::job)?
        );
    } else {
        print!("{}", text(report));
    }
    Ok(())
}

/// `--run DIR`: the run's final model, re-validated against its unpruned model.
fn run_export(mut a: ExportArgs, dir: &Path) -> Result<(), Failure> {
    let files = RunFiles::open(dir)?;
    let opts = run_defaults(&mut a, &files.recipe);
    let (g0, an0) = analysis::import(&files.unpruned, &opts).map_err(Failure::input)?;
    let (mut g1, an1) = analysis::import(&files.pruned, &opts).map_err(Failure::input)?;
    let a = with_normalize(a, &files.pruned, &g1)?;
    record_preprocess(&a, &g0, &an0, &mut g1);
    let cannot = format!("{}: cannot validate it", files.pruned.display());
    ensure_validatable(&a, &g1, &an1, &cannot)?;
    let mut report = final_report(&a, &files, &an0, &an1);
    if !a.dry_run {
        write_and_validate(&a, &g1, &mut report, |w| validate_final(&a, &g0, &an1, w))?;
    }
    print_report(&report, a.json)
}

/// What `rlal export --run DIR` reads from a finished `rlal prune` run.
struct RunFiles {
    pruned: PathBuf,
    unpruned: PathBuf,
    recipe: rlal::search::Recipe,
    report: rlal::search::report::Report,
}

impl RunFiles {
    fn open(dir: &Path) -> Result<RunFiles, Failure> {
        let need = |f: &str| -> Result<PathBuf, Failure> {
            let p = dir.join(f);
            if p.is_file() {
                Ok(p)
            } else {
                Err(Failure::input(anyhow!("{}: no {f}; is this a finished `rlal prune` run directory? (`rlal prune --resume {}` finishes an interrupted one)", dir.display(), dir.display())))
            }
        };
        let (pruned, unpruned, recipe_p, report_p) = (
            need("pruned.onnx")?,
            need("unpruned.onnx")?,
            need("recipe.yaml")?,
            need("report.json")?,
        );
        let recipe = rlal::search::Recipe::load(&recipe_p)?;
        let report = serde_json::from_slice(
            &std::fs::read(&report_p)
                .with_context(|| format!("reading {}", report_p.display()))
                .map_err(Failure::input)?,
        )
        .with_context(|| format!("{}: not an rlal prune report", report_p.display()))
        .map_err(Failure::input)?;
        Ok(RunFiles { pruned, unpruned, recipe, report })
    }
}

/// `a` with the normalisation of `--data` resolved: the flags, else what `model`
/// (imported as `g`) records, else the defaults.
fn with_normalize(mut a: ExportArgs, model: &Path, g: &Graph) -> Result<ExportArgs, Failure> {
    let recorded = super::model_preprocess(model, &g.meta.props)?;
    if a.data.is_some() || a.norm.given() {
        a.normalize = Some(a.norm.resolve(model, recorded.as_ref()));
    }
    Ok(a)
}

/// Records the preprocessing given on the command line (or by the run's recipe) in
/// the written model `out`; without flags it keeps what the source model recorded.
fn record_preprocess(a: &ExportArgs, g: &Graph, an: &Analysis, out: &mut Graph) {
    let (Some(norm), true) = (&a.normalize, a.norm.given()) else { return };
    let Ok(input) = rlal::train::setup::model_input(g, an) else { return };
    let pre = rlal::data::Preprocess {
        normalize: norm.clone(),
        crop_fraction: out
            .meta
            .prop(rlal::data::preprocess::CROP)
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.875),
        input: input.chw(),
        classes: rlal::train::setup::num_classes(g, an).unwrap_or(0),
    };
    out.meta.set_props(pre.to_props());
}

/// The run's dataset and preprocessing unless given on the command line; the import
/// options of its models (the recipe's input shape and layout, the flags over them; the
/// recipe's bound inputs are constants in the files the run wrote).
fn run_defaults(a: &mut ExportArgs, recipe: &rlal::search::Recipe) -> ImportOptions {
    if a.data.is_none() {
        a.data = recipe.data.clone().filter(|d| d.is_dir());
        a.norm.scale = Some(recipe.training.scale);
        a.norm.mean = Some(recipe.training.mean.clone());
        a.norm.std = Some(recipe.training.std.clone());
    }
    let mut o = ImportOptions { bind: Default::default(), ..recipe.import_options() };
    a.input.apply(&mut o.input_shape, &mut o.input_layout, &mut o.bind);
    o
}

/// The report of a run's final model (`an1`) against its unpruned model (`an0`).
fn final_report(a: &ExportArgs, files: &RunFiles, an0: &Analysis, an1: &Analysis) -> Report {
    let recipe = &files.recipe;
    Report {
        model: files.pruned.display().to_string(),
        out: None,
        criterion: match recipe.search.criterion {
            rlal::search::recipe::NormKind::L1 => Criterion::L1,
            rlal::search::recipe::NormKind::L2 => Criterion::L2,
        },
        bn: if recipe.training.keep_bn { "kept".into() } else { "folded (by rlal prune)".into() },
        layers: files
            .report
            .layers
            .iter()
            .filter(|l| l.kept < l.channels)
            .map(|l| LayerRow {
                layer: Some(l.layer),
                name: l.name.clone(),
                from: l.channels,
                to: l.kept,
            })
            .collect(),
        macs_before: an0.cost.full_macs(),
        macs_after: an1.cost.full_macs(),
        macs_ratio: ratio(an1.cost.full_macs(), an0.cost.full_macs()),
        params_before: an0.cost.full_params(),
        params_after: an1.cost.full_params(),
        params_ratio: ratio(an1.cost.full_params(), an0.cost.full_params()),
        target_macs_ratio: a.target.or(Some(recipe.budget())
            .filter(|b| b.metric == rlal::agent::Metric::Macs)
            .map(|b| b.ratio)),
        surgery_ms: 0.0,
        write_ms: 0.0,
        bytes: 0,
        validation: None,
    }
}

/// Validation of a fine-tuned pruned model (no masked counterpart: its weights were trained further).
fn validate_final(
    a: &ExportArgs,
    before_g: &Graph,
    an: &Analysis,
    written: &Graph,
) -> anyhow::Result<Validation> {
    let sample = data_input(written, an)?;
    compare(
        a,
        (&sample, written.meta.input_layout),
        &rlal::onnx::to_bytes(before_g),
        &rlal::onnx::to_bytes(written),
        None,
        "unpruned",
    )
}

/// The shape (batch 1) of the model's first graph input, which validation feeds.
fn data_input(g: &Graph, an: &Analysis) -> anyhow::Result<Vec<usize>> {
    let &i = g.inputs.first().context("the model has no graph input to feed")?;
    let name = &g.values[i].name;
    let shape = an
        .facts
        .get(i)
        .and_then(|f| f.as_ref())
        .with_context(|| format!("graph input '{name}' has an unknown shape"))?
        .concrete(1);
    anyhow::ensure!(
        !shape.is_empty(),
        "graph input '{name}' is a scalar; validation feeds a batch of images"
    );
    Ok(shape)
}

/// Reads a ratios file into one ratio per prunable layer.
fn read_ratios(path: &Path, an: &Analysis) -> anyhow::Result<Vec<f64>> {
    let src = std::fs::read_to_string(path)
        .with_context(|| format!("reading the ratios file {}", path.display()))?;
    let doc: serde_yaml::Value = serde_yaml::from_str(&src)
        .with_context(|| format!("{}: not valid YAML", path.display()))?;
    let serde_yaml::Value::Mapping(map) = doc else {
        return Err(anyhow!(
            "{}: expected a mapping from layer (index or producer name) to ratio",
            path.display()
        ));
    };
    let mut out = vec![0.0; an.layers.len()];
    let mut seen = vec![None::<String>; an.layers.len()];
    for (k, v) in map {
        let key = match &k {
            serde_yaml::Value::Number(n) => n.to_string(),
            serde_yaml::Value::String(s) => s.clone(),
            other => {
                return Err(anyhow!(
                    "{}: field {other:?}: keys must be layer indices or producer names",
                    path.display()
                ))
            }
        };
        let field = |msg: String| anyhow!("{}: field '{key}': {msg}", path.display());
        let layer = match key.parse::<usize>() {
            Ok(i) => an.layers.get(i).ok_or_else(|| {
                field(format!("no prunable layer {i} (the model has {})", an.layers.len()))
            })?,
            Err(_) => an
                .layers
                .iter()
                .find(|l| {
                    l.name == key
                        || l.module.as_deref() == Some(key.as_str())
                        || l.producers.contains(&key)
                })
                .ok_or_else(|| {
                    field(
                        "no prunable layer has a producer of this name (see `rlal import`)".into(),
                    )
                })?,
        };
        let r =
            v.as_f64().ok_or_else(|| field(format!("the ratio must be a number, found {v:?}")))?;
        if !(0.0..1.0).contains(&r) {
            return Err(field(format!("ratio {r} must be in [0, 1)")));
        }
        if let Some(prev) = seen[layer.index].replace(key.clone()) {
            return Err(field(format!("layer {} is already given as '{prev}'", layer.index)));
        }
        out[layer.index] = r;
    }
    Ok(out)
}

fn validate(
    a: &ExportArgs,
    g: &Graph,
    an: &Analysis,
    pruned: &surgery::Pruned,
    written: &Graph,
) -> anyhow::Result<Validation> {
    let sample = data_input(g, an)?;
    let masked_b = rlal::onnx::to_bytes(&surgery::mask(g, an, &pruned.plan));
    compare(
        a,
        (&sample, g.meta.input_layout),
        &rlal::onnx::to_bytes(g),
        &rlal::onnx::to_bytes(written),
        Some(&masked_b),
        "original",
    )
}

/// Runs the model before and after pruning ([`compare::compare`]): output difference
/// against the masked original (when given) and against tract, latency at batch 1 and
/// `--batch`, accuracy on `--data`. `input`: the shape (batch 1) and layout of the image input.
fn compare(
    a: &ExportArgs,
    (sample, layout): (&[usize], Layout),
    before_b: &[u8],
    pruned_b: &[u8],
    masked_b: Option<&[u8]>,
    before_name: &str,
) -> anyhow::Result<Validation> {
    let test = a.data.as_deref().map(|dir| test_loader(a, dir, layout)).transpose()?;
    let timings = [1, a.batch].map(|batch| Timing { batch, warmup: a.warmup, runs: a.runs });
    let s = Setup { sample, threads: a.threads, ep: a.ep, timings: &timings, test: test.as_ref() };
    let check = Check { masked: masked_b.map(|bytes| Model { name: "masked original", bytes }) };
    let c = compare::compare(
        Model { name: before_name, bytes: before_b },
        Model { name: "pruned", bytes: pruned_b },
        Some(check),
        &s,
    )?;
    Ok(Validation::from(c))
}

impl From<Comparison> for Validation {
    fn from(c: Comparison) -> Validation {
        let (before, after) = c.accuracy.unzip();
        Validation {
            speedup: c.speedup(),
            engine: c.engine,
            latency_before: c.before,
            latency_after: c.after,
            max_diff_masked: c.max_diff_masked,
            max_diff_ort_tract: c.max_diff_ort_tract,
            accuracy_before: before.map(|x| x.rate()),
            accuracy_after: after.map(|x| x.rate()),
            samples: before.map(|x| x.samples),
        }
    }
}

/// The first `--samples` images of the test split of `dir` (images in `layout`).
fn test_loader(a: &ExportArgs, dir: &Path, layout: Layout) -> anyhow::Result<rlal::data::Loader> {
    use rlal::data::{self, Loader, LoaderConfig, OpenOptions, Split, Transform};
    let ds = data::open(dir, Split::Test, &OpenOptions::default())
        .with_context(|| format!("opening the dataset {}", dir.display()))?;
    let n = a.samples.unwrap_or(usize::MAX).min(ds.len());
    let norm = a.normalize.clone().unwrap_or_default();
    let cfg =
        LoaderConfig { batch_size: a.batch, shuffle: false, workers: 0, ..Default::default() };
    let tf = Transform::eval(norm).with_layout(layout);
    Ok(Loader::new(ds, (0..n).collect(), tf, cfg)?)
}

fn text(r: &Report) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let _ = writeln!(s, "model   {}", r.model);
    if let Some(o) = &r.out {
        let _ = writeln!(
            s,
            "wrote   {} ({} bytes; surgery {:.0} ms, write {:.0} ms; BN {})",
            o, r.bytes, r.surgery_ms, r.write_ms, r.bn
        );
    }
    let _ = writeln!(s, "pruned  {} layer(s), criterion {:?}", r.layers.len(), r.criterion);
    let _ = writeln!(s, "\n{:<10} {:>16} {:>16} {:>8}", "", "before", "after", "ratio");
    let _ = writeln!(
        s,
        "{:<10} {:>16} {:>16} {:>8.3}",
        "MACs", r.macs_before, r.macs_after, r.macs_ratio
    );
    let _ = writeln!(
        s,
        "{:<10} {:>16} {:>16} {:>8.3}",
        "params", r.params_before, r.params_after, r.params_ratio
    );
    if let Some(t) = r.target_macs_ratio {
        let _ = writeln!(
            s,
            "target MACs ratio {t:.3}: achieved {:.3} ({:+.3})",
            r.macs_ratio,
            r.macs_ratio - t
        );
    }
    if let Some(v) = &r.validation {
        let _ = writeln!(s, "\nlatency ({}, median of runs after warm-up)", v.engine);
        for ((b, a), (n, sp)) in v.latency_before.iter().zip(&v.latency_after).zip(&v.speedup) {
            let _ = writeln!(
                s,
                "  batch {n:<4} {:>10.3} ms {:>10.3} ms   speed-up {sp:.2}x",
                b.median_ms, a.median_ms
            );
        }
        if let Some(d) = v.max_diff_masked {
            let _ = writeln!(s, "max |pruned - masked original|  {d:.3e}");
        }
        if let Some(d) = v.max_diff_ort_tract {
            let _ = writeln!(s, "max |ort - tract| (pruned)       {d:.3e}");
        }
        if let (Some(b), Some(a), Some(n)) = (v.accuracy_before, v.accuracy_after, v.samples) {
            let _ = writeln!(
                s,
                "accuracy ({n} samples)  before {:.2}%  after {:.2}%",
                b * 100.0,
                a * 100.0
            );
        }
    }
    s
}
