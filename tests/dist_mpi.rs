//! Data-parallel rlal under `mpirun` (Open MPI) on this machine's CPU:
//! 2 and 3 ranks train exactly as one process with the same global batch,
//! a 2-rank `rlal prune` runs end to end and writes its files from rank 0,
//! a killed rank ends the job with an error naming it, a stopped rank trips
//! the collectives' watchdog, and the killed job resumes from its checkpoint.
//!
//! Without `mpirun` these tests say so and pass, unless `RLAL_REQUIRE_MPI=1`
//! (set by `tools/test.sh`, whose setup installs Open MPI): then they fail.
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::{have_mpirun, mpirun, out, rank_pids, weights, BIN};

const TRAIN: &str = "model: graphs/mnist_cnn.onnx\ndata: data/mnist5k\nholdout: 0\ntraining:\n  epochs: 2\n  batch-size: 48\n  lr: 0.05\n  insert-bn: off\n  train-samples: 400\n  mean: [0.1307]\n  std: [0.3081]\n  threads: 1\n  workers: 0\n  eval-every: 0\n";

/// Trains with `ranks` processes (0: no launcher) and returns the written weights and metrics.
fn train(dir: &Path, ranks: usize) -> (Vec<(String, Vec<f32>)>, Vec<serde_json::Value>) {
    let r = dir.join("train.yaml");
    std::fs::write(&r, TRAIN).unwrap();
    let (onnx, metrics) = (dir.join(format!("m{ranks}.onnx")), dir.join(format!("m{ranks}.jsonl")));
    let args = [
        "train",
        "--recipe",
        r.to_str().unwrap(),
        "--output",
        onnx.to_str().unwrap(),
        "--metrics",
        metrics.to_str().unwrap(),
        "-q",
    ];
    let o = if ranks == 0 {
        Command::new(BIN).args(args).output()
    } else {
        mpirun(ranks, &args).output()
    }
    .unwrap();
    assert!(o.status.success(), "{} ranks: {}", ranks, out(&o));
    let w = weights(&onnx);
    let m = std::fs::read_to_string(&metrics)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    (w, m)
}

#[test]
fn two_and_three_ranks_train_exactly_as_one_process() {
    if !have_mpirun() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (w1, m1) = train(dir.path(), 0);
    for ranks in [2, 3] {
        // 48 = 2 x 24 = 3 x 16; the last global batch of 400 (16 images) is split too.
        let (w, m) = train(dir.path(), ranks);
        assert_eq!(w.len(), w1.len());
        for ((n, a), (_, b)) in w1.iter().zip(&w) {
            let scale = a.iter().fold(1e-3f32, |s, x| s.max(x.abs()));
            let diff = a.iter().zip(b).fold(0f32, |d, (x, y)| d.max((x - y).abs()));
            assert!(diff <= 1e-4 * scale, "{ranks} ranks: {n} differs by {diff} (scale {scale})");
        }
        for (a, b) in m1.iter().zip(&m) {
            let (la, lb) = (a["train_loss"].as_f64().unwrap(), b["train_loss"].as_f64().unwrap());
            assert!((la - lb).abs() < 1e-5 * la.abs().max(1.0), "{ranks} ranks: loss {la} vs {lb}");
            assert_eq!(a["train_acc"], b["train_acc"], "{ranks} ranks: accuracy differs");
        }
        assert_eq!(m.len(), 2, "rank 0 writes the metrics once per epoch");
    }
}

const PRUNE: &str = "model: graphs/mnist_cnn.onnx\ndata: data/mnist5k\nmacs-ratio: 0.5\ntraining:\n  epochs: 3\n  train-samples: 600\n  batch-size: 64\n  lr: 0.05\n  mean: [0.1307]\n  std: [0.3081]\n  threads: 1\n  workers: 0\n  eval-every: 0\nsearch:\n  weights-only-epochs: 1\n  buffer-epochs: 1\n  agent-epochs: 3\n  episodes-per-epoch: 3\n  reward-samples: 200\nfinetune:\n  epochs: 1\nagent:\n  updates-per-epoch: 5\n  batch-size: 16\n";

