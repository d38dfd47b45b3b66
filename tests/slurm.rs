//! rlal under Slurm (the one-node cluster of `tools/setup.sh --slurm`):
//! `srun --mpi=pmix -n 2 rlal train` trains as `mpirun -np 2` does and its first
//! line names the launcher and the world size, README's `sbatch` script runs the
//! same job, and a task killed under `srun` ends the step non-zero without a hang
//! and leaves the node idle for the next job.
//!
//! Without a Slurm cluster these tests say so and pass, unless `RLAL_REQUIRE_SLURM=1`
//! (set by `tools/test.sh`, whose setup brings the cluster up): then they fail.
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

mod common;
use common::{have_mpirun, mpirun, ompi_env, out, rank_pids, weights, BIN};

/// The cluster has one node: the tests take it one at a time.
static NODE: Mutex<()> = Mutex::new(());

/// The node's state as `sinfo` prints it (`idle`, `completing`, `drained`, ...), or
/// `None` without a controller that answers.
fn node_state() -> Option<String> {
    let o = Command::new("sinfo").args(["-h", "-o", "%T"]).output().ok()?;
    let state = String::from_utf8_lossy(&o.stdout).trim().to_string();
    (o.status.success() && !state.is_empty()).then_some(state)
}

/// Waits for the node to be idle: a step that just ended (a killed task's above all)
/// leaves it `completing` for a few seconds, longer on a loaded machine.
fn wait_idle(limit: Duration) -> Option<String> {
    let t0 = Instant::now();
    loop {
        let state = node_state();
        if state.as_deref().is_none_or(|s| s.starts_with("idle")) || t0.elapsed() > limit {
            return state;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn have_slurm() -> bool {
    let state = wait_idle(Duration::from_secs(120));
    let up = state.as_deref().is_some_and(|s| s.starts_with("idle"));
    if !up {
        let reason = Command::new("sinfo").args(["-R", "-h"]).output();
        let reason = reason.map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
        assert!(
            std::env::var("RLAL_REQUIRE_SLURM").as_deref() != Ok("1"),
            "RLAL_REQUIRE_SLURM=1 but no idle Slurm node answers within 120 s (state {state:?}, \
             reason {:?}; tools/setup.sh --slurm, /var/log/slurm/)",
            reason.unwrap_or_default()
        );
        eprintln!("skipping: no Slurm cluster (tools/setup.sh --slurm)");
    }
    up && have_mpirun()
}

const TRAIN: &str = "model: graphs/mnist_cnn.onnx\ndata: data/mnist5k\nholdout: 0\ntraining:\n  epochs: 2\n  batch-size: 48\n  lr: 0.05\n  insert-bn: off\n  train-samples: 400\n  mean: [0.1307]\n  std: [0.3081]\n  threads: 1\n  workers: 0\n  eval-every: 0\n";

/// `rlal train` arguments of [`TRAIN`] writing `dir/<tag>.onnx` and `dir/<tag>.jsonl`.
fn train_args(dir: &Path, tag: &str) -> Vec<String> {
    let r = dir.join("train.yaml");
    std::fs::write(&r, TRAIN).unwrap();
    let p = |ext: &str| dir.join(format!("{tag}.{ext}")).to_str().unwrap().to_string();
    let r = r.to_str().unwrap().to_string();
    ["train", "--recipe", &r, "--output", &p("onnx"), "--metrics", &p("jsonl")]
        .map(String::from)
        .to_vec()
}

/// `srun --mpi=pmix -n 2 -K rlal args...` (a task that fails ends the step).
fn srun(args: &[String]) -> Command {
    let mut c = Command::new("srun");
    c.args(["--mpi=pmix", "-n", "2", "--kill-on-bad-exit=1", "--time=10"]).arg(BIN).args(args);
    ompi_env(&mut c);
    c
}

/// The losses and accuracies of metrics file `p`.
fn metrics(p: &Path) -> Vec<(f64, f64)> {
    let text = std::fs::read_to_string(p).unwrap();
    let v = |l: &str| serde_json::from_str::<serde_json::Value>(l).unwrap();
    text.lines()
        .map(v)
        .map(|m| (m["train_loss"].as_f64().unwrap(), m["train_acc"].as_f64().unwrap()))
        .collect()
}

/// The job of `tag` in `dir` trained exactly as the `mpirun -np 2` one of `reference`.
fn same_result(dir: &Path, tag: &str, reference: &str) {
    let (a, b) = (
        weights(&dir.join(format!("{reference}.onnx"))),
        weights(&dir.join(format!("{tag}.onnx"))),
    );
    assert_eq!(a.len(), b.len());
    for ((n, x), (_, y)) in a.iter().zip(&b) {
        let diff = x.iter().zip(y).fold(0f32, |d, (p, q)| d.max((p - q).abs()));
        assert!(diff <= 1e-6, "{tag}: {n} differs from {reference} by {diff}");
    }
    let (ma, mb) = (
        metrics(&dir.join(format!("{reference}.jsonl"))),
        metrics(&dir.join(format!("{tag}.jsonl"))),
    );
    assert_eq!(ma.len(), 2);
    assert_eq!(ma, mb, "{tag}: losses and accuracies as under mpirun");
}

fn mpirun_reference(dir: &Path) {
    let args = train_args(dir, "mpirun");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let o = mpirun(2, &args).output().unwrap();
    assert!(o.status.success(), "{}", out(&o));
    let first = String::from_utf8_lossy(&o.stderr).lines().next().unwrap_or_default().to_string();
    assert!(first.contains("world size 2 (mpirun, backend MPI)"), "{first}");
}

/// Runs `test` in a fresh directory with the node to itself (nothing without a cluster).
fn on_the_node(test: impl FnOnce(&Path)) {
    let _node = NODE.lock().unwrap_or_else(|e| e.into_inner());
    if have_slurm() {
        test(tempfile::tempdir().unwrap().path());
    }
}

#[test]
fn srun_trains_as_mpirun_and_names_the_launcher() {
    on_the_node(srun_job);
}

fn srun_job(dir: &Path) {
    mpirun_reference(dir);
    let o = srun(&train_args(dir, "srun")).output().unwrap();
    assert!(o.status.success(), "{}", out(&o));
    let stderr = String::from_utf8_lossy(&o.stderr);
    let first = stderr.lines().next().unwrap_or_default();
    assert!(first.starts_with("training "), "{stderr}");
    assert!(first.contains("world size 2 (srun, backend MPI)"), "{first}");
    same_result(dir, "srun", "mpirun");
}

/// README's batch script: 2 tasks, `srun --mpi=pmix` inside.
fn batch_script(dir: &Path, args: &[String]) -> PathBuf {
    let p = dir.join("train.sbatch");
    let body = format!(
        "#!/bin/bash\n#SBATCH --job-name=rlal-train\n#SBATCH --ntasks=2\n#SBATCH --time=00:10:00\n#SBATCH --output={}\nsrun --mpi=pmix --kill-on-bad-exit=1 {BIN} {}\n",
        dir.join("slurm-%j.out").display(),
        args.join(" ")
    );
    std::fs::write(&p, body).unwrap();
    p
}

#[test]
fn an_sbatch_script_runs_the_same_job() {
    on_the_node(sbatch_job);
}

fn sbatch_job(dir: &Path) {
    mpirun_reference(dir);
    let script = batch_script(dir, &train_args(dir, "sbatch"));
    let mut c = Command::new("sbatch");
    c.arg("--wait").arg(&script);
    let o = ompi_env(&mut c).output().unwrap();
    let log: String = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("slurm-"))
        .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
        .collect();
    assert!(o.status.success(), "{}{log}", out(&o));
    assert!(log.contains("world size 2 (srun, backend MPI)"), "{log}");
    same_result(dir, "sbatch", "mpirun");
}

#[test]
fn a_task_killed_under_srun_ends_the_step() {
    on_the_node(killed_task);
}

fn killed_task(dir: &Path) {
    let mut args = train_args(dir, "killed");
    args.extend(["--epochs".into(), "200".into()]);
    let child = srun(&args)
        .env("RLAL_DIST_TIMEOUT", "600")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Both ranks are training once rank 0 has written the first epoch's metrics.
    let m = dir.join("killed.jsonl");
    let t0 = Instant::now();
    while std::fs::read_to_string(&m).map_or(true, |t| t.lines().count() == 0) {
        assert!(t0.elapsed() < Duration::from_secs(300), "no epoch within 300 s");
        std::thread::sleep(Duration::from_millis(200));
    }
    let tag = dir.to_str().unwrap().to_string();
    let pid = rank_pids(&tag, "SLURM_PROCID").into_iter().find(|&(_, r)| r == 1).expect("task 1").0;
    Command::new("kill").args(["-KILL", &pid.to_string()]).status().unwrap();
    let t1 = Instant::now();
    let o = child.wait_with_output().unwrap();
    let left = rank_pids(&tag, "SLURM_PROCID");
    for (pid, _) in &left {
        let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).status();
    }
    assert!(t1.elapsed() < Duration::from_secs(60), "the step took {:?} to end", t1.elapsed());
    assert!(!o.status.success(), "{}", out(&o));
    assert!(left.is_empty(), "tasks left running: {left:?}");
    // The node returns to service (not drained by the killed task) for the next job.
    let state = wait_idle(Duration::from_secs(120));
    assert!(state.as_deref().is_some_and(|s| s.starts_with("idle")), "node {state:?}");
}
