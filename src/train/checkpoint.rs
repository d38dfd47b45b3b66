//! Checkpoints, one format for every job: named groups of tensors in one file
//! (`net.*` weights, `sgd.*` momenta, and whatever else the job adds, e.g. the
//! agent's `agent.*`), written to a temporary file and renamed, then a JSON
//! state that names that file and records its size and SHA-256, written
//! atomically. `rlal train` and fine-tuning write `state.json`; `rlal prune`'s
//! joint phase writes `search.json`.
//!
//! The two newest checkpoints are kept: the state of the one before is copied to
//! `<state>.prev.json` (`state.prev.json`, `search.prev.json`) before the new state
//! replaces it, and a tensor file is removed once neither state names it. A resume
//! verifies the tensor file against the recorded size and digest before loading it;
//! when the newest checkpoint is damaged or missing it warns, naming the file and
//! what is wrong, and resumes from the previous one; when neither is usable it stops
//! with one line naming both and what to do.
use super::{Net, TrainError};
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use tch::Tensor;

/// The JSON part of a checkpoint: whatever the job keeps, plus the tensor file it names.
pub trait CheckpointState: Serialize + DeserializeOwned {
    /// The tensor file, relative to the checkpoint directory.
    fn tensors(&self) -> &str;
    /// Fingerprint of the network the weights belong to ([`fingerprint`]).
    fn graph(&self) -> &str;
    /// Epochs the checkpoint covers (for messages).
    fn epoch(&self) -> usize;
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
    fn epoch(&self) -> usize {
        self.epoch
    }
}

/// File name of the training state in a checkpoint directory.
pub const TRAIN_STATE: &str = "state.json";

fn ferr(p: &Path, m: impl ToString) -> TrainError {
    let msg = crate::util::readable_error(&m.to_string());
    TrainError::File { path: p.display().to_string(), msg }
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

/// Size and SHA-256 of a tensor file, recorded in the state written after it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FileDigest {
    pub bytes: u64,
    pub sha256: String,
}

impl FileDigest {
    /// The size and digest of file `p`.
    pub fn of(p: &Path) -> std::io::Result<FileDigest> {
        let mut f = std::fs::File::open(p)?;
        let mut h = Sha256::new();
        let bytes = std::io::copy(&mut f, &mut h)?;
        let sha256 = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
        Ok(FileDigest { bytes, sha256 })
    }

    /// What is wrong with file `p` against this record (None: nothing).
    fn check(&self, p: &Path) -> Option<String> {
        let now = match FileDigest::of(p) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Some("missing".into()),
            Err(e) => return Some(e.to_string()),
        };
        if now.bytes != self.bytes {
            Some(format!(
                "{} bytes where the checkpoint recorded {} (truncated or overwritten)",
                now.bytes, self.bytes
            ))
        } else if now.sha256 != self.sha256 {
            Some(
                "its SHA-256 differs from the one the checkpoint recorded (the file is damaged)"
                    .into(),
            )
        } else {
            None
        }
    }
}

/// A state as written: the job's fields plus the digest of its tensor file (absent in
/// checkpoints written before digests were recorded; those load unverified).
#[derive(Serialize, Deserialize)]
struct Stamped<S> {
    #[serde(flatten)]
    state: S,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    digest: Option<FileDigest>,
}

/// The file that keeps the previous state: `search.json` -> `search.prev.json`.
pub fn previous(json: &str) -> String {
    match json.strip_suffix(".json") {
        Some(stem) => format!("{stem}.prev.json"),
        None => format!("{json}.prev"),
    }
}

/// Writes `named`, then `state` (as `dir/json`, with the tensor file's digest), after
/// keeping the state it replaces as the previous checkpoint; removes tensor files that
/// neither state names any more.
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
    let digest = FileDigest::of(&file).map_err(|e| ferr(&file, e))?;
    let (sp, pp) = (dir.join(json), dir.join(previous(json)));
    let old: Vec<(Vec<u8>, String)> =
        [&sp, &pp].iter().filter_map(|p| tensors_named::<S>(p)).collect();
    // The newest older checkpoint whose tensor file is still there becomes the previous one.
    let keep = old.iter().find(|(_, t)| t != state.tensors() && dir.join(t).exists());
    if let Some((bytes, _)) = keep {
        crate::util::write_atomic(&pp, bytes).map_err(|e| ferr(&pp, e))?;
    }
    let stamped = Stamped { state, digest: Some(digest) };
    let bytes = serde_json::to_vec_pretty(&stamped).map_err(|e| ferr(&sp, e))?;
    crate::util::write_atomic(&sp, &bytes).map_err(|e| ferr(&sp, e))?;
    let kept = [state.tensors(), keep.map_or("", |k| k.1.as_str())];
    for (_, t) in old.iter().filter(|(_, t)| !kept.contains(&t.as_str())) {
        let _ = std::fs::remove_file(dir.join(t));
    }
    Ok(())
}

