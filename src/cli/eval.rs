//! `rlal eval model.onnx --data DIR [--engine tch|ort|tract]`: classification accuracy
//! of an ONNX model on a dataset split, through any engine ([`rlal::validate::Engine`]).
use super::{args::InputArgs, Failure};
use anyhow::Context;
use rlal::analysis;
use rlal::data::{self, Loader, LoaderConfig, Split, Transform};
use rlal::train::setup;
use rlal::validate::{Engine, EngineOptions, Ep, ValidateError};
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct EvalArgs {
    /// The ONNX classifier (`.onnx` or `.onnx.gz`).
    pub model: PathBuf,
    /// Dataset directory (format detected: MNIST IDX, CIFAR binary, ImageFolder).
    #[arg(long)]
    pub data: PathBuf,
    /// Engine that runs the model.
    #[arg(long, value_enum, default_value = "tch")]
    pub engine: Engine,
    /// Split to evaluate.
    #[arg(long, value_enum, default_value = "test")]
    pub split: SplitArg,
    #[command(flatten)]
    pub norm: super::args::NormArgs,
    /// Batch size.
    #[arg(long, default_value_t = 256)]
    pub batch: usize,
    /// Threads of the engine (0: its default).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// ONNX Runtime execution provider (`--engine ort`). `cuda` needs a CUDA build of
    /// ONNX Runtime (the `onnxruntime-gpu` wheel's library in ORT_DYLIB_PATH); no fallback.
    #[arg(long, value_enum, default_value = "cpu")]
    pub ep: Ep,
    /// Device of the tch engine (`--engine tch`).
    #[arg(long, value_enum, default_value = "cpu")]
    pub device: rlal::train::recipe::DeviceKind,
    #[command(flatten)]
    pub input: InputArgs,
    /// Print a JSON object (accuracy, samples, correct, macs, params, latency_ms, engine).
    #[arg(long)]
    pub json: bool,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum SplitArg {
    Train,
    Test,
}

#[derive(serde::Serialize)]
struct Report {
    model: String,
    engine: &'static str,
    split: String,
    accuracy: f64,
    correct: usize,
    samples: usize,
    macs: u64,
    params: u64,
    /// Mean wall time per batch of `batch` images, milliseconds.
    latency_ms: f64,
    batch: usize,
}

pub fn run(a: EvalArgs) -> Result<(), Failure> {
    if a.ep != Ep::Cpu {
        if !matches!(a.engine, Engine::Ort) {
            return Err(Failure::input(anyhow::anyhow!(
                "--ep {} applies to --engine ort only",
                a.ep.name()
            )));
        }
        if let Err(e @ ValidateError::Ep { .. }) = rlal::validate::check_ep(a.ep) {
            return Err(Failure::input(anyhow::Error::from(e)));
        }
    }
    if a.device != rlal::train::recipe::DeviceKind::Cpu && !matches!(a.engine, Engine::Tch) {
        return Err(Failure::input(anyhow::anyhow!(
            "--device applies to --engine tch only (ONNX Runtime takes --ep)"
        )));
    }
    let device = match a.engine {
        Engine::Tch => a.device.device().map_err(Failure::input)?,
        _ => tch::Device::Cpu,
    };
    let (g, an) = analysis::import(&a.model, &a.input.options()).map_err(Failure::input)?;
    let input = setup::model_input(&g, &an)
        .with_context(|| format!("{}: cannot evaluate it", a.model.display()))
        .map_err(Failure::input)?;
    let split = match a.split {
        SplitArg::Train => Split::Train,
        SplitArg::Test => Split::Test,
    };
    let chw = input.chw();
    let recorded = super::model_preprocess(&a.model, &g.meta.props)?;
    // Image folders are brought to the model's input the way it was trained.
    let crop_fraction = recorded.as_ref().map_or(0.875, |p| p.crop_fraction);
    let opts = data::OpenOptions {
        size: Some([chw[1], chw[2]]),
        channels: Some(chw[0]),
        resize: data::ResizeMode::CenterCrop { crop_fraction },
        num_classes: None,
    };
    let ds = data::open(&a.data, split, &opts).map_err(Failure::input)?;
    data::check_input(&*ds, chw)
        .with_context(|| format!("the data does not fit model {}", a.model.display()))
        .map_err(Failure::input)?;
    let norm = a.norm.resolve(&a.model, recorded.as_ref());
    let loader = Loader::all(
        ds,
        Transform::eval(norm).with_layout(input.layout),
        LoaderConfig { batch_size: a.batch.max(1), shuffle: false, ..Default::default() },
    )
    .map_err(Failure::input)?;
    let job_or_input = |e: ValidateError| {
        if e.is_input() {
            Failure::input(e)
        } else {
            Failure::job(e)
        }
    };
    let o = EngineOptions { threads: a.threads, ep: a.ep, device };
    let mut runner = a.engine.open(&g, &an, o).map_err(job_or_input)?;
    let acc = rlal::validate::accuracy(runner.as_mut(), &loader).map_err(job_or_input)?;
    let (correct, n, secs, batches) = (acc.correct, acc.samples, acc.seconds, acc.batches);
    let r = Report {
        model: a.model.display().to_string(),
        engine: runner.engine(),
        split: format!("{split}"),
        accuracy: correct as f64 / n.max(1) as f64,
        correct,
        samples: n,
        macs: an.cost.full_macs(),
        params: an.cost.full_params(),
        latency_ms: 1000.0 * secs / batches.max(1) as f64,
        batch: a.batch,
    };
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&r).context("serialising").map_err(Failure::job)?
        );
    } else {
        println!("{}: {:.2}% ({}/{}) on the {} split with {}; {} MACs, {} params, {:.2} ms per batch of {}", r.model, 100.0 * r.accuracy, correct, n, r.split, r.engine, r.macs, r.params, r.latency_ms, r.batch);
    }
    Ok(())
}
