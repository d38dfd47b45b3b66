//! Checkpoints, one format for every job: named groups of tensors in one file
//! (`net.*` weights, `sgd.*` momenta, and whatever else the job adds, e.g. the
//! agent's `agent.*`), written to a temporary file and renamed, then a JSON
//! state that names that file, written atomically; so the JSON always names a
//! complete tensor file, and the previous tensor file is removed only after.
//! `rlal train` and fine-tuning write `state.json`; `rlal prune`'s joint phase
//! writes `search.json`.
use super::{Net, TrainError};
use serde::{de::DeserializeOwned, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use tch::Tensor;

/// The JSON part of a checkpoint: whatever the job keeps, plus the tensor file it names.
pub trait CheckpointState: Serialize + DeserializeOwned {
    /// The tensor file, relative to the checkpoint directory.
    fn tensors(&self) -> &str;
    /// Fingerprint of the network the weights belong to ([`fingerprint`]).
    fn graph(&self) -> &str;
}

/// The state of `rlal train` and of fine-tuning.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct State {
    /// Epochs completed.
    pub epoch: usize,
    /// Optimizer steps taken.
    pub step: usize,
    /// State of the trainer's RNG (`rlal::rng::Rng::state`).
    pub rng: [u64; 4],
    /// Tensor file, relative to the checkpoint directory.
    #[serde(rename = "weights")]
    pub tensors: String,
    /// Graph the weights belong to.
    pub graph: String,
}

impl CheckpointState for State {
    fn tensors(&self) -> &str {
        &self.tensors
    }
    fn graph(&self) -> &str {
        &self.graph
    }
}

/// File name of the training state in a checkpoint directory.
pub const TRAIN_STATE: &str = "state.json";

fn ferr(p: &Path, m: impl ToString) -> TrainError {
    TrainError::File { path: p.display().to_string(), msg: m.to_string() }
}

/// A short fingerprint of the parameter layout.
pub fn fingerprint(net: &Net) -> String {
    let names: Vec<String> = net
        .params()
        .iter()
        .map(|p| {
            format!(
                "{}{:?}",
                p.onnx_name,
                net.param(&p.onnx_name).map(|t| t.size()).unwrap_or_default()
            )
        })
        .collect();
    let h = names.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, s| {
        s.bytes().fold(h, |h, b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3))
    });
    format!("{}-params-{h:016x}", names.len())
}

/// Writes `named` and then `state` (as `dir/json`) and removes the previous tensor file.
pub fn save<S: CheckpointState>(
    dir: &Path,
    json: &str,
    mut named: Vec<(String, Tensor)>,
    state: &S,
) -> Result<(), TrainError> {
    std::fs::create_dir_all(dir).map_err(|e| ferr(dir, e))?;
    let file = dir.join(state.tensors());
    let tmp = dir.join(format!(".{}.tmp", state.tensors()));
    named.sort_by(|a, b| a.0.cmp(&b.0));
    Tensor::save_multi(&named, &tmp).map_err(|e| ferr(&tmp, e))?;
    std::fs::rename(&tmp, &file).map_err(|e| ferr(&file, e))?;
    let old = load_state::<S>(dir, json).ok();
    let sp = dir.join(json);
    let bytes = serde_json::to_vec_pretty(state).map_err(|e| ferr(&sp, e))?;
    crate::util::write_atomic(&sp, &bytes).map_err(|e| ferr(&sp, e))?;
    if let Some(old) = old.filter(|o| o.tensors() != state.tensors()) {
        let _ = std::fs::remove_file(dir.join(old.tensors()));
    }
    Ok(())
}

pub fn state_path(dir: &Path) -> PathBuf {
    dir.join(TRAIN_STATE)
}

/// Reads `dir/json`.
pub fn load_state<S: CheckpointState>(dir: &Path, json: &str) -> Result<S, TrainError> {
    let p = dir.join(json);
    let bytes = std::fs::read(&p).map_err(|e| ferr(&p, e))?;
    serde_json::from_slice(&bytes).map_err(|e| ferr(&p, format!("not a checkpoint state: {e}")))
}

/// Checkpoint tensors by name.
pub type Named = HashMap<String, Tensor>;

/// The checkpoint in `dir` (None when `dir/json` does not exist): its state, checked to
/// belong to `net`, and its tensors by name.
pub fn load<S: CheckpointState>(
    dir: &Path,
    json: &str,
    net: &Net,
) -> Result<Option<(S, Named)>, TrainError> {
    if !dir.join(json).exists() {
        return Ok(None);
    }
    let st: S = load_state(dir, json)?;
    if st.graph() != fingerprint(net) {
        return Err(ferr(
            &dir.join(json),
            format!(
                "the checkpoint belongs to another network ({}; this one is {})",
                st.graph(),
                fingerprint(net)
            ),
        ));
    }
    let p = dir.join(st.tensors());
    let all = Tensor::load_multi(&p).map_err(|e| ferr(&p, e))?.into_iter().collect();
    Ok(Some((st, all)))
}

/// Copies the `net.*` tensors of a checkpoint (`file`, for errors) into `net`'s variables.
/// (Checkpoints of `rlal train` before the common format named them without the prefix.)
pub fn restore_net(
    net: &Net,
    all: &HashMap<String, Tensor>,
    file: &Path,
) -> Result<(), TrainError> {
    for (n, mut v) in net.var_store().variables() {
        let t = all
            .get(&format!("net.{n}"))
            .or_else(|| all.get(&n))
            .ok_or_else(|| ferr(file, format!("no tensor for network variable '{n}'")))?;
        tch::no_grad(|| v.f_copy_(t)).map_err(|e| ferr(file, format!("variable '{n}': {e}")))?;
    }
    Ok(())
}

/// The `net.*` tensors of a checkpoint: every variable of `net`.
pub fn net_tensors(net: &Net) -> Vec<(String, Tensor)> {
    net.var_store().variables().into_iter().map(|(n, t)| (format!("net.{n}"), t)).collect()
}

/// The tensors of `all` under `prefix`, with the prefix removed.
pub fn group(all: &HashMap<String, Tensor>, prefix: &str) -> Vec<(String, Tensor)> {
    all.iter()
        .filter_map(|(n, t)| n.strip_prefix(prefix).map(|n| (n.to_string(), t.shallow_clone())))
        .collect()
}
