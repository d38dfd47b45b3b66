//! Where inference time goes: ONNX Runtime's own profile of a model, summed by op
//! type (ms per run), so a pruned model's latency can be explained from what was
//! measured (layout reorders around blocked convs, the shortcut's Slice/Pad, Gemm...).
use super::ort::OrtModel;
use super::ValidateError;

/// Milliseconds per run by op type, largest first, and their sum.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct OpTimes {
    pub by_op: Vec<(String, f64)>,
    pub total_ms: f64,
}

impl OpTimes {
    /// Milliseconds per run of `op` (0 when absent).
    pub fn ms(&self, op: &str) -> f64 {
        self.by_op.iter().find(|(o, _)| o == op).map_or(0.0, |(_, t)| *t)
    }
}

/// Profiles `runs` runs (after `warmup` untimed ones, which the profile also holds and
/// which are removed by counting only the last `runs` runs' events) of `bytes` on a
/// random input of `shape`, with `threads` intra-op threads.
pub fn profile(
    bytes: &[u8],
    shape: &[usize],
    threads: usize,
    warmup: usize,
    runs: usize,
) -> Result<OpTimes, ValidateError> {
    let dir = std::env::temp_dir().join(format!("rlal-profile-{}", std::process::id()));
    std::fs::create_dir_all(&dir)
        .map_err(|e| ValidateError::Runtime(format!("{}: {e}", dir.display())))?;
    // One file per call (two models of the same size must not share a name).
    static CALLS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let stem = dir.join(format!("p{n}-{}", bytes.len()));
    let mut m = OrtModel::profiling(bytes, threads, &stem)?;
    let data = super::latency::random_input(shape, 7);
    for _ in 0..warmup + runs.max(1) {
        m.run_ref(shape, &data)?;
    }
    let file = m.end_profiling()?;
    let text = std::fs::read_to_string(&file)
        .map_err(|e| ValidateError::Runtime(format!("{file}: {e}")))?;
    let _ = std::fs::remove_file(&file);
    let _ = std::fs::remove_dir(&dir);
    summarize(&text, runs.max(1))
}

/// Sums the kernel times of the last `runs` model runs of an ONNX Runtime trace by op type.
pub fn summarize(trace: &str, runs: usize) -> Result<OpTimes, ValidateError> {
    let events: Vec<serde_json::Value> = serde_json::from_str(trace)
        .map_err(|e| ValidateError::Runtime(format!("reading the profile: {e}")))?;
    // Each run is one "model_run" event; node events between run starts belong to it.
    let starts: Vec<f64> = events
        .iter()
        .filter(|e| e["name"] == "model_run")
        .filter_map(|e| e["ts"].as_f64())
        .collect();
    let from = starts.len().checked_sub(runs).map_or(f64::MIN, |i| starts[i]);
    let mut sums: std::collections::BTreeMap<String, f64> = Default::default();
    for e in &events {
        let kernel =
            e["cat"] == "Node" && e["name"].as_str().is_some_and(|n| n.ends_with("_kernel_time"));
        if !kernel || e["ts"].as_f64().unwrap_or(f64::MIN) < from {
            continue;
        }
        let op = e["args"]["op_name"].as_str().unwrap_or("?").to_string();
        *sums.entry(op).or_default() += e["dur"].as_f64().unwrap_or(0.0) / 1e3 / runs as f64;
    }
    let mut by_op: Vec<(String, f64)> = sums.into_iter().collect();
    by_op.sort_by(|a, b| b.1.total_cmp(&a.1));
    let total_ms = by_op.iter().map(|(_, t)| t).sum();
    Ok(OpTimes { by_op, total_ms })
}

#[cfg(test)]
mod tests {
    #[test]
    fn sums_the_last_runs_kernel_times_by_op() {
        let trace = r#"[
          {"cat":"Session","name":"model_run","ts":0,"dur":50},
          {"cat":"Node","name":"c_kernel_time","ts":1,"dur":9000,"args":{"op_name":"Conv"}},
          {"cat":"Session","name":"model_run","ts":100,"dur":50},
          {"cat":"Node","name":"c_fence_before","ts":101,"dur":500,"args":{"op_name":"Conv"}},
          {"cat":"Node","name":"c_kernel_time","ts":101,"dur":2000,"args":{"op_name":"Conv"}},
          {"cat":"Node","name":"r_kernel_time","ts":102,"dur":500,"args":{"op_name":"ReorderOutput"}},
          {"cat":"Session","name":"model_run","ts":200,"dur":50},
          {"cat":"Node","name":"c_kernel_time","ts":201,"dur":4000,"args":{"op_name":"Conv"}}
        ]"#;
        let t = super::summarize(trace, 2).unwrap();
        assert_eq!(t.by_op[0].0, "Conv");
        assert!((t.ms("Conv") - 3.0).abs() < 1e-9, "{t:?}");
        assert!((t.ms("ReorderOutput") - 0.25).abs() < 1e-9);
        assert!((t.total_ms - 3.25).abs() < 1e-9);
        assert!(super::summarize("not json", 1).is_err());
    }
}
