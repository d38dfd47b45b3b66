//! The one validation of a pruned model against the model it came from (`rlal export`
//! and `rlal prune`'s report): both run by the same engine ([`super::open`]: ONNX
//! Runtime, tract as the fallback), the pruned one optionally cross-checked on a random
//! batch, both timed at each [`Timing`] in turn, both scored on the test images.
use super::latency::{self, Latency};
use super::{max_diff, open, tract::TractModel, Accuracy, Ep, Runner, ValidateError};
use crate::data::Loader;

/// One latency figure: batch size, untimed warm-up runs, timed runs (median).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timing {
    pub batch: usize,
    pub warmup: usize,
    pub runs: usize,
}

/// A model to validate: its name in errors ("pruned" reads "loading the pruned model")
/// and its encoded bytes.
#[derive(Clone, Copy, Debug)]
pub struct Model<'a> {
    pub name: &'a str,
    pub bytes: &'a [u8],
}

/// How the models are run.
#[derive(Clone, Copy, Debug)]
pub struct Setup<'a> {
    /// The input shape of one sample, batch first (`[1, C, H, W]`); timings and checks
    /// replace the batch.
    pub sample: &'a [usize],
    /// ONNX Runtime intra-op threads (0: its default).
    pub threads: usize,
    pub ep: Ep,
    /// The latency figures, in order.
    pub timings: &'a [Timing],
    /// Test images: both models' top-1 accuracy (none: no accuracy).
    pub test: Option<&'a Loader>,
}

/// One model's figures.
#[derive(Clone, Debug)]
pub struct Figures {
    /// The engine that ran it ("ort", "ort-cuda", "tract").
    pub engine: String,
    /// One per [`Setup::timings`].
    pub latency: Vec<Latency>,
    pub accuracy: Option<Accuracy>,
}

/// A pruned model against the model it came from.
#[derive(Clone, Debug, Default)]
pub struct Comparison {
    /// The engine that ran the pruned model.
    pub engine: String,
    /// One per [`Setup::timings`], before and after pruning.
    pub before: Vec<Latency>,
    pub after: Vec<Latency>,
    /// Before and after pruning.
    pub accuracy: Option<(Accuracy, Accuracy)>,
    /// Max |pruned - masked original| on a random batch of 4 ([`Check::masked`]).
    pub max_diff_masked: Option<f32>,
    /// Max |ONNX Runtime - tract| on the pruned model (random batch of 4), when the
    /// engine is ONNX Runtime and [`Check`] asked for it.
    pub max_diff_ort_tract: Option<f32>,
}

impl Comparison {
    /// (batch, before / after median) per timing.
    pub fn speedup(&self) -> Vec<(usize, f64)> {
        let sp = |(b, a): (&Latency, &Latency)| (a.batch, b.median_ms / a.median_ms.max(1e-9));
        self.before.iter().zip(&self.after).map(sp).collect()
    }
}

/// The cross-check of the pruned model's outputs (`rlal export`).
#[derive(Clone, Copy, Debug, Default)]
pub struct Check<'a> {
    /// The original with the removed channels zeroed: the pruned model must compute its outputs.
    pub masked: Option<Model<'a>>,
}

fn shape(sample: &[usize], batch: usize) -> Vec<usize> {
    std::iter::once(batch).chain(sample.iter().skip(1).copied()).collect()
}

fn load(m: Model, s: &Setup) -> Result<Box<dyn Runner>, ValidateError> {
    open(m.bytes, s.threads, s.ep).map_err(|e| e.during(format!("loading the {} model", m.name)))
}

fn time(r: &mut dyn Runner, s: &Setup, t: Timing) -> Result<Latency, ValidateError> {
    latency::measure(r, &shape(s.sample, t.batch), t.warmup, t.runs)
}

fn score(r: &mut dyn Runner, m: Model, s: &Setup) -> Result<Option<Accuracy>, ValidateError> {
    s.test
        .map(|t| super::accuracy(r, t))
        .transpose()
        .map_err(|e| e.during(format!("accuracy of the {} model", m.name)))
}

/// One model's latency at each timing, then its accuracy.
pub fn measure(m: Model, s: &Setup) -> Result<Figures, ValidateError> {
    let mut r = load(m, s)?;
    let latency = s.timings.iter().map(|&t| time(r.as_mut(), s, t)).collect::<Result<_, _>>()?;
    let accuracy = score(r.as_mut(), m, s)?;
    Ok(Figures { engine: r.engine().to_string(), latency, accuracy })
}

/// `before` against `after`: the cross-check when given, then each timing of both in
/// turn (before first), then both accuracies.
pub fn compare(
    before: Model,
    after: Model,
    check: Option<Check>,
    s: &Setup,
) -> Result<Comparison, ValidateError> {
    let mut rb = load(before, s)?;
    let mut ra = load(after, s)?;
    let mut c = Comparison { engine: ra.engine().to_string(), ..Default::default() };
    if let Some(check) = check {
        cross_check(ra.as_mut(), after, check, s, &mut c)?;
    }
    for &t in s.timings {
        c.before.push(time(rb.as_mut(), s, t)?);
        c.after.push(time(ra.as_mut(), s, t)?);
    }
    let (ab, aa) = (score(rb.as_mut(), before, s)?, score(ra.as_mut(), after, s)?);
    c.accuracy = ab.zip(aa);
    Ok(c)
}

