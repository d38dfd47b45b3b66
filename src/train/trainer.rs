//! The one training core of rlal: [`Trainer`] owns the optimiser and the schedule
//! and runs one step (forward, cross-entropy with optional label smoothing plus an
//! optional extra loss, backward, SGD) and one epoch (steps over a [`Loader`] with
//! a progress line on a terminal). `rlal train` and fine-tuning ([`train`]: epochs,
//! evaluation, metrics as JSON lines, per-epoch checkpoints), `rlal prune`'s joint
//! epochs and `rlal bench train/search` all train through it.
use super::checkpoint::{self, State};
use super::optim::{Sgd, SgdConfig};
use super::schedule::{Decay, Schedule};
use super::{Net, TrainError};
use crate::data::{Batch, Loader};
use crate::rng::Rng;
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;
use tch::{Kind, Reduction, Tensor};

/// Optimisation settings: learning-rate schedule, SGD and loss.
#[derive(Clone, Debug)]
pub struct OptimConfig {
    pub lr: f64,
    pub min_lr: f64,
    /// Linear learning-rate warm-up, in epochs.
    pub warmup_epochs: f64,
    pub decay: Decay,
    pub sgd: SgdConfig,
    pub label_smoothing: f64,
}

/// Settings of [`train`].
#[derive(Clone, Debug)]
pub struct TrainConfig {
    pub epochs: usize,
    pub optim: OptimConfig,
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

/// The extra-loss hook: called each step with the net; its scalar is added to the loss.
pub type ExtraFn<'f> = dyn FnMut(&Net) -> Result<Option<Tensor>, TrainError> + 'f;

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

/// Correct top-1 predictions of `logits` for labels `y`.
pub fn correct(logits: &Tensor, y: &Tensor) -> usize {
    tch::no_grad(|| logits.argmax(-1, false).eq_tensor(y).sum(Kind::Int64).int64_value(&[]))
        as usize
}

/// Accuracy of `net` (eval mode, current masks) over every batch of `loader`.
pub fn evaluate(net: &Net, loader: &Loader) -> Result<EvalResult, TrainError> {
    let t0 = Instant::now();
    let (mut hits, mut n, mut loss) = (0usize, 0usize, 0f64);
    tch::no_grad(|| -> Result<(), TrainError> {
        for b in loader.epoch(0) {
            let b = b?;
            let (x, y) = batch_tensors(&b, net);
            let logits = net.forward_t(&x, false)?;
            loss += logits
                .f_cross_entropy_loss(&y, None::<Tensor>, Reduction::Sum, -100, 0.0)?
                .double_value(&[]);
            hits += correct(&logits, &y);
            n += b.labels.len();
        }
        Ok(())
    })?;
    let d = n.max(1) as f64;
    Ok(EvalResult {
        accuracy: hits as f64 / d,
        correct: hits,
        samples: n,
        loss: loss / d,
        seconds: t0.elapsed().as_secs_f64(),
    })
}

/// What one step reports.
#[derive(Clone, Copy, Debug, Default)]
pub struct StepOut {
    /// The loss optimised (cross-entropy plus the extra loss).
    pub loss: f64,
    /// The extra loss alone (0 without one).
    pub extra: f64,
    /// Correctly classified images of the batch.
    pub correct: usize,
    pub lr: f64,
}

/// Sums over one epoch of [`Trainer::epoch`].
#[derive(Clone, Copy, Debug, Default)]
pub struct EpochSums {
    pub loss_sum: f64,
    pub extra_sum: f64,
    pub correct: usize,
    pub seen: usize,
    /// Learning rate of the last step.
    pub lr: f64,
    pub seconds: f64,
}

impl EpochSums {
    pub fn loss(&self) -> f64 {
        self.loss_sum / self.seen.max(1) as f64
    }
    pub fn accuracy(&self) -> f64 {
        self.correct as f64 / self.seen.max(1) as f64
    }
    pub fn extra(&self) -> f64 {
        self.extra_sum / self.seen.max(1) as f64
    }
    pub fn images_per_s(&self) -> f64 {
        self.seen as f64 / self.seconds.max(1e-9)
    }
}

/// The optimiser and schedule of one network's training (see the module docs).
pub struct Trainer {
    pub sgd: Sgd,
    pub sched: Schedule,
    /// Optimizer steps taken (the schedule's position).
    pub step: usize,
    pub label_smoothing: f64,
}

impl Trainer {
    /// SGD over `net`'s trainable parameters (loss scaling in half precision) and the
    /// schedule of `epochs` epochs of `steps_per_epoch` steps.
    pub fn new(net: &Net, o: &OptimConfig, epochs: usize, steps_per_epoch: usize) -> Trainer {
        let spe = steps_per_epoch.max(1);
        let sched = Schedule {
            base_lr: o.lr,
            min_lr: o.min_lr,
            warmup_steps: (o.warmup_epochs * spe as f64).round() as usize,
            steps_per_epoch: spe,
            total_steps: epochs * spe,
            decay: o.decay.clone(),
        };
        let sgd = Sgd::new(net.trainable(), o.sgd.clone())
            .with_loss_scaling(net.low_kind() == Some(Kind::Half));
        Trainer { sgd, sched, step: 0, label_smoothing: o.label_smoothing }
    }

