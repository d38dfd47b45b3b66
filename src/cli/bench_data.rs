//! `rlal bench data`: the loader's images/s against its worker threads on an
//! ImageNet-style folder of JPEGs (generated when `--generate N` is given), with
//! the ImageNet recipes' transforms: `--pipeline train` decodes, takes a random-resized
//! crop (area 8–100%) to 224, flips, normalises and collates; `eval` resizes the
//! shorter side to 256 and takes the centre 224. `tools/bench_data.sh` runs
//! torchvision's `DataLoader` with the same transforms on the same files and cores.
use super::Failure;
use anyhow::Context;
use rlal::data::Transform;
use rlal::data::{self, bench, Loader, LoaderConfig, Normalize, OpenOptions, ResizeMode, Split};
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct DataBenchArgs {
    /// The ImageFolder (`DIR/train/<class>/*.jpg`).
    #[arg(long, default_value = "runs/bench-data")]
    pub dir: PathBuf,
    /// Generate this many ImageNet-size JPEGs in `--dir` first (kept between runs).
    #[arg(long)]
    pub generate: Option<usize>,
    /// Worker thread counts to measure (0: batches built on the calling thread).
    #[arg(long, value_delimiter = ',', default_value = "1,2")]
    pub workers: Vec<usize>,
    #[arg(long, default_value_t = 64)]
    pub batch: usize,
    /// Timed batches per worker count (after one untimed batch).
    #[arg(long, default_value_t = 8)]
    pub batches: usize,
    /// Output side (the model's input).
    #[arg(long, default_value_t = 224)]
    pub size: usize,
    /// `train` (random-resized crop + flip) or `eval` (resize 256, centre crop 224).
    #[arg(long, value_enum, default_value = "train")]
    pub pipeline: Pipeline,
    /// One JSON line per worker count instead of the table.
    #[arg(long)]
    pub json: bool,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Pipeline {
    Train,
    Eval,
}

#[derive(serde::Serialize)]
struct Row {
    engine: &'static str,
    pipeline: Pipeline,
    workers: usize,
    batch: usize,
    images: usize,
    seconds: f64,
    images_per_s: f64,
}

pub fn run(a: DataBenchArgs) -> Result<(), Failure> {
    if a.batch == 0 || a.batches == 0 || a.size == 0 {
        return Err(Failure::input(anyhow::anyhow!(
            "--batch, --batches and --size must be at least 1"
        )));
    }
    if let Some(n) = a.generate {
        bench::generate_jpegs(&a.dir, n, 10, 0)
            .with_context(|| format!("generating {n} JPEGs in {}", a.dir.display()))
            .map_err(Failure::job)?;
    }
    let opts = OpenOptions {
        size: Some([a.size, a.size]),
        resize: ResizeMode::CenterCrop { crop_fraction: 0.875 },
        ..Default::default()
    };
    let ds = data::open(&a.dir, Split::Train, &opts).map_err(Failure::input)?;
    let tf = match a.pipeline {
        Pipeline::Train => Transform::train(Normalize::imagenet(), 0, true)
            .with_random_resized_crop(Some([0.08, 1.0])),
        Pipeline::Eval => Transform::eval(Normalize::imagenet()),
    };
    let mut rows = Vec::new();
    for &w in &a.workers {
        let cfg = LoaderConfig {
            batch_size: a.batch,
            seed: 0,
            workers: w,
            prefetch: 2 * w.max(1),
            ..Default::default()
        };
        let l = Loader::all(ds.clone(), tf.clone(), cfg).map_err(Failure::input)?;
        if l.num_batches() < a.batches + 1 {
            return Err(Failure::input(anyhow::anyhow!(
                "{}: {} images make {} batches of {}; --batches {} needs {} (use --generate)",
                a.dir.display(),
                l.num_samples(),
                l.num_batches(),
                a.batch,
                a.batches,
                a.batches + 1
            )));
        }
        let (images, seconds) = bench::throughput(&l, a.batches).map_err(Failure::job)?;
        let r = Row {
            engine: "rlal",
            pipeline: a.pipeline,
            workers: w,
            batch: a.batch,
            images,
            seconds,
            images_per_s: images as f64 / seconds,
        };
        if a.json {
            println!("{}", serde_json::to_string(&r).expect("row serialises"));
        } else {
            println!(
                "rlal loader  workers {:>2}  {:>8.1} img/s  ({} images in {:.2} s)",
                w, r.images_per_s, images, seconds
            );
        }
        rows.push(r);
    }
    Ok(())
}
