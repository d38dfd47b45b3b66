//! `rlal bench <what>`: performance measurements of rlal's engines.
//!
//! `rlal bench train --model m.onnx`: training-step throughput of the libtorch
//! executor. The model is imported like `rlal train` does it (normalised,
//! identity BatchNormalization inserted after convs lacking one), fed random
//! input of the graph's input shape and random labels, and full steps are timed:
//! forward in train mode, cross-entropy, backward, SGD (momentum 0.9, weight
//! decay 1e-4). After `--warmup` untimed steps, `--steps` steps are timed one by
//! one; the figure is `batch / median step time`. `tools/bench_train_torch.py`
//! measures the same in PyTorch eager, `tools/bench_train.sh` compares the two.
use super::{parse_dims, Failure};
use anyhow::Context;
use rlal::analysis::{self, ImportOptions};
use rlal::train::optim::{Sgd, SgdConfig};
use rlal::train::recipe::{DeviceKind, InsertBn};
use rlal::train::{setup, Net};
use std::path::PathBuf;
use std::time::Instant;
use tch::{Device, Kind, Reduction, Tensor};

#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub what: BenchCommand,
}

#[derive(clap::Subcommand, Debug)]
pub enum BenchCommand {
    /// Training-step throughput (images/s) of rlal's libtorch executor on an ONNX graph.
    Train(TrainBenchArgs),
}

#[derive(clap::Args, Debug)]
pub struct TrainBenchArgs {
    /// The ONNX model (`.onnx` or `.onnx.gz`).
    #[arg(long)]
    pub model: PathBuf,
    /// Images per step.
    #[arg(long, default_value_t = 128)]
    pub batch: usize,
    /// Timed steps (the median and mean are over these).
    #[arg(long, default_value_t = 20)]
    pub steps: usize,
    /// Untimed steps first (allocator and kernel warm-up).
    #[arg(long, default_value_t = 3)]
    pub warmup: usize,
    /// libtorch intra-op threads (0: libtorch's default).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Compute device.
    #[arg(long, value_enum, default_value = "auto")]
    pub device: DeviceKind,
    /// Fixed input size CxHxW for graphs with dynamic H/W.
    #[arg(long, value_parser = parse_dims)]
    pub input_shape: Option<Vec<usize>>,
    /// Print a JSON object (model, batch, threads, steps, warmup, median_ms, mean_ms, images_per_s, device, ...).
    #[arg(long)]
    pub json: bool,
}

/// The figures of `rlal bench train` (the JSON printed with `--json`).
#[derive(serde::Serialize)]
struct TrainReport {
    model: String,
    engine: &'static str,
    device: String,
    batch: usize,
    threads: i32,
    steps: usize,
    warmup: usize,
    /// Median wall time of one training step, milliseconds.
    median_ms: f64,
    /// Mean wall time of one training step, milliseconds.
    mean_ms: f64,
    min_ms: f64,
    max_ms: f64,
    /// `batch / median step time`.
    images_per_s: f64,
    input: [usize; 3],
    classes: usize,
    bn_inserted: usize,
    trainable_params: i64,
    /// Loss of the last step (random labels: about ln(classes); a sanity check, not a result).
    final_loss: f64,
}

pub fn run(a: BenchArgs) -> Result<(), Failure> {
    match a.what {
        BenchCommand::Train(t) => train(t),
    }
}

fn device_name(d: Device) -> String {
    match d {
        Device::Cpu => "cpu".into(),
        Device::Cuda(i) => format!("cuda:{i}"),
        other => format!("{other:?}").to_lowercase(),
    }
}

fn sync(d: Device) {
    if let Device::Cuda(i) = d {
        tch::Cuda::synchronize(i as i64);
    }
}

