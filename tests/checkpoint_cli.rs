//! Checkpoints that prove their integrity, on the real binary (`rlal train
//! --checkpoint-dir`; fine-tuning and `rlal prune` share the same code): the two
//! newest checkpoints are kept; a newest tensor file with inverted bytes, truncated
//! or missing is reported by name and the run resumes from the previous one to the
//! same weights as an uninterrupted run; with every checkpoint damaged the error is
//! one line naming the files, exit code non-zero, no libtorch stack trace.
use std::path::{Path, PathBuf};
use std::process::Command;

mod common;
use common::weights;

const RECIPE: &str = "model: graphs/mnist_cnn.onnx\ndata: data/mnist5k\nholdout: 0\ntraining:\n  batch-size: 50\n  lr: 0.05\n  schedule: constant\n  insert-bn: off\n  train-samples: 300\n  mean: [0.1307]\n  std: [0.3081]\n  threads: 1\n  workers: 0\n  eval-every: 0\n";

struct Run {
    code: i32,
    stderr: String,
}

/// `rlal train` of [`RECIPE`] for `epochs` into `dir/ck`, writing `dir/<out>`.
fn train(dir: &Path, epochs: usize, out: &str, resume: bool) -> Run {
    let recipe = dir.join("train.yaml");
    std::fs::write(&recipe, RECIPE).unwrap();
    let (ck, onnx) = (dir.join("ck"), dir.join(out));
    let e = epochs.to_string();
    let mut args = vec!["train", "--recipe", recipe.to_str().unwrap(), "--epochs", &e];
    args.extend(["--checkpoint-dir", ck.to_str().unwrap(), "-o", onnx.to_str().unwrap(), "-q"]);
    if resume {
        args.push("--resume");
    }
    let o = Command::new(env!("CARGO_BIN_EXE_rlal"))
        .args(&args)
        .env_remove("RUST_BACKTRACE")
        .output()
        .unwrap();
    Run { code: o.status.code().unwrap_or(-1), stderr: String::from_utf8_lossy(&o.stderr).into() }
}

fn files(dir: &Path) -> Vec<String> {
    let mut f: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('.'))
        .collect();
    f.sort();
    f
}

/// Inverts 400 bytes in the middle of `p`.
fn invert(p: &Path) {
    let mut b = std::fs::read(p).unwrap();
    let mid = b.len() / 2;
    b[mid..mid + 400].iter_mut().for_each(|x| *x = !*x);
    std::fs::write(p, b).unwrap();
}

fn truncate(p: &Path) {
    let b = std::fs::read(p).unwrap();
    std::fs::write(p, &b[..b.len() / 2]).unwrap();
}

fn remove(p: &Path) {
    std::fs::remove_file(p).unwrap();
}

/// Two epochs, the newest tensor file damaged by `damage`, then a resume to three
/// epochs: it warns naming the file and `what`, resumes from epoch 1 and ends with the
/// weights of `reference` (three epochs uninterrupted).
fn resumes_from_the_previous(damage: fn(&Path), what: &str, reference: &Path) {
    let dir = tempfile::tempdir().unwrap();
    let run = train(dir.path(), 2, "a.onnx", false);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let ck = dir.path().join("ck");
    assert_eq!(
        files(&ck),
        ["state.json", "state.prev.json", "weights-e1.ot", "weights-e2.ot"],
        "the two newest checkpoints are kept"
    );
    let newest = ck.join("weights-e2.ot");
    damage(&newest);
    let run = train(dir.path(), 3, "b.onnx", true);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let warning = run.stderr.lines().find(|l| l.starts_with("warning:")).unwrap_or_default();
    assert!(warning.contains(&newest.display().to_string()), "names the file: {}", run.stderr);
    assert!(warning.contains(what), "says what is wrong ({what}): {warning}");
    assert!(warning.contains("previous checkpoint") && warning.contains("epoch 1"), "{warning}");
    // A constant learning rate: the schedule does not depend on the epochs asked for.
    let same = weights(&dir.path().join("b.onnx")) == weights(reference);
    assert!(same, "the weights of an uninterrupted run");
}

fn reference(dir: &Path) -> PathBuf {
    let run = train(dir, 3, "ref.onnx", false);
    assert_eq!(run.code, 0, "{}", run.stderr);
    dir.join("ref.onnx")
}

#[test]
fn a_damaged_truncated_or_missing_newest_checkpoint_resumes_from_the_previous() {
    let dir = tempfile::tempdir().unwrap();
    let r = reference(dir.path());
    resumes_from_the_previous(invert, "SHA-256", &r);
    resumes_from_the_previous(truncate, "bytes where the checkpoint recorded", &r);
    resumes_from_the_previous(remove, "missing", &r);
}

#[test]
fn every_checkpoint_damaged_is_one_line_without_a_stack_trace() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(train(dir.path(), 2, "a.onnx", false).code, 0);
    let ck = dir.path().join("ck");
    invert(&ck.join("weights-e2.ot"));
    truncate(&ck.join("weights-e1.ot"));
    let run = train(dir.path(), 3, "b.onnx", true);
    assert_ne!(run.code, 0);
    assert_eq!(run.stderr.lines().count(), 1, "one line: {}", run.stderr);
    for f in ["weights-e2.ot", "weights-e1.ot"] {
        assert!(run.stderr.contains(f), "names {f}: {}", run.stderr);
    }
    assert!(run.stderr.contains("start afresh"), "says what to do: {}", run.stderr);
    assert!(!dir.path().join("b.onnx").exists());
    // Tensor files libtorch cannot read, in checkpoints without digests (as written
    // before they were recorded): libtorch's messages, still one line.
    truncate(&ck.join("weights-e2.ot"));
    for s in ["state.json", "state.prev.json"] {
        let p = ck.join(s);
        let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
        v.as_object_mut().unwrap().remove("digest");
        std::fs::write(&p, serde_json::to_vec(&v).unwrap()).unwrap();
    }
    let run = train(dir.path(), 3, "b.onnx", true);
    assert_ne!(run.code, 0);
    assert_eq!(run.stderr.lines().count(), 1, "one line: {}", run.stderr);
    assert!(!run.stderr.contains("frame #"), "{}", run.stderr);
    assert!(run.stderr.contains("weights-e1.ot"), "{}", run.stderr);
}
