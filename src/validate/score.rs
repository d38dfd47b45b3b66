//! The reward scorer's engine (`search.reward-engine: ort`): a narrow network's accuracy
//! on host batches, scored by single-threaded ONNX Runtime sessions side by side.
use super::ort::OrtModel;
use super::{argmax, ValidateError};

/// A host batch: shape (NCHW), f32 data and labels.
pub type HostBatch = (Vec<usize>, Vec<f32>, Vec<i64>);

/// Correct predictions of `m` on `batches` (first output: logits, classes last), and images seen.
fn correct<'b>(
    m: &mut OrtModel,
    batches: impl Iterator<Item = &'b HostBatch>,
) -> Result<(usize, usize), ValidateError> {
    let (mut right, mut n) = (0usize, 0usize);
    for (shape, data, labels) in batches {
        let outs = m.run_ref(shape, data)?;
        let (oshape, logits) = outs
            .into_iter()
            .next()
            .ok_or_else(|| ValidateError::Model("the model has no output".into()))?;
        let k = oshape.last().copied().unwrap_or(1).max(1);
        for (row, &y) in logits.chunks(k).zip(labels) {
            right += (argmax(row) as i64 == y) as usize;
            n += 1;
        }
    }
    Ok((right, n))
}

/// Accuracy of the encoded model on `batches`, scored by `sessions` single-threaded
/// ONNX Runtime sessions side by side (session `i` takes batches i, i + n, ...).
/// Returns the accuracy and the longest session build time (seconds).
pub fn accuracy(
    model: &[u8],
    sessions: usize,
    batches: &[HostBatch],
) -> Result<(f64, f64), ValidateError> {
    let n = sessions.clamp(1, batches.len().max(1));
    let score = |i: usize| -> Result<(usize, usize, f64), ValidateError> {
        let t = std::time::Instant::now();
        let mut m = OrtModel::from_bytes(model, 1)?;
        let build = t.elapsed().as_secs_f64();
        let (right, seen) = correct(&mut m, batches.iter().skip(i).step_by(n))?;
        Ok((right, seen, build))
    };
    let parts: Vec<Result<(usize, usize, f64), ValidateError>> = if n == 1 {
        vec![score(0)]
    } else {
        std::thread::scope(|s| {
            let hs: Vec<_> = (0..n).map(|i| s.spawn(move || score(i))).collect();
            hs.into_iter()
                .map(|h| {
                    h.join().unwrap_or_else(|_| {
                        Err(ValidateError::Runtime("a scoring thread panicked".into()))
                    })
                })
                .collect()
        })
    };
    let (mut right, mut seen, mut build) = (0usize, 0usize, 0f64);
    for p in parts {
        let (r, k, b) = p?;
        right += r;
        seen += k;
        build = build.max(b);
    }
    Ok((right as f64 / seen.max(1) as f64, build))
}