/// The outputs of `after` (run by `ra`) on a random batch of 4 against the masked
/// original and, when `ra` is ONNX Runtime, against tract.
fn cross_check(
    ra: &mut dyn Runner,
    after: Model,
    check: Check,
    s: &Setup,
    c: &mut Comparison,
) -> Result<(), ValidateError> {
    let probe = shape(s.sample, 4);
    let x = latency::random_input(&probe, 11);
    let running = |name: &str| format!("running the {name} model");
    let got = ra.run(&probe, x.clone()).map_err(|e| e.during(running(after.name)))?;
    if let Some(m) = check.masked {
        let want = load(m, s)?.run(&probe, x.clone()).map_err(|e| e.during(running(m.name)))?;
        c.max_diff_masked = Some(max_diff(&got, &want)?);
    }
    let in_tract = TractModel::from_bytes(after.bytes)
        .and_then(|mut t| t.run(&probe, x))
        .map_err(|e| e.during(format!("the {} model in tract", after.name)))?;
    if c.engine.starts_with("ort") {
        c.max_diff_ort_tract = Some(max_diff(&got, &in_tract)?);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{Loader, LoaderConfig, Normalize, Transform};

    fn setup<'a>(sample: &'a [usize], timings: &'a [Timing], test: &'a Loader) -> Setup<'a> {
        Setup { sample, threads: 1, ep: Ep::Cpu, timings, test: Some(test) }
    }

    /// mnist_cnn with half the channels of every layer removed, its masked original and the
    /// original, encoded.
    fn models() -> [Vec<u8>; 3] {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("graphs/mnist_cnn.onnx");
        let (g, an) = crate::analysis::import(&path, &Default::default()).unwrap();
        let ratios = vec![0.5; an.layers.len()];
        let keep = crate::rewrite::rank::keep_sets(&g, &an, &ratios, crate::rewrite::Criterion::L1);
        let pruned = crate::rewrite::surgery::prune(&g, &an, &keep, None).unwrap();
        let masked = crate::rewrite::surgery::mask(&g, &an, &pruned.plan);
        [&pruned.graph, &masked, &g].map(crate::onnx::to_bytes)
    }

    fn mnist_like(n: usize) -> Loader {
        let norm = Normalize { scale: 1.0 / 255.0, mean: vec![0.5], std: vec![0.25] };
        let cfg = LoaderConfig { batch_size: 8, shuffle: false, workers: 0, ..Default::default() };
        let ds = crate::data::testutil::mem(n, 1, 28, 28);
        Loader::new(ds, (0..n).collect(), Transform::eval(norm), cfg).unwrap()
    }

    #[test]
    fn the_pruned_model_computes_the_masked_original_and_both_are_measured() {
        let [pruned, masked, original] = models();
        let test = mnist_like(20);
        let timings =
            [Timing { batch: 1, warmup: 1, runs: 2 }, Timing { batch: 3, warmup: 0, runs: 1 }];
        let s = setup(&[1, 1, 28, 28], &timings, &test);
        let (before, after) = (
            Model { name: "original", bytes: &original },
            Model { name: "pruned", bytes: &pruned },
        );
        let check = Check { masked: Some(Model { name: "masked original", bytes: &masked }) };
        let c = compare(before, after, Some(check), &s).unwrap();
        assert!(c.max_diff_masked.unwrap() < 1e-4, "{c:?}");
        // ONNX Runtime against tract, when ONNX Runtime is the engine.
        assert_eq!(c.max_diff_ort_tract.is_some(), c.engine == "ort", "{c:?}");
        assert!(c.max_diff_ort_tract.unwrap_or(0.0) < 1e-3, "{c:?}");
        let batches: Vec<usize> = c.after.iter().map(|l| l.batch).collect();
        assert_eq!((c.before.len(), batches), (2, vec![1, 3]));
        assert_eq!(c.speedup().iter().map(|s| s.0).collect::<Vec<_>>(), [1, 3]);
        // Each accuracy is the one of the model measured alone (the same figures as the report's).
        let (ab, aa) = c.accuracy.unwrap();
        assert_eq!((ab.samples, aa.samples), (20, 20));
        let alone = measure(after, &s).unwrap();
        assert_eq!(alone.accuracy.unwrap().correct, aa.correct);
        assert_eq!((alone.engine.as_str(), alone.latency.len()), (c.engine.as_str(), 2));
        let masked_alone = measure(check.masked.unwrap(), &s).unwrap();
        assert_eq!(masked_alone.accuracy.unwrap().correct, aa.correct);
        // Without a check nothing is cross-checked; a model that cannot load is named.
        let plain = compare(before, after, None, &s).unwrap();
        assert_eq!((plain.max_diff_masked, plain.max_diff_ort_tract), (None, None));
        let bad = Model { name: "pruned", bytes: b"not onnx" };
        let e = compare(before, bad, None, &s).unwrap_err().to_string();
        assert!(e.starts_with("loading the pruned model: "), "{e}");
    }
}
