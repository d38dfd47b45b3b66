//! The training loop: SGD epochs over a [`Loader`], cross-entropy (optional
//! label smoothing) plus an optional extra loss (hook), evaluation, a progress
//! line on stderr, metrics as JSON lines and per-epoch checkpoints.
use super::checkpoint::{self, State};
use super::optim::{Sgd, SgdConfig};
use super::schedule::{Decay, Schedule};
use super::{Net, TrainError};
use crate::data::{Batch, Loader};
use crate::rng::Rng;
use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;
use tch::{Kind, Reduction, Tensor};

/// Settings of [`train`].
#[derive(Clone, Debug)]
pub struct TrainConfig {
    pub epochs: usize,
    pub lr: f64,
    pub min_lr: f64,
    pub warmup_epochs: f64,
    pub decay: Decay,
    pub sgd: SgdConfig,
    pub label_smoothing: f64,
    /// Evaluate on the test loader every N epochs (and after the last); 0: only after the last.
    pub eval_every: usize,
    pub checkpoint_dir: Option<PathBuf>,
    /// Continue from `checkpoint_dir/state.json` when it exists.
    pub resume: bool,
    pub metrics: Option<PathBuf>,
    pub progress: bool,
    pub seed: u64,
}

/// Accuracy and loss over a loader.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct EvalResult {
    pub accuracy: f64,
    pub correct: usize,
    pub samples: usize,
    pub loss: f64,
    pub seconds: f64,
}

/// One epoch's figures (one JSONL line).
#[derive(Clone, Debug, serde::Serialize)]
pub struct EpochMetrics {
    pub epoch: usize,
    pub lr: f64,
    pub train_loss: f64,
    pub train_acc: f64,
    pub images_per_s: f64,
    pub seconds: f64,
    pub test: Option<EvalResult>,
}

/// The extra-loss hook: called each step with the net and the epoch; its scalar is added to the loss.
pub type ExtraLoss<'a> = &'a mut dyn FnMut(&Net, usize) -> Result<Option<Tensor>, TrainError>;

pub fn batch_tensors(b: &Batch, net: &Net) -> (Tensor, Tensor) {
    batch_on(b, net.device())
}

/// A batch as (NCHW f32 images, i64 labels) on `device`.
pub fn batch_on(b: &Batch, device: tch::Device) -> (Tensor, Tensor) {
    let s: Vec<i64> = b.shape.iter().map(|&d| d as i64).collect();
    (
        Tensor::from_slice(&b.data).reshape(&s).to_device(device),
        Tensor::from_slice(&b.labels).to_device(device),
    )
}

/// Accuracy of `net` (eval mode, current masks) over every batch of `loader`.
pub fn evaluate(net: &Net, loader: &Loader) -> Result<EvalResult, TrainError> {
    let t0 = Instant::now();
    let (mut correct, mut n, mut loss) = (0usize, 0usize, 0f64);
    tch::no_grad(|| -> Result<(), TrainError> {
        for b in loader.epoch(0) {
            let b = b?;
            let (x, y) = batch_tensors(&b, net);
            let logits = net.forward_t(&x, false)?;
            loss += logits
                .f_cross_entropy_loss(&y, None::<Tensor>, Reduction::Sum, -100, 0.0)?
                .double_value(&[]);
            correct +=
                logits.argmax(-1, false).eq_tensor(&y).sum(Kind::Int64).int64_value(&[]) as usize;
            n += b.labels.len();
        }
        Ok(())
    })?;
    let d = n.max(1) as f64;
    Ok(EvalResult {
        accuracy: correct as f64 / d,
        correct,
        samples: n,
        loss: loss / d,
        seconds: t0.elapsed().as_secs_f64(),
    })
}

