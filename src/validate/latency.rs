//! Latency measurement: warm-up runs, then the median of timed runs.
use super::{Runner, ValidateError};
use std::time::Instant;

/// Timing of one model at one batch size.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Latency {
    pub engine: String,
    pub batch: usize,
    pub runs: usize,
    /// Median wall time of one run, milliseconds.
    pub median_ms: f64,
    pub min_ms: f64,
}

/// Deterministic pseudo-random input of `shape` (standard normal).
pub fn random_input(shape: &[usize], seed: u64) -> Vec<f32> {
    let mut rng = crate::rng::Rng::new(seed);
    (0..shape.iter().product::<usize>()).map(|_| rng.normal_f32()).collect()
}

/// Runs `warmup` untimed then `runs` timed inferences of a random `shape` input.
pub fn measure(
    r: &mut dyn Runner,
    shape: &[usize],
    warmup: usize,
    runs: usize,
) -> Result<Latency, ValidateError> {
    let data = random_input(shape, 7);
    for _ in 0..warmup {
        r.run(shape, data.clone())?;
    }
    let mut t = Vec::with_capacity(runs.max(1));
    for _ in 0..runs.max(1) {
        let d = data.clone();
        let s = Instant::now();
        r.run(shape, d)?;
        t.push(s.elapsed().as_secs_f64() * 1e3);
    }
    t.sort_by(f64::total_cmp);
    let n = t.len();
    let median = if n % 2 == 1 { t[n / 2] } else { (t[n / 2 - 1] + t[n / 2]) / 2.0 };
    Ok(Latency {
        engine: r.engine().to_string(),
        batch: shape[0],
        runs: n,
        median_ms: median,
        min_ms: t[0],
    })
}

/// Median milliseconds of `runs` timed runs (after `warmup`) of the encoded model in
/// ONNX Runtime on the CPU with `threads` intra-op threads, no fallback: the latency
/// table's measurement.
pub fn ort_median_ms(
    bytes: &[u8],
    shape: &[usize],
    threads: usize,
    warmup: usize,
    runs: usize,
) -> Result<f64, ValidateError> {
    let mut m = super::open_ort(bytes, threads)?;
    Ok(measure(m.as_mut(), shape, warmup, runs)?.median_ms)
}

/// An ONNX Runtime CPU session for timing beside other sessions in one process: its
/// threads do not spin-wait after a run, so one model never slows the next one's run.
pub fn quiet_ort(bytes: &[u8], threads: usize) -> Result<Box<dyn Runner>, ValidateError> {
    Ok(Box::new(super::ort::OrtModel::timing(bytes, threads)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fake(u64);
    impl Runner for Fake {
        fn engine(&self) -> &'static str {
            "fake"
        }
        fn run(
            &mut self,
            shape: &[usize],
            data: Vec<f32>,
        ) -> Result<Vec<super::super::Output>, ValidateError> {
            self.0 += 1;
            Ok(vec![(shape.to_vec(), data)])
        }
    }

    #[test]
    fn warm_up_then_timed_runs() {
        let mut f = Fake(0);
        let l = measure(&mut f, &[2, 3], 3, 20).unwrap();
        assert_eq!(f.0, 23);
        assert_eq!((l.runs, l.batch, l.engine.as_str()), (20, 2, "fake"));
        assert!(l.min_ms <= l.median_ms);
    }
}