    /// One step on images `x` and labels `y` at the schedule's learning rate; in a
    /// data-parallel job, `x` is this rank's shard of a global batch of `global` images.
    pub fn step(
        &mut self,
        net: &mut Net,
        x: &Tensor,
        y: &Tensor,
        global: usize,
        extra: Option<&mut ExtraFn<'_>>,
    ) -> Result<StepOut, TrainError> {
        let lr = self.sched.lr(self.step);
        let logits = net.forward_t(x, true)?;
        let mut loss = logits.f_cross_entropy_loss(
            y,
            None::<Tensor>,
            Reduction::Mean,
            -100,
            self.label_smoothing,
        )?;
        let mut extra_value = 0.0;
        if let Some(h) = extra {
            if let Some(l) = h(net)? {
                extra_value = l.double_value(&[]);
                loss = loss.f_add(&l)?;
            }
        }
        self.sgd.zero_grad();
        self.sgd.backward(&loss)?;
        self.average_gradients(y.size()[0] as usize, global)?;
        self.sgd.step(lr);
        self.step += 1;
        let value = loss.double_value(&[]);
        Ok(StepOut { loss: value, extra: extra_value, correct: correct(&logits, y), lr })
    }

    /// Data-parallel ranks: each rank's gradient of its shard's mean loss, weighted by
    /// its share of the global batch and summed over the ranks (one all-reduce of the
    /// flat gradient), is the gradient of the global batch's mean loss, as one process
    /// computes it (an extra loss identical on every rank keeps its own gradient).
    fn average_gradients(&mut self, local: usize, global: usize) -> Result<(), TrainError> {
        let Some(w) = crate::dist::parallel() else { return Ok(()) };
        let share = local as f64 / global.max(1) as f64;
        for g in self.sgd.grad_buffers() {
            let _ = tch::no_grad(|| g.shallow_clone().f_mul_scalar_(share))?;
            w.allreduce_sum(&g)?;
        }
        Ok(())
    }

    /// Gives every rank rank 0's weights and buffers (BN statistics are local to each
    /// rank during an epoch, as in DDP; this makes the ranks' networks identical).
    pub fn sync_weights(&self, net: &Net) -> Result<(), TrainError> {
        let mut vars: Vec<(String, Tensor)> = net.var_store().variables().into_iter().collect();
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        let vars: Vec<Tensor> = vars.into_iter().map(|(_, t)| t).collect();
        Ok(crate::dist::broadcast_all(&vars)?)
    }

    /// One step on a loaded batch.
    pub fn step_batch(
        &mut self,
        net: &mut Net,
        b: &Batch,
        extra: Option<&mut ExtraFn<'_>>,
    ) -> Result<StepOut, TrainError> {
        let (x, y) = batch_tensors(b, net);
        self.step(net, &x, &y, b.global, extra)
    }

