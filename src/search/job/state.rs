//! The joint phase's checkpoint (`checkpoints/search.json` and its tensor file) and
//! the per-epoch files: writing a finished epoch, and resuming from the last one.
use super::Job;
use crate::rng::Rng;
use crate::search::best::Incumbents;
use crate::search::policy::SearchPolicy;
use crate::search::report::EpochRow;
use crate::search::{plot, Input, SearchError};
use crate::train::checkpoint::{self, fingerprint, CheckpointState};
use crate::train::trainer::Trainer;
use crate::train::Net;
use anyhow::{anyhow, Context};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};
use tch::Tensor;

/// The checkpoint directory in the run directory.
pub(super) const CKPT: &str = "checkpoints";

/// File name of the joint phase's state in the checkpoint directory.
const SEARCH_STATE: &str = "search.json";

/// `checkpoints/search.json`: everything of the joint phase that is not a tensor.
#[derive(Serialize, Deserialize)]
pub(super) struct SearchState {
    /// Joint-training epochs completed.
    epoch: usize,
    step: usize,
    rng: [u64; 4],
    /// The architectures the selection rule keeps (best first).
    incumbents: Incumbents,
    /// The search policy's state ([`SearchPolicy::state`]).
    #[serde(default)]
    policy: serde_json::Value,
    /// The agent's replay buffer in checkpoints written before the policies had
    /// their own state (read into `policy` as the `rlal` policy's state).
    #[serde(default, skip_serializing)]
    replay: Option<serde_json::Value>,
    search_seconds: f64,
    elapsed_seconds: f64,
    /// Tensor file (net weights `net.*`, SGD momenta `sgd.*`, the policy's, e.g. the
    /// agent's `agent.*`), relative to the checkpoint directory.
    tensors: String,
    /// Fingerprint of the network the weights belong to.
    graph: String,
    /// Ranks of the job that wrote it (a resume needs the same).
    #[serde(default = "one")]
    world: usize,
}

fn one() -> usize {
    1
}

impl CheckpointState for SearchState {
    fn tensors(&self) -> &str {
        &self.tensors
    }
    fn graph(&self) -> &str {
        &self.graph
    }
    fn epoch(&self) -> usize {
        self.epoch
    }
}

/// Restores the joint phase from `dir` (None: no checkpoint there).
fn load_checkpoint(
    dir: &Path,
    net: &mut Net,
    tr: &mut Trainer,
    policy: &mut dyn SearchPolicy,
) -> anyhow::Result<Option<SearchState>> {
    let Some((mut st, all)) = checkpoint::load::<SearchState>(dir, SEARCH_STATE, net)? else {
        return Ok(None);
    };
    let p = dir.join(&st.tensors);
    tr.restore(net, &all, &p)?;
    tr.step = st.step;
    if let (serde_json::Value::Null, Some(replay)) = (&st.policy, st.replay.take()) {
        st.policy = serde_json::json!({ "replay": replay });
    }
    policy.restore(&st.policy, &all).map_err(|e| anyhow!("{}: {e}", p.display()))?;
    Ok(Some(st))
}

/// Opens `metrics.jsonl` for appending (`keep`: the lines a resumed checkpoint covers) or empty.
pub(super) fn open_metrics(path: &Path, keep: bool) -> anyhow::Result<std::fs::File> {
    let f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    if !keep {
        f.set_len(0).with_context(|| format!("truncating {}", path.display()))?;
    }
    Ok(f)
}

impl Job<'_> {
    pub(super) fn metrics_path(&self) -> PathBuf {
        self.o.run_dir.join("metrics.jsonl")
    }

    /// Continues from the run directory's checkpoint, when there is one.
    pub(super) fn resume(&mut self) -> Result<(), SearchError> {
        let loaded = load_checkpoint(&self.ckpt, &mut self.net, &mut self.tr, self.policy.as_mut())
            .map_err(Input)?;
        let Some(st) = loaded else { return Ok(()) };
        let state_file = self.ckpt.join(SEARCH_STATE);
        let world = crate::dist::world().map_or(1, |w| w.size);
        if st.world != world {
            return Err(Input(anyhow!(
                "{}: the run was checkpointed with {} rank(s) and is resumed with {world}; resume with the same world size (the episodes' split and the data shards depend on it)",
                state_file.display(),
                st.world
            )).into());
        }
        (self.start, self.t_search, self.elapsed0) =
            (st.epoch, st.search_seconds, st.elapsed_seconds);
        self.rng = Rng::from_state(st.rng)
            .ok_or_else(|| Input(anyhow!("{}: invalid RNG state", state_file.display())))?;
        self.inc = st.incumbents;
        if self.root {
            let path = self.metrics_path();
            let lines = crate::util::truncate_lines(&path, self.start)
                .with_context(|| format!("writing {}", path.display()))?;
            self.rows = lines.iter().filter_map(|l| serde_json::from_str(l).ok()).collect();
        }
        if self.o.progress {
            eprintln!(
                "resuming {} after epoch {} of {}",
                self.o.run_dir.display(),
                self.start,
                self.r.training.epochs
            );
        }
        Ok(())
    }

    /// The state a checkpoint at the end of epoch `epoch` (1-based) holds.
    pub(super) fn state(&self, epoch: usize, step: usize, elapsed: f64) -> SearchState {
        SearchState {
            epoch,
            step,
            rng: self.rng.state(),
            incumbents: self.inc.clone(),
            policy: self.policy.state(),
            replay: None,
            search_seconds: self.t_search,
            elapsed_seconds: elapsed,
            tensors: format!("search-e{epoch}.ot"),
            graph: fingerprint(&self.net),
            world: crate::dist::world().map_or(1, |w| w.size),
        }
    }

    /// Writes a finished epoch: its metrics row (and progress line), its checkpoint
    /// (`named`: the trainer's tensors at the end of that epoch, with the policy's) and
    /// the plots. Rank 0 writes the job's files (the other ranks hold the same state).
    pub(super) fn close(
        &mut self,
        row: EpochRow,
        mut named: Vec<(String, Tensor)>,
        st: &SearchState,
    ) -> Result<(), SearchError> {
        let Some(metrics) = self.metrics.as_mut() else { return Ok(()) };
        writeln!(metrics, "{}", serde_json::to_string(&row).expect("metrics serialise"))
            .context("writing metrics.jsonl")?;
        metrics.flush().context("writing metrics.jsonl")?;
        if self.o.progress {
            crate::util::progress_done(format_args!("{}", row.line(self.r.training.epochs)));
        }
        self.rows.push(row);
        named.extend(self.policy.tensors());
        checkpoint::save(&self.ckpt, SEARCH_STATE, named, st)?;
        Ok(plot::write_search(&self.o.run_dir, &self.rows)?)
    }
}