/// The bytes of state file `p` and the tensor file it names (None: unreadable).
fn tensors_named<S: CheckpointState>(p: &Path) -> Option<(Vec<u8>, String)> {
    let bytes = std::fs::read(p).ok()?;
    let st: S = serde_json::from_slice(&bytes).ok()?;
    let t = st.tensors().to_string();
    Some((bytes, t))
}

pub fn state_path(dir: &Path) -> PathBuf {
    dir.join(TRAIN_STATE)
}

/// Reads `dir/json`.
pub fn load_state<S: CheckpointState>(dir: &Path, json: &str) -> Result<S, TrainError> {
    read_stamped::<S>(&dir.join(json)).map(|s| s.state)
}

fn read_stamped<S: CheckpointState>(p: &Path) -> Result<Stamped<S>, TrainError> {
    let bytes = std::fs::read(p).map_err(|e| ferr(p, e))?;
    serde_json::from_slice(&bytes).map_err(|e| ferr(p, format!("not a checkpoint state: {e}")))
}

/// Checkpoint tensors by name.
pub type Named = HashMap<String, Tensor>;

/// The newest usable checkpoint in `dir` (None when there is none at all): its state,
/// checked to belong to `net`, and its tensors by name, verified against the recorded
/// digest. A damaged or missing newest checkpoint is reported on stderr and the
/// previous one is used; neither usable is an error naming both.
pub fn load<S: CheckpointState>(
    dir: &Path,
    json: &str,
    net: &Net,
) -> Result<Option<(S, Named)>, TrainError> {
    let names = [json.to_string(), previous(json)];
    if names.iter().all(|n| !dir.join(n).exists()) {
        return Ok(None);
    }
    let mut problems: Vec<String> = Vec::new();
    for n in &names {
        match load_one::<S>(dir, n, net)? {
            Ok(found) => {
                if let Some(p) = problems.first().filter(|_| crate::dist::is_root()) {
                    eprintln!(
                        "warning: {p}; resuming from the previous checkpoint ({}, epoch {})",
                        dir.join(n).display(),
                        found.0.epoch()
                    );
                }
                return Ok(Some(found));
            }
            Err(p) => problems.push(p.to_string()),
        }
    }
    Err(ferr(
        dir,
        format!(
            "no usable checkpoint: {}; remove {} to start afresh",
            problems.join("; "),
            dir.display()
        ),
    ))
}

/// The checkpoint of state file `dir/json`: Ok(Err(the file at fault and what is wrong
/// with it)) when it is damaged or missing; Err when it belongs to another network.
fn load_one<S: CheckpointState>(
    dir: &Path,
    json: &str,
    net: &Net,
) -> Result<Result<(S, Named), TrainError>, TrainError> {
    let sp = dir.join(json);
    if !sp.exists() {
        return Ok(Err(ferr(&sp, "missing")));
    }
    let st = match read_stamped::<S>(&sp) {
        Ok(st) => st,
        Err(e) => return Ok(Err(e)),
    };
    if st.state.graph() != fingerprint(net) {
        return Err(ferr(
            &sp,
            format!(
                "the checkpoint belongs to another network ({}; this one is {})",
                st.state.graph(),
                fingerprint(net)
            ),
        ));
    }
    let p = dir.join(st.state.tensors());
    if let Some(wrong) = st.digest.as_ref().and_then(|d| d.check(&p)) {
        return Ok(Err(ferr(&p, wrong)));
    }
    Ok(Tensor::load_multi(&p)
        .map(|all| (st.state, all.into_iter().collect()))
        .map_err(|e| ferr(&p, e)))
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