fn train(a: TrainBenchArgs) -> Result<(), Failure> {
    if a.batch == 0 || a.steps == 0 {
        return Err(Failure::input(anyhow::anyhow!(
            "--batch and --steps must be at least 1"
        )));
    }
    if a.threads > 0 {
        tch::set_num_threads(a.threads as i32);
    }
    let device = a.device.device().map_err(Failure::input)?;
    let ctx = || format!("benchmarking {}", a.model.display());
    let (mut g, mut an) = analysis::import(
        &a.model,
        &ImportOptions {
            input_shape: a.input_shape.clone(),
        },
    )
    .map_err(Failure::input)?;
    let added = setup::apply_insert_bn(&mut g, &mut an, InsertBn::Auto, a.input_shape.as_deref())
        .with_context(ctx)
        .map_err(Failure::input)?;
    let input = setup::input_dims(&g, &an)
        .with_context(ctx)
        .map_err(Failure::input)?;
    let net = Net::new(&g, &an, device)
        .with_context(|| format!("building the network from {}", a.model.display()))
        .map_err(Failure::input)?;
    tch::manual_seed(0);
    let shape = [
        a.batch as i64,
        input[0] as i64,
        input[1] as i64,
        input[2] as i64,
    ];
    let x = Tensor::randn(shape, (Kind::Float, device));
    let classes = match setup::num_classes(&g, &an) {
        Some(k) => k,
        None => {
            let y = tch::no_grad(|| net.forward_t(&x, false))
                .with_context(ctx)
                .map_err(Failure::job)?;
            *y.size().last().unwrap_or(&1) as usize
        }
    };
    let y = Tensor::randint(
        classes.max(1) as i64,
        [a.batch as i64],
        (Kind::Int64, device),
    );
    let params = net.trainable();
    let trainable_params: i64 = params.iter().map(|(_, t)| t.numel() as i64).sum();
    let mut sgd = Sgd::new(
        params,
        SgdConfig {
            momentum: 0.9,
            nesterov: false,
            weight_decay: 1e-4,
        },
    );
    let mut step = || -> anyhow::Result<f64> {
        let logits = net.forward_t(&x, true)?;
        let loss = logits.f_cross_entropy_loss(&y, None::<Tensor>, Reduction::Mean, -100, 0.0)?;
        sgd.zero_grad();
        loss.f_backward()?;
        sgd.step(0.01);
        Ok(loss.f_double_value(&[])?)
    };
    let mut final_loss = f64::NAN;
    for _ in 0..a.warmup {
        final_loss = step().with_context(ctx).map_err(Failure::job)?;
    }
    sync(device);
    let mut ms = Vec::with_capacity(a.steps);
    for _ in 0..a.steps {
        let t0 = Instant::now();
        final_loss = step().with_context(ctx).map_err(Failure::job)?;
        sync(device);
        ms.push(1000.0 * t0.elapsed().as_secs_f64());
    }
    let mean_ms = ms.iter().sum::<f64>() / ms.len() as f64;
    ms.sort_by(f64::total_cmp);
    let n = ms.len();
    let median_ms = if n % 2 == 1 {
        ms[n / 2]
    } else {
        0.5 * (ms[n / 2 - 1] + ms[n / 2])
    };
    let r = TrainReport {
        model: a.model.display().to_string(),
        engine: "rlal-tch",
        device: device_name(device),
        batch: a.batch,
        threads: tch::get_num_threads(),
        steps: a.steps,
        warmup: a.warmup,
        median_ms,
        mean_ms,
        min_ms: ms[0],
        max_ms: ms[n - 1],
        images_per_s: a.batch as f64 / (median_ms / 1000.0),
        input,
        classes,
        bn_inserted: added,
        trainable_params,
        final_loss,
    };
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&r)
                .context("serialising")
                .map_err(Failure::job)?
        );
    } else {
        println!(
            "{}: {:.1} img/s ({:.1} ms/step median, {:.1} mean, {:.1}-{:.1}) training at batch {} on {} with {} threads, {} steps after {} warm-up{}",
            r.model,
            r.images_per_s,
            r.median_ms,
            r.mean_ms,
            r.min_ms,
            r.max_ms,
            r.batch,
            r.device,
            r.threads,
            r.steps,
            r.warmup,
            if added > 0 { format!("; {added} BatchNormalization inserted") } else { String::new() }
        );
    }
    Ok(())
}