fn prune_cmd(ranks: usize, recipe: &Path, run: &Path, resume: bool) -> Command {
    let run = run.to_str().unwrap().to_string();
    let mut args = vec!["prune".to_string()];
    if resume {
        // The run directory holds its recipe.
        args.extend(["--resume".into(), run]);
    } else {
        args.extend(["--recipe".into(), recipe.to_str().unwrap().into(), "--run-dir".into(), run]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    mpirun(ranks, &args)
}

#[test]
fn two_rank_prune_runs_end_to_end() {
    if !have_mpirun() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let r = dir.path().join("p.yaml");
    std::fs::write(&r, PRUNE).unwrap();
    let run = dir.path().join("run");
    let o = prune_cmd(2, &r, &run, false).output().unwrap();
    assert!(o.status.success(), "{}", out(&o));
    let text = String::from_utf8_lossy(&o.stdout);
    assert_eq!(text.matches("pruned model:").count(), 1, "only rank 0 reports: {text}");
    let rep: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join("report.json")).unwrap()).unwrap();
    assert!(rep.is_object());
    assert!(run.join("pruned.onnx").exists());
    let rows = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    assert_eq!(rows.lines().count(), 3, "one metrics row per epoch: {rows}");
    let st: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join("checkpoints/search.json")).unwrap())
            .unwrap();
    assert_eq!(st["world"], 2);
    // The same run resumed with another world size is refused with a clear error.
    let o = prune_cmd(3, &r, &run, true).output().unwrap();
    assert!(o.status.success(), "a complete run resumes to its report: {}", out(&o));
    std::fs::remove_file(run.join("report.json")).unwrap();
    let o = prune_cmd(3, &r, &run, true).output().unwrap();
    assert!(!o.status.success());
    assert!(out(&o).contains("resumed with 3"), "{}", out(&o));
}

/// Starts a 2-rank prune of many epochs, waits for its first checkpoint, sends `signal`
/// to rank 1 and returns the job's output (it must end within `limit`).
fn disturb_rank(
    dir: &Path,
    signal: &str,
    timeout_env: &str,
    limit: Duration,
) -> (Output, PathBuf, PathBuf) {
    let r = dir.join("long.yaml");
    let long =
        PRUNE.replace("epochs: 3\n", "epochs: 8\n").replace("agent-epochs: 3", "agent-epochs: 8");
    std::fs::write(&r, long).unwrap();
    let run = dir.join(format!("run-{signal}"));
    let child = prune_cmd(2, &r, &run, false)
        .env("RLAL_DIST_TIMEOUT", timeout_env)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    while !run.join("checkpoints/search.json").exists() {
        assert!(t0.elapsed() < Duration::from_secs(300), "no checkpoint within 300 s");
        std::thread::sleep(Duration::from_millis(200));
    }
    let tag = run.to_str().unwrap().to_string();
    let pid = rank_pids(&tag, "OMPI_COMM_WORLD_RANK")
        .into_iter()
        .find(|&(_, r)| r == 1)
        .expect("rank 1 runs")
        .0;
    Command::new("kill").args([signal, &pid.to_string()]).status().unwrap();
    let t1 = Instant::now();
    let o = child.wait_with_output().unwrap();
    for (pid, _) in rank_pids(&tag, "OMPI_COMM_WORLD_RANK") {
        // Never leave a stopped rank behind, whatever the launcher did.
        let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).status();
    }
    assert!(t1.elapsed() < limit, "the job took {:?} to end after {signal}", t1.elapsed());
    (o, r, run)
}

#[test]
fn a_killed_rank_ends_the_job_and_the_job_resumes() {
    if !have_mpirun() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (o, r, run) = disturb_rank(dir.path(), "-KILL", "600", Duration::from_secs(60));
    assert!(!o.status.success(), "{}", out(&o));
    let text = out(&o);
    assert!(text.contains("rank 1"), "the error names the rank: {text}");
    // Relaunched, the job continues from the last checkpoint to the end.
    let st: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join("checkpoints/search.json")).unwrap())
            .unwrap();
    let done = st["epoch"].as_u64().unwrap();
    assert!((1..8).contains(&done), "killed after epoch {done}");
    let o = prune_cmd(2, &r, &run, true).output().unwrap();
    let text = out(&o);
    assert!(o.status.success(), "{text}");
    assert!(text.contains(&format!("after epoch {done} of 8")), "{text}");
    let rows = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    assert_eq!(rows.lines().count(), 8, "{rows}");
    assert!(run.join("report.json").exists());
}

#[test]
fn a_stopped_rank_trips_the_watchdog() {
    if !have_mpirun() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (o, _, _) = disturb_rank(dir.path(), "-STOP", "5", Duration::from_secs(60));
    assert!(!o.status.success());
    let text = out(&o);
    assert!(text.contains("did not complete within 5 s"), "{text}");
    assert!(text.contains("rank 0 of 2"), "{text}");
}

#[test]
fn a_global_batch_smaller_than_the_world_is_refused() {
    if !have_mpirun() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let r = dir.path().join("t.yaml");
    std::fs::write(&r, TRAIN.replace("batch-size: 48", "batch-size: 2")).unwrap();
    let o = mpirun(3, &["train", "--recipe", r.to_str().unwrap(), "-q"]).output().unwrap();
    assert!(!o.status.success());
    let text = out(&o);
    assert!(text.contains("batch-size 2 is smaller than the 3 ranks"), "{text}");
}
