//! Channel surgery to the chosen architecture and fine-tuning of the pruned network.
use super::{Chosen, Job, Tuned};
use crate::analysis::Analysis;
use crate::ir::Graph;
use crate::rng::Stream;
use crate::search::reward;
use crate::search::SearchError;
use crate::train::trainer::{self, TrainConfig};
use crate::train::Net;
use anyhow::{anyhow, Context};
use std::time::Instant;

/// The analysis of a graph the job rewrote (shape inference again).
fn reanalyse(g: &Graph, input_shape: Option<&[usize]>) -> anyhow::Result<Analysis> {
    let facts =
        crate::ir::infer::infer(g, input_shape).map_err(|e| anyhow!("shape inference: {e}"))?;
    Ok(Analysis::new(g, facts, Vec::new()))
}

impl Job<'_> {
    /// Channel surgery to the chosen architecture and fine-tuning of the pruned network.
    pub(super) fn finetune(&mut self, c: &Chosen) -> Result<Tuned, SearchError> {
        let (r, o) = (self.r, self.o);
        let ks = reward::keep_sets(&self.net, &self.budget, &c.best.kept, r.search.criterion.p())?;
        let an_t = reanalyse(&c.trained, r.input_shape.as_deref())?;
        let pruned =
            crate::rewrite::surgery::prune(&c.trained, &an_t, &ks, r.input_shape.as_deref())
                .map_err(|e| anyhow!("surgery: {e}"))?;
        let an_p = reanalyse(&pruned.graph, r.input_shape.as_deref())?;
        let t_ft = Instant::now();
        let mut net =
            Net::new(&pruned.graph, &an_p, self.device).context("building the pruned network")?;
        net.set_compute(r.training.precision, r.training.channels_last);
        if r.finetune.epochs > 0 {
            if o.progress {
                eprintln!(
                    "fine-tuning the pruned network ({} -> {} MACs) for {} epochs",
                    pruned.macs_before, pruned.macs_after, r.finetune.epochs
                );
            }
            let cfg = TrainConfig {
                epochs: r.finetune.epochs,
                optim: r.finetune_training().optim(),
                eval_every: r.training.eval_every,
                checkpoint_dir: Some(self.ckpt.join("finetune")),
                resume: o.resume,
                metrics: Some(o.run_dir.join("finetune.jsonl")),
                progress: o.progress,
                seed: Stream::Finetune.seed(r.training.seed),
            };
            trainer::train(&mut net, &self.train, Some(&self.test), &cfg)
                .map_err(|e| e.lr_field("finetune.lr"))?;
        }
        Ok(Tuned { net, seconds: t_ft.elapsed().as_secs_f64() })
    }
}
