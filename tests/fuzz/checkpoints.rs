//! Checkpoints: the two checkpoints `rlal train --checkpoint-dir` keeps (states and
//! tensor files), corrupted byte by byte, some with the states' digests removed (as
//! written before digests were recorded) so that damaged tensor files reach
//! libtorch's reader, loaded and restored as a resume does.
use super::data::mutate_file;
use super::{cases, root, seed, Failures, DEFAULT_CASES};
use rlal::analysis::{self, ImportOptions};
use rlal::train::checkpoint::{self, State, TRAIN_STATE};
use rlal::train::Net;
use std::path::Path;
use std::time::Instant;

fn net() -> Net {
    let (g, an) =
        analysis::import(&root().join("graphs/mnist_cnn.onnx"), &ImportOptions::default()).unwrap();
    Net::new(&g, &an, tch::Device::Cpu).unwrap()
}

/// Writes epochs 1 and 2 of a checkpoint directory into `dir`.
fn write_checkpoints(dir: &Path) {
    let net = net();
    for epoch in [1, 2] {
        let st = State {
            epoch,
            step: 10 * epoch,
            rng: [epoch as u64; 4],
            tensors: format!("weights-e{epoch}.ot"),
            graph: checkpoint::fingerprint(&net),
        };
        checkpoint::save(dir, TRAIN_STATE, checkpoint::net_tensors(&net), &st).unwrap();
    }
}

/// What a resume does with the directory: load the newest usable checkpoint, restore it.
fn resume(dir: &Path) {
    let net = net();
    if let Ok(Some((st, all))) = checkpoint::load::<State>(dir, TRAIN_STATE, &net) {
        let _ = checkpoint::restore_net(&net, &all, &dir.join(&st.tensors));
    }
}

/// Removes the recorded digest from state file `p` (when it still parses).
fn strip_digest(p: &Path) {
    let Ok(mut v) = serde_json::from_slice::<serde_json::Value>(&std::fs::read(p).unwrap()) else {
        return;
    };
    if let Some(o) = v.as_object_mut() {
        o.remove("digest");
    }
    std::fs::write(p, serde_json::to_vec(&v).unwrap()).unwrap();
}

#[test]
fn fuzz_checkpoints() {
    let n = (cases(DEFAULT_CASES) / 40).max(20);
    let mut rng = seed(4);
    let mut fails = Failures::new("checkpoints");
    let template = tempfile::tempdir().unwrap();
    write_checkpoints(template.path());
    let names = ["state.json", "state.prev.json", "weights-e1.ot", "weights-e2.ot"];
    let t0 = Instant::now();
    for case in 0..n {
        let dir = tempfile::tempdir().unwrap();
        for f in names {
            std::fs::copy(template.path().join(f), dir.path().join(f)).unwrap();
        }
        let mut what = Vec::new();
        if rng.bernoulli(0.4) {
            names[..2].iter().for_each(|s| strip_digest(&dir.path().join(s)));
            what.push("no digests".to_string());
        }
        for _ in 0..1 + rng.below_usize(3) {
            let f = names[rng.below_usize(names.len())];
            let p = dir.path().join(f);
            let mut b = std::fs::read(&p).unwrap();
            what.push(format!("{f} {}", mutate_file(&mut b, &mut rng)));
            std::fs::write(&p, b).unwrap();
        }
        let p = dir.path().to_path_buf();
        fails.run(case, &what.join(", "), move || resume(&p));
    }
    fails.check(n, t0);
}
