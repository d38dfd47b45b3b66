//! Checkpoints: after each epoch, `weights-e<N>.ot` (every VarStore variable
//! plus the SGD momentum buffers as `sgd.<name>`, written to a temporary file
//! and renamed) and then `state.json` (epoch, step, RNG state, weights file),
//! written atomically; so `state.json` always names a complete weights file.
use super::optim::Sgd;
use super::{Net, TrainError};
use std::path::{Path, PathBuf};

/// The JSON part of a checkpoint.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct State {
    /// Epochs completed.
    pub epoch: usize,
    /// Optimizer steps taken.
    pub step: usize,
    /// State of the trainer's RNG (`rlal::rng::Rng::state`).
    pub rng: [u64; 4],
    /// Weights file, relative to the checkpoint directory.
    pub weights: String,
    /// Graph the weights belong to (a fingerprint: initializer names, joined).
    pub graph: String,
}

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

/// Writes a checkpoint into `dir` and removes the previous weights file.
pub fn save(dir: &Path, net: &Net, sgd: &Sgd, state: &State) -> Result<(), TrainError> {
    std::fs::create_dir_all(dir).map_err(|e| ferr(dir, e))?;
    let weights = dir.join(&state.weights);
    let tmp = dir.join(format!(".{}.tmp", state.weights));
    let mut named: Vec<(String, tch::Tensor)> = net.var_store().variables().into_iter().collect();
    named.extend(sgd.buffers().into_iter().map(|(n, t)| (format!("sgd.{n}"), t)));
    named.sort_by(|a, b| a.0.cmp(&b.0));
    tch::Tensor::save_multi(&named, &tmp).map_err(|e| ferr(&tmp, e))?;
    std::fs::rename(&tmp, &weights).map_err(|e| ferr(&weights, e))?;
    let old = load_state(dir).ok();
    let json = serde_json::to_vec_pretty(state).map_err(|e| ferr(dir, e))?;
    crate::util::write_atomic(&dir.join("state.json"), &json)
        .map_err(|e| ferr(&dir.join("state.json"), e))?;
    if let Some(old) = old.filter(|o| o.weights != state.weights) {
        let _ = std::fs::remove_file(dir.join(old.weights));
    }
    Ok(())
}

pub fn state_path(dir: &Path) -> PathBuf {
    dir.join("state.json")
}

pub fn load_state(dir: &Path) -> Result<State, TrainError> {
    let p = state_path(dir);
    let bytes = std::fs::read(&p).map_err(|e| ferr(&p, e))?;
    serde_json::from_slice(&bytes).map_err(|e| ferr(&p, e))
}

/// Loads weights and momentum buffers of a checkpoint into `net` and `sgd`.
pub fn restore(dir: &Path, net: &mut Net, sgd: &mut Sgd) -> Result<State, TrainError> {
    let state = load_state(dir)?;
    if state.graph != fingerprint(net) {
        return Err(ferr(
            &state_path(dir),
            format!(
                "the checkpoint belongs to another graph ({}; this one is {})",
                state.graph,
                fingerprint(net)
            ),
        ));
    }
    let p = dir.join(&state.weights);
    let tensors = tch::Tensor::load_multi(&p).map_err(|e| ferr(&p, e))?;
    let vars = net.var_store().variables();
    let mut bufs = Vec::new();
    for (name, t) in tensors {
        if let Some(n) = name.strip_prefix("sgd.") {
            bufs.push((n.to_string(), t));
        } else if let Some(v) = vars.get(&name) {
            tch::no_grad(|| v.shallow_clone().f_copy_(&t))
                .map_err(|e| ferr(&p, format!("variable '{name}': {e}")))?;
        } else {
            return Err(ferr(&p, format!("unknown variable '{name}'")));
        }
    }
    sgd.set_buffers(bufs);
    Ok(state)
}