    /// One epoch over `loader`'s order of `epoch` (0-based); `label` (e.g. "epoch 3/10")
    /// starts the progress line, shown when `progress`.
    pub fn epoch(
        &mut self,
        net: &mut Net,
        loader: &Loader,
        epoch: usize,
        label: &str,
        progress: bool,
        mut extra: Option<&mut ExtraFn<'_>>,
    ) -> Result<EpochSums, TrainError> {
        let t0 = Instant::now();
        let spe = loader.num_batches().max(1);
        let mut s = EpochSums { lr: self.sched.lr(self.step), ..Default::default() };
        let mut last_print = Instant::now();
        for (bi, b) in loader.epoch(epoch as u64).enumerate() {
            let b = b?;
            let out = self.step_batch(net, &b, extra.as_deref_mut())?;
            if !out.loss.is_finite() {
                return Err(TrainError::Diverged {
                    value: out.loss,
                    epoch: epoch + 1,
                    step: bi,
                    field: "training.lr",
                });
            }
            let n = b.labels.len();
            s.lr = out.lr;
            s.loss_sum += out.loss * n as f64;
            s.extra_sum += out.extra * n as f64;
            s.correct += out.correct;
            s.seen += n;
            if progress && last_print.elapsed().as_secs_f64() > 0.5 {
                last_print = Instant::now();
                let el = t0.elapsed().as_secs_f64();
                let eta = (spe - bi - 1) as f64 * el / (bi + 1) as f64;
                crate::util::progress(format_args!(
                    "{label} {} {}/{spe} loss {:.4} acc {:.2}% {:.0} img/s eta {eta:.0}s   ",
                    bar(bi + 1, spe),
                    bi + 1,
                    s.loss(),
                    100.0 * s.accuracy(),
                    s.seen as f64 / el,
                ));
            }
        }
        if crate::dist::parallel().is_some() {
            self.sync_weights(net)?;
            s = reduce_sums(s)?;
        }
        s.seconds = t0.elapsed().as_secs_f64();
        Ok(s)
    }

    /// The checkpoint tensors of this training: `net.*` and `sgd.*`.
    pub fn tensors(&self, net: &Net) -> Vec<(String, Tensor)> {
        let mut named = checkpoint::net_tensors(net);
        named.extend(self.sgd.buffers().into_iter().map(|(n, t)| (format!("sgd.{n}"), t)));
        named
    }