/// Trains `net`; returns the per-epoch metrics (of the epochs run in this call).
pub fn train(
    net: &mut Net,
    train: &Loader,
    test: Option<&Loader>,
    cfg: &TrainConfig,
    mut extra: Option<ExtraLoss>,
) -> Result<Vec<EpochMetrics>, TrainError> {
    let steps_per_epoch = train.num_batches().max(1);
    let sched = Schedule {
        base_lr: cfg.lr,
        min_lr: cfg.min_lr,
        warmup_steps: (cfg.warmup_epochs * steps_per_epoch as f64).round() as usize,
        steps_per_epoch,
        total_steps: cfg.epochs * steps_per_epoch,
        decay: cfg.decay.clone(),
    };
    let mut sgd = Sgd::new(net.trainable(), cfg.sgd.clone())
        .with_loss_scaling(net.low_kind() == Some(tch::Kind::Half));
    let mut rng = Rng::new(cfg.seed);
    let (mut start, mut step) = (0, 0);
    if let (true, Some(dir)) = (cfg.resume, &cfg.checkpoint_dir) {
        if checkpoint::state_path(dir).exists() {
            let st = checkpoint::restore(dir, net, &mut sgd)?;
            (start, step) = (st.epoch, st.step);
            rng = Rng::from_state(st.rng).unwrap_or(rng);
            if cfg.progress {
                eprintln!("resuming after epoch {start} from {}", dir.display());
            }
        }
    }
    if let (true, Some(p)) = (cfg.resume, &cfg.metrics) {
        // Keep the lines of the epochs the checkpoint covers (a killed run may have written one more).
        let text = std::fs::read_to_string(p).unwrap_or_default();
        let mut keep: String = text.lines().take(start).map(|l| format!("{l}\n")).collect();
        if start == 0 {
            keep.clear();
        }
        crate::util::write_atomic(p, keep.as_bytes())
            .map_err(|e| TrainError::File { path: p.display().to_string(), msg: e.to_string() })?;
    }
    let mut metrics_file = match &cfg.metrics {
        Some(p) => Some(
            std::fs::OpenOptions::new()
                .create(true)
                .append(cfg.resume)
                .write(true)
                .truncate(!cfg.resume)
                .open(p)
                .map_err(|e| TrainError::File {
                    path: p.display().to_string(),
                    msg: e.to_string(),
                })?,
        ),
        None => None,
    };
    let mut out = Vec::new();
    for epoch in start..cfg.epochs {
        let t0 = Instant::now();
        let (mut loss_sum, mut correct, mut seen) = (0f64, 0usize, 0usize);
        let mut last_print = Instant::now();
        let mut lr = sched.lr(step);
        for (bi, b) in train.epoch(epoch as u64).enumerate() {
            let b = b?;
            let (x, y) = batch_tensors(&b, net);
            lr = sched.lr(step);
            let logits = net.forward_t(&x, true)?;
            let mut loss = logits.f_cross_entropy_loss(
                &y,
                None::<Tensor>,
                Reduction::Mean,
                -100,
                cfg.label_smoothing,
            )?;
            if let Some(h) = extra.as_mut() {
                if let Some(l) = h(net, epoch)? {
                    loss = loss + l;
                }
            }
            sgd.zero_grad();
            sgd.backward(&loss)?;
            sgd.step(lr);
            step += 1;
            let n = b.labels.len();
            let l = loss.double_value(&[]);
            if !l.is_finite() {
                return Err(TrainError::Graph(format!(
                    "the loss became {l} at epoch {} step {bi}; lower the learning rate",
                    epoch + 1
                )));
            }
            loss_sum += l * n as f64;
            correct += tch::no_grad(|| {
                logits.argmax(-1, false).eq_tensor(&y).sum(Kind::Int64).int64_value(&[])
            }) as usize;
            seen += n;
            if cfg.progress && last_print.elapsed().as_secs_f64() > 0.5 {
                last_print = Instant::now();
                let el = t0.elapsed().as_secs_f64();
                let ips = seen as f64 / el;
                let eta = (steps_per_epoch - bi - 1) as f64 * el / (bi + 1) as f64;
                crate::util::progress(format_args!(
                    "epoch {}/{} {}/{} loss {:.4} acc {:.2}% {:.0} img/s eta {:.0}s   ",
                    epoch + 1,
                    cfg.epochs,
                    bi + 1,
                    steps_per_epoch,
                    loss_sum / seen as f64,
                    100.0 * correct as f64 / seen as f64,
                    ips,
                    eta
                ));
            }
        }
        let secs = t0.elapsed().as_secs_f64();
        let last = epoch + 1 == cfg.epochs;
        let test_r = match test {
            Some(t) if last || (cfg.eval_every > 0 && (epoch + 1) % cfg.eval_every == 0) => {
                Some(evaluate(net, t)?)
            }
            _ => None,
        };
        let m = EpochMetrics {
            epoch: epoch + 1,
            lr,
            train_loss: loss_sum / seen.max(1) as f64,
            train_acc: correct as f64 / seen.max(1) as f64,
            images_per_s: seen as f64 / secs.max(1e-9),
            seconds: secs,
            test: test_r,
        };
        if cfg.progress {
            let t = m
                .test
                .as_ref()
                .map(|t| format!(" test acc {:.2}%", 100.0 * t.accuracy))
                .unwrap_or_default();
            crate::util::progress_done(format_args!(
                "epoch {}/{} loss {:.4} acc {:.2}% {:.0} img/s {:.1}s{t}",
                m.epoch,
                cfg.epochs,
                m.train_loss,
                100.0 * m.train_acc,
                m.images_per_s,
                secs
            ));
        }
        if let (Some(f), Some(p)) = (metrics_file.as_mut(), &cfg.metrics) {
            let line = serde_json::to_string(&m).expect("metrics serialise");
            writeln!(f, "{line}").map_err(|e| TrainError::File {
                path: p.display().to_string(),
                msg: e.to_string(),
            })?;
        }
        rng.next_u64();
        if let Some(dir) = &cfg.checkpoint_dir {
            let st = State {
                epoch: epoch + 1,
                step,
                rng: rng.state(),
                weights: format!("weights-e{}.ot", epoch + 1),
                graph: checkpoint::fingerprint(net),
            };
            checkpoint::save(dir, net, &sgd, &st)?;
        }
        out.push(m);
    }
    Ok(out)
}
