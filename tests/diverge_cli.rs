//! A diverging agent stops `rlal prune`: the error names the network, the epoch and
//! the recipe field, the exit code is non-zero, no pruned model is written, the last
//! good checkpoint stays, and the run resumes once the field is fixed in the run
//! directory's recipe.yaml (docs/RECIPES.md "When a run diverges").
use std::path::Path;
use std::process::Command;

const PRUNE: &str = "model: graphs/mnist_cnn.onnx\ndata: data/mnist5k\nmacs-ratio: 0.5\ntraining:\n  epochs: 4\n  train-samples: 300\n  batch-size: 64\n  lr: 0.05\n  mean: [0.1307]\n  std: [0.3081]\n  threads: 1\n  workers: 0\n  eval-every: 0\nsearch:\n  weights-only-epochs: 1\n  buffer-epochs: 1\n  agent-epochs: 4\n  episodes-per-epoch: 3\n  reward-samples: 100\nfinetune:\n  epochs: 1\nagent:\n  updates-per-epoch: 5\n  batch-size: 16\n  overlap: OVERLAP\n  LRS";

fn rlal(args: &[&str]) -> (i32, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_rlal")).args(args).output().unwrap();
    (o.status.code().unwrap_or(-1), String::from_utf8_lossy(&o.stderr).into_owned())
}

fn epoch_of(run: &Path) -> u64 {
    let st: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join("checkpoints/search.json")).unwrap())
            .unwrap();
    st["epoch"].as_u64().unwrap()
}

/// The agent's updates run after the episodes (`never`) or beside the next epoch's
/// weight training (`always`): the same error, the same checkpoint left.
#[test]
fn a_diverging_agent_stops_the_run_and_resumes_once_fixed() {
    for overlap in ["never", "always"] {
        diverges_and_resumes(overlap);
    }
}

fn diverges_and_resumes(overlap: &str) {
    let dir = tempfile::tempdir().unwrap();
    let recipe = dir.path().join("p.yaml");
    let lrs = "actor-lr: 1.0e8\n  critic-lr: 1.0e8\n  env-lr: 1.0e8\n";
    std::fs::write(&recipe, PRUNE.replace("LRS", lrs).replace("OVERLAP", overlap)).unwrap();
    let run = dir.path().join("run");
    let (r, d) = (recipe.to_str().unwrap(), run.to_str().unwrap());
    let (code, err) = rlal(&["prune", "--recipe", r, "--run-dir", d, "-q"]);
    assert_eq!(code, 1, "{err}");
    let line = err.lines().find(|l| l.starts_with("error:")).unwrap_or_default();
    assert!(line.contains("diverged"), "{err}");
    assert!(line.contains("agent updates of epoch 3"), "names the epoch: {line}");
    assert!(
        ["actor", "critic", "environment model"].iter().any(|n| line.contains(n)),
        "names the network: {line}"
    );
    assert!(line.contains("`agent."), "names the recipe field: {line}");
    assert!(!run.join("pruned.onnx").exists(), "no pruned model");
    assert_eq!(epoch_of(&run), 2, "the last good checkpoint (before the agent epochs) stays");
    // Fixed in the run directory's recipe, the run resumes from that checkpoint.
    let fixed = std::fs::read_to_string(run.join("recipe.yaml")).unwrap();
    let fixed: String = fixed
        .lines()
        .filter(|l| {
            !["actor-lr:", "critic-lr:", "env-lr:"]
                .contains(&l.trim().split(' ').next().unwrap_or(""))
        })
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(run.join("recipe.yaml"), fixed).unwrap();
    let (code, err) = rlal(&["prune", "--resume", run.to_str().unwrap(), "-q"]);
    assert_eq!(code, 0, "{err}");
    assert!(run.join("pruned.onnx").exists());
}
