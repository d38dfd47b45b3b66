//! The job's last phase: `unpruned.onnx` and `pruned.onnx` (BN folded unless
//! `keep-bn`), validated in ONNX Runtime, and the report.
use super::{Best, Chosen, Job, Tuned};
use crate::ir::Graph;
use crate::search::report::{self, EpochRow};
use crate::search::{latency, plot, SearchError};
use anyhow::Context;

/// Search seconds per training second over the epochs that scored episodes.
fn search_overhead(rows: &[EpochRow]) -> f64 {
    let (tr, se) = rows
        .iter()
        .filter(|r| !r.rewards.is_empty())
        .fold((0.0, 0.0), |(a, b), r| (a + r.train_seconds, b + r.search_seconds));
    if tr > 0.0 {
        se / tr
    } else {
        0.0
    }
}

impl Job<'_> {
    /// Writes unpruned.onnx and pruned.onnx (BN folded unless `keep-bn`), validates them
    /// in ONNX Runtime (accuracy, MACs, latency; the latency budget's estimate against
    /// the measured), and writes the report.
    pub(super) fn export(self, c: Chosen, tuned: Tuned) -> Result<report::Report, SearchError> {
        let (r, o) = (self.r, self.o);
        let ft_rows: Vec<serde_json::Value> =
            std::fs::read_to_string(o.run_dir.join("finetune.jsonl"))
                .unwrap_or_default()
                .lines()
                .filter_map(|l| serde_json::from_str(l).ok())
                .collect();
        let ft_rows = if r.finetune.epochs > 0 { ft_rows } else { Vec::new() };
        plot::write_accuracy(&o.run_dir, &self.rows, &ft_rows)?;
        let mut out = tuned.net.export()?;
        let mut unpruned = c.trained;
        if !r.training.keep_bn {
            crate::ir::bn::fold_bn(&mut out);
            crate::ir::bn::fold_bn(&mut unpruned);
        }
        // Both models record the preprocessing they were trained with (`rlal eval` reads it).
        let pre =
            r.training.preprocess(self.test.dataset().shape(), self.test.dataset().num_classes());
        out.meta.set_props(pre.to_props());
        unpruned.meta.set_props(pre.to_props());
        crate::onnx::save(&unpruned, &o.run_dir.join("unpruned.onnx"))
            .context("writing unpruned.onnx")?;
        crate::onnx::save(&out, &o.run_dir.join("pruned.onnx")).context("writing pruned.onnx")?;
        let ctx = report::Context {
            recipe: r,
            original: self.original.clone(),
            best: &c.best,
            final_choice_changed: c.changed,
            layers: c.layers,
            masked_acc: c.masked_acc,
            search_seconds: self.t_search,
            finetune_seconds: tuned.seconds,
            total_seconds: self.elapsed0 + self.t_all.elapsed().as_secs_f64(),
            train_seconds: self.rows.iter().map(|r| r.train_seconds).sum(),
            search_overhead: search_overhead(&self.rows),
        };
        let batch = r.training.batch_size.clamp(1, 64);
        let mut rep = report::validate(&ctx, &unpruned, &out, &self.test, self.dims, batch)?;
        rep.latency_budget = self.latency_budget(&c.best, &unpruned, &out)?;
        report::write(&o.run_dir, &rep)?;
        Ok(rep)
    }

    /// A latency budget's estimate against the measured latency of both models.
    fn latency_budget(
        &self,
        best: &Best,
        unpruned: &Graph,
        pruned: &Graph,
    ) -> Result<Option<report::LatencyBudget>, SearchError> {
        let (Some(t), budget) = (&self.budget.latency, &self.budget) else { return Ok(None) };
        let e = latency::Effort { warmup: 3, runs: 20 };
        let ms = |g: &Graph| latency::model_ms(g, self.dims, t.batch, t.threads, e);
        let ns = |kv: &[usize]| t.eval(&budget.cost, kv) as f64 / 1e6;
        Ok(Some(report::LatencyBudget {
            batch: t.batch,
            threads: t.threads,
            target_ms: budget.target as f64 / 1e6,
            estimated_unpruned_ms: ns(&budget.cost.full),
            estimated_pruned_ms: ns(&budget.kept_vector(&best.kept)),
            measured_unpruned_ms: ms(unpruned).context("timing unpruned.onnx")?,
            measured_pruned_ms: ms(pruned).context("timing pruned.onnx")?,
        }))
    }
}