    /// Restores `net` and the SGD momenta from checkpoint tensors (`file`, for errors).
    pub fn restore(
        &mut self,
        net: &Net,
        all: &HashMap<String, Tensor>,
        file: &Path,
    ) -> Result<(), TrainError> {
        checkpoint::restore_net(net, all, file)?;
        self.sgd.set_buffers(checkpoint::group(all, "sgd."));
        Ok(())
    }
}

/// The epoch's sums over every rank of a data-parallel job (the figures one process reports).
fn reduce_sums(s: EpochSums) -> Result<EpochSums, TrainError> {
    let mut v = [s.loss_sum, s.extra_sum, s.correct as f64, s.seen as f64];
    crate::dist::sum_f64(&mut v)?;
    Ok(EpochSums {
        loss_sum: v[0],
        extra_sum: v[1],
        correct: v[2] as usize,
        seen: v[3] as usize,
        ..s
    })
}

/// A 20-character progress bar.
pub fn bar(done: usize, total: usize) -> String {
    let w = 20;
    let f = (done * w).checked_div(total).unwrap_or(w).min(w);
    format!("[{}{}]", "#".repeat(f), "-".repeat(w - f))
}

/// This rank's shard of `loader` in a data-parallel job ([`Loader::sharded`]); `loader`
/// itself otherwise. A global batch smaller than the number of ranks is refused.
pub fn shard(loader: Loader) -> Result<Loader, TrainError> {
    match crate::dist::parallel() {
        Some(w) if loader.config().batch_size < w.size => Err(TrainError::Graph(format!(
            "batch-size {} is smaller than the {} ranks of this job: batch-size is the global batch, at least one image per rank",
            loader.config().batch_size,
            w.size
        ))),
        Some(w) => Ok(loader.sharded(w.rank, w.size)),
        None => Ok(loader),
    }
}

/// Opens the metrics file of [`train`]: on resume, keeps the lines of the `start`
/// epochs the checkpoint covers (a killed run may have written one more) and appends.
fn open_metrics(p: &Path, resume: bool, start: usize) -> Result<std::fs::File, TrainError> {
    let ferr =
        |e: std::io::Error| TrainError::File { path: p.display().to_string(), msg: e.to_string() };
    if resume {
        crate::util::truncate_lines(p, start).map_err(ferr)?;
    }
    std::fs::OpenOptions::new()
        .create(true)
        .append(resume)
        .write(true)
        .truncate(!resume)
        .open(p)
        .map_err(ferr)
}

/// Trains `net` for `cfg.epochs` epochs (continuing from a checkpoint with `cfg.resume`);
/// returns the per-epoch metrics (of the epochs run in this call).
pub fn train(
    net: &mut Net,
    train: &Loader,
    test: Option<&Loader>,
    cfg: &TrainConfig,
) -> Result<Vec<EpochMetrics>, TrainError> {
    let mut tr = Trainer::new(net, &cfg.optim, cfg.epochs, train.num_batches());
    let mut rng = Rng::new(cfg.seed);
    let mut start = 0;
    if let (true, Some(dir)) = (cfg.resume, &cfg.checkpoint_dir) {
        if let Some((st, all)) = checkpoint::load::<State>(dir, checkpoint::TRAIN_STATE, net)? {
            tr.restore(net, &all, &dir.join(&st.tensors))?;
            (start, tr.step) = (st.epoch, st.step);
            rng = Rng::from_state(st.rng).unwrap_or(rng);
            if cfg.progress {
                eprintln!("resuming after epoch {start} from {}", dir.display());
            }
        }
    }
    // Rank 0 writes the job's files.
    let root = crate::dist::is_root();
    let mut metrics_file = match &cfg.metrics {
        Some(p) if root => Some(open_metrics(p, cfg.resume, start)?),
        _ => None,
    };
    let mut out = Vec::new();
    for epoch in start..cfg.epochs {
        let label = format!("epoch {}/{}", epoch + 1, cfg.epochs);
        let s = tr.epoch(net, train, epoch, &label, cfg.progress, None)?;
        let last = epoch + 1 == cfg.epochs;
        let test_r = match test {
            Some(t) if last || (cfg.eval_every > 0 && (epoch + 1) % cfg.eval_every == 0) => {
                Some(evaluate(net, t)?)
            }
            _ => None,
        };
        let m = EpochMetrics {
            epoch: epoch + 1,
            lr: s.lr,
            train_loss: s.loss(),
            train_acc: s.accuracy(),
            images_per_s: s.images_per_s(),
            seconds: s.seconds,
            test: test_r,
        };
        if cfg.progress {
            let t = m
                .test
                .as_ref()
                .map(|t| format!(" test acc {:.2}%", 100.0 * t.accuracy))
                .unwrap_or_default();
            crate::util::progress_done(format_args!(
                "{label} loss {:.4} acc {:.2}% {:.0} img/s {:.1}s{t}",
                m.train_loss,
                100.0 * m.train_acc,
                m.images_per_s,
                m.seconds
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
        if let Some(dir) = cfg.checkpoint_dir.as_ref().filter(|_| root) {
            let st = State {
                epoch: epoch + 1,
                step: tr.step,
                rng: rng.state(),
                tensors: format!("weights-e{}.ot", epoch + 1),
                graph: checkpoint::fingerprint(net),
            };
            checkpoint::save(dir, checkpoint::TRAIN_STATE, tr.tensors(net), &st)?;
        }
        out.push(m);
    }
    Ok(out)
}
