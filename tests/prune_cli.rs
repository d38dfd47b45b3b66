//! `rlal prune` on the real binary: every recipe in recipes/ parses and
//! validates, impossible budgets are exit code 2 with the figure, and tiny end
//! to end runs (RLAL and the uniform baseline) on mnist_cnn + mnist5k write the
//! run directory, meet the MACs target, and report the accuracy `rlal eval`
//! measures on the written pruned.onnx with ONNX Runtime.
use std::path::Path;
use std::process::Command;

fn rlal(args: &[&str]) -> (i32, String, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_rlal")).args(args).output().unwrap();
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// The run directory's `report.json`.
fn report(run: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(run.join("report.json")).unwrap()).unwrap()
}

/// `rlal prune --recipe RECIPE --run-dir RUN -q`.
fn prune_in(recipe: &Path, run: &Path) -> (i32, String, String) {
    rlal(&["prune", "--recipe", recipe.to_str().unwrap(), "--run-dir", run.to_str().unwrap(), "-q"])
}

#[test]
fn every_recipe_parses_and_validates() {
    let mut n = 0;
    for e in std::fs::read_dir("recipes").unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_none_or(|x| x != "yaml") {
            continue;
        }
        let name = p.file_name().unwrap().to_str().unwrap().to_string();
        if name.starts_with("train_") {
            rlal::train::recipe::Recipe::load(&p).unwrap_or_else(|e| panic!("{name}: {e}"));
            continue;
        }
        let r = rlal::search::Recipe::load(&p).unwrap_or_else(|e| panic!("{name}: {e}"));
        r.check().unwrap_or_else(|e| panic!("{name}: {e}"));
        // The budget needs the model (not the data): feasible for every recipe whose model is shipped.
        let model = r.model.clone().unwrap();
        if !model.exists() {
            assert!(
                !model.starts_with("graphs"),
                "{name}: {} is missing from graphs/",
                model.display()
            );
            continue;
        }
        let (code, out, err) = rlal(&["prune", "--recipe", p.to_str().unwrap(), "--check"]);
        assert_eq!(code, 0, "{name}: {err}");
        assert!(out.contains("recipe ok"), "{out}");
        n += 1;
    }
    assert!(n >= 6, "quickstart, results and the paper recipes with shipped graphs");
}

/// The YAML examples of docs/RECIPES.md: a prune recipe, a train recipe, then
/// the budgets (two, then the same budget in the old and the new spelling).
#[test]
fn recipe_doc_examples_parse_and_validate() {
    let doc = std::fs::read_to_string("docs/RECIPES.md").unwrap();
    let blocks: Vec<&str> =
        doc.split("```yaml\n").skip(1).map(|b| b.split("```").next().unwrap()).collect();
    assert_eq!(blocks.len(), 6, "docs/RECIPES.md: a prune and a train example, 4 budgets");
    let r = rlal::search::Recipe::parse(blocks[0]).unwrap();
    r.check().unwrap();
    assert_eq!((r.training.epochs, r.search.weights_only_epochs, r.finetune.epochs), (15, 2, 5));
    let t = rlal::train::recipe::Recipe::parse(blocks[1]).unwrap();
    assert_eq!(t.training.epochs, 2);
    let budget = |b: &str| {
        let r = rlal::search::Recipe::parse(&format!("model: m\ndata: d\n{b}")).unwrap();
        r.check().unwrap();
        r.budget()
    };
    assert_eq!(budget(blocks[2]).metric, rlal::agent::Metric::Macs);
    assert_eq!(
        (budget(blocks[3]).metric, budget(blocks[3]).batch),
        (rlal::agent::Metric::Latency, 8)
    );
    assert_eq!(budget(blocks[4]), budget(blocks[5]));
    assert_eq!(budget(blocks[3]), budget(blocks[5]));
}

#[test]
fn impossible_budgets_are_rejected_with_the_figure() {
    let (code, _, err) = rlal(&[
        "prune",
        "graphs/mnist_cnn.onnx",
        "--recipe",
        "recipes/quickstart.yaml",
        "--macs-ratio",
        "0.01",
        "--check",
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("impossible budget") && err.contains("37240"), "{err}");
    let (code, _, err) =
        rlal(&["prune", "--recipe", "recipes/quickstart.yaml", "--macs-ratio", "1.0"]);
    assert_eq!(code, 2, "{err}");
    let want =
        "recipes/quickstart.yaml: field 'budget.ratio' (from a command-line flag): 1 is impossible";
    assert!(err.contains(want), "{err}");
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "model: graphs/mnist_cnn.onnx\ndata: data/mnist5k\nmacs-ratio: 0.5\nepisodes: 3\n",
    )
    .unwrap();
    let (code, _, err) = rlal(&["prune", "--recipe", bad.to_str().unwrap(), "--check"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("episodes") && err.contains("line 4"), "{err}");
    std::fs::write(&bad, "model: graphs/mnist_cnn.onnx\ndata: data/mnist5k\nmacs-ratio: 0.5\nagent:\n  overlap: sometimes\n").unwrap();
    let (code, _, err) = rlal(&["prune", "--recipe", bad.to_str().unwrap(), "--check"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("agent.overlap") && err.contains("sometimes") && err.contains("line 5"),
        "{err}"
    );
    // A flat recipe from before 2026-12: the first moved field, its new place, the file and line.
    std::fs::write(&bad, "model: graphs/mnist_cnn.onnx\ndata: data/mnist5k\nmacs-ratio: 0.5\nepochs: 3\nwarmup-epochs: 1\n").unwrap();
    let (code, _, err) = rlal(&["prune", "--recipe", bad.to_str().unwrap(), "--check"]);
    assert_eq!(code, 2, "{err}");
    let want = format!("{}: 'epochs' is now 'training.epochs' (recipes have sections since 2026-12; see docs/RECIPES.md) at line 4", bad.display());
    assert!(err.contains(&want), "{err}");
    std::fs::write(
        &bad,
        "model: graphs/mnist_cnn.onnx\ndata: data/mnist5k\nmacs-ratio: 0.5\nwarmup-epochs: 1\n",
    )
    .unwrap();
    let (code, _, err) = rlal(&["prune", "--recipe", bad.to_str().unwrap(), "--check"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("'warmup-epochs' is now 'search.weights-only-epochs'")
            && err.contains("line 4"),
        "{err}"
    );
}

/// The budget in either spelling and from the flags (`--show-recipe` prints the
/// merged recipe in the new one); errors name the fields with their lines, or the
/// flag or default a value came from.
#[test]
fn budget_spellings_flags_and_where_errors_come_from() {
    let dir = tempfile::tempdir().unwrap();
    let old = dir.path().join("old.yaml");
    std::fs::write(&old, TINY).unwrap();
    let show = |extra: &[&str]| {
        let args = [&["prune", "--recipe", old.to_str().unwrap(), "--show-recipe"], extra].concat();
        let (code, out, err) = rlal(&args);
        assert_eq!(code, 0, "{err}");
        out
    };
    let out = show(&[]);
    assert!(
        out.contains("budget:\n  metric: macs\n  ratio: 0.5\n") && !out.contains("macs-ratio"),
        "{out}"
    );
    let out = show(&["--latency-ratio", "0.7", "--latency-batch", "4"]);
    assert!(out.contains("budget:\n  metric: latency\n  ratio: 0.7\n  batch: 4\n"), "{out}");
    // The new spelling loads as the old one.
    let new = dir.path().join("new.yaml");
    std::fs::write(&new, TINY.replace("macs-ratio: 0.5", "budget: {metric: macs, ratio: 0.5}"))
        .unwrap();
    let (code, out_new, err) = rlal(&["prune", "--recipe", new.to_str().unwrap(), "--show-recipe"]);
    assert_eq!((code, out_new), (0, show(&[])), "{err}");
    let check = |text: String, extra: &[&str]| {
        std::fs::write(&new, text).unwrap();
        let args = [&["prune", "--recipe", new.to_str().unwrap(), "--check"], extra].concat();
        let (code, _, err) = rlal(&args);
        assert_eq!(code, 2, "{err}");
        err
    };
    let err = check(TINY.replace("data:", "budget: {metric: params, ratio: 0.5}\ndata:"), &[]);
    let want = format!(
        "{}: field 'budget' at line 2 column 1: is given twice: 'macs-ratio' (line 4)",
        new.display()
    );
    assert!(err.contains(&want), "{err}");
    // After the flags: the file's line of the field a flag made wrong, or the flag.
    let err = check(TINY.to_string(), &["--epochs", "2"]);
    let want = format!("{}: field 'search.agent-epochs' at line 7 column 3: 3 is after the last epoch (training.epochs: 2)", new.display());
    assert!(err.contains(&want), "{err}");
    let err = check(TINY.to_string(), &["--episodes-per-epoch", "0"]);
    assert!(
        err.contains(
            "field 'search.episodes-per-epoch' (from a command-line flag): must be at least 1"
        ),
        "{err}"
    );
}

/// A small prune recipe; `training:` comes last, so that indented lines appended to it are training fields.
const TINY: &str = "model: graphs/mnist_cnn.onnx\ndata: data/mnist5k\nmacs-ratio: 0.5\nsearch:\n  weights-only-epochs: 1\n  buffer-epochs: 1\n  agent-epochs: 3\n  episodes-per-epoch: 3\n  reward-samples: 200\nfinetune:\n  epochs: 1\nagent:\n  updates-per-epoch: 5\n  batch-size: 16\ntraining:\n  epochs: 3\n  batch-size: 64\n  lr: 0.05\n  mean: [0.1307]\n  std: [0.3081]\n  threads: 2\n  eval-every: 0\n";

fn tiny_run(policy: &str) -> (tempfile::TempDir, serde_json::Value) {
    let dir = tempfile::tempdir().unwrap();
    let recipe = dir.path().join("tiny.yaml");
    std::fs::write(&recipe, TINY).unwrap();
    let run = dir.path().join("run");
    let t0 = std::time::Instant::now();
    let (code, out, err) = rlal(&[
        "prune",
        "--recipe",
        recipe.to_str().unwrap(),
        "--run-dir",
        run.to_str().unwrap(),
        "--policy",
        policy,
        "-q",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("pruned model:"), "{out}");
    eprintln!("tiny {policy} run: {:.1}s", t0.elapsed().as_secs_f64());
    for f in [
        "recipe.yaml",
        "metrics.jsonl",
        "best_policy.yaml",
        "pruned.onnx",
        "report.json",
        "report.md",
    ] {
        assert!(run.join(f).is_file(), "missing {f}");
    }
    let metrics = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    assert_eq!(metrics.lines().count(), 3);
    let report = report(&run);
    let (before, after) =
        (report["unpruned"]["macs"].as_u64().unwrap(), report["pruned"]["macs"].as_u64().unwrap());
    let target = (before as f64 * 0.5).floor() as u64;
    assert!(after <= target, "achieved {after} MACs > target {target}");
    assert!(report["macs_ratio"].as_f64().unwrap() <= 0.5);
    // The reported accuracy is that of the written file, in ONNX Runtime, with the
    // preprocessing the file records (no flags).
    let pruned = run.join("pruned.onnx");
    let (code, out, err) = rlal(&[
        "eval",
        pruned.to_str().unwrap(),
        "--data",
        "data/mnist5k",
        "--engine",
        "ort",
        "--json",
        "--threads",
        "2",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains(
            "preprocessing from the model's metadata: scale 1/255, mean 0.1307, std 0.3081"
        ),
        "{err}"
    );
    let ev: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["engine"], "ort");
    assert_eq!(ev["samples"], report["test_samples"]);
    assert!(
        (ev["accuracy"].as_f64().unwrap() - report["accuracy"].as_f64().unwrap()).abs() < 1e-9,
        "eval {} vs report {}",
        ev["accuracy"],
        report["accuracy"]
    );
    assert_eq!(ev["macs"].as_u64().unwrap(), after);
    assert!(report["accuracy"].as_f64().unwrap() > 0.5, "{}", report["accuracy"]);
    (dir, report)
}

#[test]
fn tiny_rlal_prune_end_to_end() {
    let (dir, report) = tiny_run("rlal");
    assert_eq!(report["policy"], "rlal");
    let rows: Vec<serde_json::Value> =
        std::fs::read_to_string(dir.path().join("run/metrics.jsonl"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
    assert_eq!(rows[0]["phase"], "warmup");
    assert_eq!(rows[1]["phase"], "buffer");
    assert_eq!(rows[2]["phase"], "agent");
    assert!(rows[2]["critic_loss"].is_number());
    for r in &rows[1..] {
        assert_eq!(r["rewards"].as_array().unwrap().len(), 3);
        for m in r["macs"].as_array().unwrap() {
            assert!(
                m.as_u64().unwrap()
                    <= (report["unpruned"]["macs"].as_u64().unwrap() as f64 * 0.5) as u64
            );
        }
    }
    // Alignment is on once a best policy exists.
    assert!(rows[2]["align_loss"].is_number());
    let policy: serde_yaml::Value = serde_yaml::from_str(
        &std::fs::read_to_string(dir.path().join("run/best_policy.yaml")).unwrap(),
    )
    .unwrap();
    assert_eq!(policy["layers"].as_sequence().unwrap().len(), 3);
    // `rlal export --run` writes the run's final model elsewhere and re-validates it on the run's data.
    let out = dir.path().join("exported.onnx");
    let (code, stdout, err) = rlal(&[
        "export",
        out.to_str().unwrap(),
        "--run",
        dir.path().join("run").to_str().unwrap(),
        "--json",
        "--threads",
        "2",
        "--runs",
        "3",
    ]);
    assert_eq!(code, 0, "{err}");
    let ex: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(
        std::fs::read(&out).unwrap(),
        std::fs::read(dir.path().join("run/pruned.onnx")).unwrap()
    );
    assert_eq!(ex["macs_after"], report["pruned"]["macs"]);
    assert_eq!(ex["validation"]["accuracy_after"], report["accuracy"]);
    assert_eq!(ex["validation"]["accuracy_before"], report["unpruned"]["accuracy"]);
    assert!(ex["validation"]["max_diff_ort_tract"].as_f64().unwrap() < 1e-3);
    let (code, _, err) =
        rlal(&["export", out.to_str().unwrap(), "--run", dir.path().to_str().unwrap()]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("no pruned.onnx"), "{err}");
}

#[test]
fn uniform_baseline_end_to_end() {
    let (_dir, report) = tiny_run("uniform");
    assert_eq!(report["policy"], "uniform");
    let ratios: Vec<f64> =
        report["layers"].as_array().unwrap().iter().map(|l| l["ratio"].as_f64().unwrap()).collect();
    assert!(ratios.iter().all(|r| (r - ratios[0]).abs() < 0.1), "{ratios:?}");
}

#[test]
fn unknown_paths_are_input_errors() {
    let (code, _, err) = rlal(&[
        "prune",
        "--recipe",
        "recipes/quickstart.yaml",
        "--data",
        "no/such/dir",
        "--epochs",
        "2",
        "--warmup-epochs",
        "1",
        "--buffer-epochs",
        "0",
        "--agent-epochs",
        "2",
        "--run-dir",
        Path::new(&std::env::temp_dir()).join("rlal-no-data").to_str().unwrap(),
    ]);
    assert_eq!(code, 2, "{err}");
}

/// metrics.jsonl rows without the wall-clock fields.
fn rows_without_times(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
            for k in ["train_seconds", "search_seconds", "update_seconds", "update_overlapped"] {
                v.as_object_mut().unwrap().remove(k);
            }
            if let Some(st) = v.get_mut("reward_stages").and_then(|s| s.as_object_mut()) {
                for k in ["freeze", "surgery", "build", "recal", "infer"] {
                    assert!(
                        st.remove(k).is_some_and(|t| t.as_f64().is_some_and(|t| t >= 0.0)),
                        "reward_stages.{k}"
                    );
                }
            }
            v
        })
        .collect()
}

/// Starts `rlal prune --recipe RECIPE --run-dir RUN -q` and kills it once its
/// checkpoint covers epoch `epoch`; returns the checkpoint's `search.json`.
fn kill_once_checkpointed(recipe: &Path, run: &Path, epoch: u64) -> serde_json::Value {
    let mut child = Command::new(env!("CARGO_BIN_EXE_rlal"))
        .args(["prune", "--recipe", recipe.to_str().unwrap(), "--run-dir", run.to_str().unwrap()])
        .arg("-q")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let state = run.join("checkpoints/search.json");
    let read = || {
        let s = std::fs::read(&state).ok()?;
        serde_json::from_slice::<serde_json::Value>(&s).ok()
    };
    let t0 = std::time::Instant::now();
    while read().and_then(|v| v["epoch"].as_u64()).unwrap_or(0) < epoch {
        assert!(child.try_wait().unwrap().is_none(), "the run ended before it could be killed");
        assert!(t0.elapsed().as_secs() < 600, "no checkpoint after 10 minutes");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    read().unwrap()
}

#[test]
fn killed_run_resumes_to_the_same_result() {
    let dir = tempfile::tempdir().unwrap();
    let recipe = dir.path().join("tiny.yaml");
    let tiny =
        TINY.replace("epochs: 3\n", "epochs: 4\n").replace("agent-epochs: 3", "agent-epochs: 4");
    std::fs::write(&recipe, tiny.replace("agent:\n", "agent:\n  overlap: never\n")).unwrap();
    // Run b runs the agent updates of epoch 3 beside the training of epoch 4 (`agent.overlap`),
    // which must not change any result either.
    let overlapped = dir.path().join("overlapped.yaml");
    std::fs::write(&overlapped, tiny.replace("agent:\n", "agent:\n  overlap: always\n")).unwrap();
    let a = dir.path().join("a");
    let (code, _, err) = prune_in(&recipe, &a);
    assert_eq!(code, 0, "{err}");
    // The same run, killed once epoch 2 (then: 3, whose checkpoint waits for its
    // overlapped updates) is checkpointed, then resumed.
    for kill_at in [2u64, 3] {
        let b = dir.path().join(format!("b{kill_at}"));
        kill_once_checkpointed(&overlapped, &b, kill_at);
        assert!(!b.join("report.json").exists());
        let (code, _, err) = rlal(&["prune", "--resume", b.to_str().unwrap()]);
        assert_eq!(code, 0, "{err}");
        assert!(err.contains("resuming"), "{err}");
        let rows_b: Vec<serde_json::Value> = std::fs::read_to_string(b.join("metrics.jsonl"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let overlapped_epochs: Vec<u64> = rows_b
            .iter()
            .filter(|r| r["update_overlapped"] == true)
            .map(|r| r["epoch"].as_u64().unwrap())
            .collect();
        assert_eq!(
            overlapped_epochs,
            [3],
            "the updates of epoch 3 (not those of the last epoch) run beside the next training"
        );
        assert_eq!(
            rows_without_times(&a.join("metrics.jsonl")),
            rows_without_times(&b.join("metrics.jsonl")),
            "killed at epoch {kill_at}"
        );
        assert_eq!(
            std::fs::read_to_string(a.join("best_policy.yaml")).unwrap(),
            std::fs::read_to_string(b.join("best_policy.yaml")).unwrap(),
            "killed at epoch {kill_at}"
        );
        assert!(
            std::fs::read(a.join("pruned.onnx")).unwrap()
                == std::fs::read(b.join("pruned.onnx")).unwrap(),
            "pruned.onnx differs after resume (killed at epoch {kill_at})"
        );
        for f in ["rewards.svg", "accuracy.svg", "layers.svg"] {
            assert!(std::fs::read_to_string(b.join(f)).unwrap().starts_with("<svg"), "{f}");
        }
    }
    let b = dir.path().join("b2");
    // Resuming a finished run is a no-op that reports it.
    let (code, _, err) = rlal(&["prune", "--resume", b.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("complete"), "{err}");
    let (code, _, err) = rlal(&["prune", "--resume", dir.path().to_str().unwrap()]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("not a run directory"), "{err}");
}

#[test]
fn params_budget_is_met() {
    let (code, out, err) =
        rlal(&["prune", "--recipe", "recipes/quickstart.yaml", "--params-ratio", "0.6", "--check"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("params"), "{out}");
    let dir = tempfile::tempdir().unwrap();
    let recipe = dir.path().join("tiny.yaml");
    std::fs::write(
        &recipe,
        TINY.replace("macs-ratio: 0.5\n", "params-ratio: 0.6\n")
            .replace("graphs/mnist_cnn.onnx", "graphs/resnet20_digits.onnx")
            .replace("data/mnist5k", "data/digits"),
    )
    .unwrap();
    let run = dir.path().join("run");
    let (code, _, err) = rlal(&[
        "prune",
        "--recipe",
        recipe.to_str().unwrap(),
        "--run-dir",
        run.to_str().unwrap(),
        "-q",
        "--policy",
        "uniform",
    ]);
    assert_eq!(code, 0, "{err}");
    let report = report(&run);
    assert_eq!(report["budget"], "params");
    let (before, after) = (
        report["unpruned"]["params"].as_u64().unwrap(),
        report["pruned"]["params"].as_u64().unwrap(),
    );
    assert!(after <= (before as f64 * 0.6) as u64, "{after} params > 0.6 x {before}");
    assert!(after as f64 >= before as f64 * 0.5, "{after} params: far below the 0.6 target");
}

/// A latency budget: the table is measured, saved in the run directory, and the
/// chosen widths meet the budget by the table's estimate. The measured latency
/// is reported next to the estimate but not asserted (timing is not a test).
#[test]
fn latency_budget_is_met_by_the_table() {
    let dir = tempfile::tempdir().unwrap();
    let recipe = dir.path().join("tiny.yaml");
    std::fs::write(
        &recipe,
        TINY.replace("macs-ratio: 0.5\n", "latency-ratio: 0.85\nlatency-batch: 16\n"),
    )
    .unwrap();
    let run = dir.path().join("run");
    let (code, _, err) = rlal(&[
        "prune",
        "--recipe",
        recipe.to_str().unwrap(),
        "--run-dir",
        run.to_str().unwrap(),
        "-q",
        "--policy",
        "uniform",
    ]);
    assert_eq!(code, 0, "{err}");
    let report = report(&run);
    assert_eq!(report["budget"], "latency");
    let l = &report["latency_budget"];
    assert_eq!(l["batch"], 16);
    let (target, est_full, est) = (
        l["target_ms"].as_f64().unwrap(),
        l["estimated_unpruned_ms"].as_f64().unwrap(),
        l["estimated_pruned_ms"].as_f64().unwrap(),
    );
    assert!(
        est <= target + 1e-6 && (target - 0.85 * est_full).abs() <= 1e-5 * est_full.max(1.0),
        "{l}"
    );
    assert!(
        l["measured_pruned_ms"].as_f64().unwrap() > 0.0
            && l["measured_unpruned_ms"].as_f64().unwrap() > 0.0,
        "{l}"
    );
    assert!(report["macs_ratio"].as_f64().unwrap() < 1.0, "{report}");
    let table: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("latency_table.json")).unwrap())
            .unwrap();
    assert_eq!(table["batch"], 16);
    let policy = std::fs::read_to_string(run.join("best_policy.yaml")).unwrap();
    assert!(policy.contains("budget: latency"), "{policy}");
    // Both ratios at once are refused, naming the fields.
    let (code, _, err) = rlal(&[
        "prune",
        "--recipe",
        recipe.to_str().unwrap(),
        "--macs-ratio",
        "0.5",
        "--latency-ratio",
        "0.5",
        "--check",
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("latency-ratio") || err.contains("latency_ratio"), "{err}");
}

/// `--resume` of a latency-budget run reads the run directory's table instead of
/// measuring again (a re-measured table would move the budget).
#[test]
fn resumed_latency_budgets_reuse_the_saved_table() {
    let r = rlal::search::Recipe::parse(&TINY.replace("macs-ratio: 0.5\n", "latency-ratio: 0.7\n"))
        .unwrap();
    r.check().unwrap();
    // A measured table only for its layout (measured times on a busy machine may make 0.7 infeasible).
    let (mut g, mut an) =
        rlal::analysis::import(Path::new("graphs/mnist_cnn.onnx"), &Default::default()).unwrap();
    rlal::train::setup::apply_insert_bn(&mut g, &mut an, r.training.insert_bn, None).unwrap();
    let mut t = rlal::search::latency::measure(
        &g,
        &an,
        None,
        r.budget().batch,
        r.training.threads,
        Default::default(),
        false,
    )
    .unwrap();
    // A recognisable table: every op 1 ms at full width, linear in its MACs; the rest ~0.
    for c in &mut t.terms {
        *c = rlal::agent::Curve::fit(vec![(0.0, 0.0), (1.0, 1e6)]);
    }
    t.rest = rlal::agent::Curve::fit(vec![(0.0, 0.0), (1.0, 1.0)]);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(rlal::search::job::LATENCY_TABLE);
    rlal::search::latency::save(&t, &path).unwrap();
    let (_, _, b2) = rlal::search::job::prepare(&r, Some(&path), false).unwrap();
    assert_eq!(b2.latency.as_ref(), Some(&t));
    assert_eq!(b2.full(), t.eval(&an.cost, &an.cost.full));
    // A table of another model is refused.
    let mut other = t.clone();
    other.terms.pop();
    rlal::search::latency::save(&other, &path).unwrap();
    let e = match rlal::search::job::prepare(&r, Some(&path), false) {
        Err(e) => e.to_string(),
        Ok(_) => panic!("a table of another model was accepted"),
    };
    assert!(e.contains("another model"), "{e}");
}

/// A folder of JPEGs of mixed sizes and aspect ratios (RGB), like a user's ImageNet-style data.
fn mixed_size_folder(root: &std::path::Path) {
    let mut seed = 7u32;
    let mut next = || {
        seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        seed >> 16
    };
    for (split, n) in [("train", 24), ("val", 6)] {
        for class in ["cat", "dog"] {
            let d = root.join(split).join(class);
            std::fs::create_dir_all(&d).unwrap();
            for i in 0..n {
                let (w, h) = (30 + next() % 70, 25 + next() % 60);
                let img = image::RgbImage::from_fn(w, h, |x, y| {
                    let v = if class == "cat" { (x * 255 / w) as u8 } else { (y * 255 / h) as u8 };
                    image::Rgb([v, v / 2, 255 - v])
                });
                img.save(d.join(format!("{i}.jpg"))).unwrap();
            }
        }
    }
}

#[test]
fn image_folders_of_mixed_sizes_are_brought_to_the_model_input() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("pets");
    mixed_size_folder(&data);
    // mnist_cnn takes 1x28x28: every JPEG is scaled, center-cropped and turned to luma;
    // training images come from random-resized crops (ImageNet's training transform).
    let tiny = TINY
        .replace("data: data/mnist5k", &format!("data: {}", data.display()))
        .replace("reward-samples: 200", "reward-samples: 8")
        + "  random-resized-crop: [0.08, 1.0]\n  hflip: true\n";
    let recipe = dir.path().join("folder.yaml");
    std::fs::write(&recipe, tiny).unwrap();
    let run = dir.path().join("run");
    let (code, out, err) = prune_in(&recipe, &run);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("pruned model:"), "{out}");
    let rep = report(&run);
    assert_eq!(rep["test_samples"], 12);
    // A crop fraction outside (0, 1] is a recipe error naming the field.
    for (field, bad) in [
        ("training.crop-fraction", "  crop-fraction: 1.5"),
        ("training.random-resized-crop", "  random-resized-crop: [0.5, 0.1]"),
    ] {
        std::fs::write(&recipe, format!("{TINY}{bad}\n")).unwrap();
        let (code, _, err) = prune_in(&recipe, &run);
        assert_eq!(code, 2, "{err}");
        assert!(err.contains(field), "{err}");
    }
}

#[test]
fn an_imagenet_style_folder_prunes_a_224_graph_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("pets");
    mixed_size_folder(&data);
    // graphs/tiny224.onnx: 3x224x224 input, two classes; JPEGs of 30-100 x 25-85 pixels are
    // brought to 224 (training: random-resized crops; reward and test: 256/224 centre crop).
    let recipe = TINY
        .replace("model: graphs/mnist_cnn.onnx", "model: graphs/tiny224.onnx")
        .replace("data: data/mnist5k", &format!("data: {}", data.display()))
        .replace("reward-samples: 200", "reward-samples: 8")
        .replace("batch-size: 64", "batch-size: 8")
        .replace(
            "mean: [0.1307]\n  std: [0.3081]\n",
            "mean: [0.485, 0.456, 0.406]\n  std: [0.229, 0.224, 0.225]\n",
        )
        + "  random-resized-crop: [0.08, 1.0]\n  hflip: true\n  crop-fraction: 0.875\n";
    let r = dir.path().join("r224.yaml");
    std::fs::write(&r, recipe).unwrap();
    let run = dir.path().join("run");
    let (code, out, err) = prune_in(&r, &run);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("pruned model:"), "{out}");
    let rep = report(&run);
    assert_eq!(rep["test_samples"], 12);
    assert!(rep["macs_ratio"].as_f64().unwrap() <= 0.5 + 1e-9, "{rep}");
    let g = rlal::onnx::load(&run.join("pruned.onnx")).unwrap();
    let input = g.value(g.inputs[0]).shape.clone().unwrap();
    assert_eq!(input[1..].iter().map(|d| d.to_string()).collect::<Vec<_>>(), ["3", "224", "224"]);
}

/// `start: pretrained`: the given (trained) model is measured first and is the report's
/// first row, with the accuracy `rlal eval` gives it; its weights are the start (at a
/// negligible learning rate the unpruned network keeps that accuracy); the
/// preprocessing comes from the model's metadata.
#[test]
fn pretrained_start_measures_and_keeps_the_given_model() {
    let dir = tempfile::tempdir().unwrap();
    let trained = dir.path().join("trained.onnx");
    let (code, _, err) = rlal(&[
        "train",
        "--recipe",
        "recipes/train_mnist_cnn.yaml",
        "--epochs",
        "1",
        "-o",
        trained.to_str().unwrap(),
        "-q",
    ]);
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = rlal(&[
        "eval",
        trained.to_str().unwrap(),
        "--data",
        "data/mnist5k",
        "--engine",
        "ort",
        "--json",
        "--threads",
        "2",
    ]);
    assert_eq!(code, 0, "{err}");
    let ev: serde_json::Value = serde_json::from_str(&out).unwrap();
    let recipe = dir.path().join("pre.yaml");
    let text = TINY
        .replace("graphs/mnist_cnn.onnx", trained.to_str().unwrap())
        .replace("  weights-only-epochs: 1\n", "")
        .replace("  lr: 0.05\n  mean: [0.1307]\n  std: [0.3081]\n", "  lr: 0.000001\n")
        .replace("macs-ratio: 0.5\n", "macs-ratio: 0.5\nstart: pretrained\n");
    std::fs::write(&recipe, text).unwrap();
    let run = dir.path().join("run");
    let (code, out, err) =
        rlal(&["prune", "--recipe", recipe.to_str().unwrap(), "--run-dir", run.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("input preprocessing from the model's metadata"), "{err}");
    assert!(err.contains("original model"), "{err}");
    assert!(out.contains("| original model (as given) |"), "{out}");
    let rep = report(&run);
    let (orig, given) =
        (rep["original"]["accuracy"].as_f64().unwrap(), ev["accuracy"].as_f64().unwrap());
    assert!((orig - given).abs() <= 1e-3, "start accuracy {orig} vs rlal eval {given}");
    assert!(orig > 0.8, "one epoch of training gives more than {orig}");
    let unpruned = rep["unpruned"]["accuracy"].as_f64().unwrap();
    assert!((unpruned - orig).abs() < 0.02, "weights re-initialised? {orig} -> {unpruned}");
    assert_eq!(rep["original"]["macs"], rep["unpruned"]["macs"]);
    // No weights-only warm-up by default with a pretrained start.
    let first: serde_json::Value = serde_json::from_str(
        std::fs::read_to_string(run.join("metrics.jsonl")).unwrap().lines().next().unwrap(),
    )
    .unwrap();
    assert_ne!(first["phase"], "warmup");
}

/// `rlal prune` with `policy` (and `extra` recipe lines) end to end on the tiny recipe
/// with the quickstart graph,
/// then the same run killed once its second epoch (the first search epoch) is
/// checkpointed and resumed: the metrics, the best policy and pruned.onnx are those
/// of the uninterrupted run. Returns the checkpoint (`search.json`) the resumed run
/// started from. With `bad_state`, a resume from that checkpoint with `bad_state` as the
/// policy's state is refused first (exit code 2), naming the tensor file and the policy.
fn policy_runs_and_resumes_exactly(
    policy: &str,
    extra: &str,
    bad_state: Option<serde_json::Value>,
) -> serde_json::Value {
    let dir = tempfile::tempdir().unwrap();
    let recipe = dir.path().join("tiny.yaml");
    // The quickstart graph (ResNet-20, 9 prunable layers) on 128 training images.
    let tiny = TINY
        .replace("graphs/mnist_cnn.onnx", "graphs/resnet20_mnist.onnx")
        .replace("reward-samples: 200", "reward-samples: 100");
    std::fs::write(&recipe, format!("policy: {policy}\n{extra}{tiny}  train-samples: 128\n"))
        .unwrap();
    let a = dir.path().join("a");
    let (code, _, err) = prune_in(&recipe, &a);
    assert_eq!(code, 0, "{err}");
    let rep = report(&a);
    assert_eq!(rep["policy"], policy);
    let target = (rep["unpruned"]["macs"].as_u64().unwrap() as f64 * 0.5) as u64;
    assert!(rep["pruned"]["macs"].as_u64().unwrap() <= target);
    let rows = rows_without_times(&a.join("metrics.jsonl"));
    for r in &rows[1..] {
        assert_eq!(r["rewards"].as_array().unwrap().len(), 3, "{r}");
        assert!(r["macs"].as_array().unwrap().iter().all(|m| m.as_u64().unwrap() <= target));
    }
    let b = dir.path().join("b");
    let resumed_from = kill_once_checkpointed(&recipe, &b, 2);
    if let Some(bad) = bad_state {
        refuses_a_bad_policy_state(&b, policy, bad);
    }
    let (code, _, err) = rlal(&["prune", "--resume", b.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("resuming") && err.contains("after epoch 2 of 3"), "{err}");
    assert_eq!(rows, rows_without_times(&b.join("metrics.jsonl")));
    for f in ["best_policy.yaml", "pruned.onnx"] {
        assert!(std::fs::read(a.join(f)).unwrap() == std::fs::read(b.join(f)).unwrap(), "{f}");
    }
    resumed_from
}

/// `rlal prune --resume RUN` with `bad` as the policy's state in RUN's newest
/// checkpoint is bad input naming the checkpoint's tensor file and the policy; the
/// checkpoint is put back as it was.
fn refuses_a_bad_policy_state(run: &Path, policy: &str, bad: serde_json::Value) {
    let file = run.join("checkpoints/search.json");
    let good = std::fs::read(&file).unwrap();
    let mut st: serde_json::Value = serde_json::from_slice(&good).unwrap();
    st["policy"] = bad;
    std::fs::write(&file, st.to_string()).unwrap();
    let (code, _, err) = rlal(&["prune", "--resume", run.to_str().unwrap()]);
    let tensors = st["tensors"].as_str().unwrap();
    assert_eq!(code, 2, "{err}");
    let want = format!("{tensors}: the {policy} policy's state in the checkpoint: ");
    let error = err.lines().find(|l| l.starts_with("error: "));
    assert!(error.is_some_and(|l| l.contains(&want)), "{err}");
    std::fs::write(&file, good).unwrap();
}

#[test]
fn evolution_prunes_end_to_end_and_resumes_exactly() {
    // A population of 4: the first search epoch draws 3 random members, the second (after
    // the kill, from the checkpointed population) 1 more and 2 children.
    let st = policy_runs_and_resumes_exactly(
        "evolution",
        "evolution:\n  population: 4\n  tournament: 2\n",
        Some(serde_json::json!({ "population": 3 })),
    );
    // The population of the first search epoch's 3 members is in the checkpoint.
    assert_eq!(st["policy"]["population"].as_array().unwrap().len(), 3, "{st}");
}

#[test]
fn local_prunes_end_to_end_and_resumes_exactly() {
    // The incumbent, the centre of the resumed epoch's neighbours, is in the checkpoint.
    let st = policy_runs_and_resumes_exactly("local", "", None);
    assert!(!st["incumbents"]["items"].as_array().unwrap().is_empty(), "{st}");
}
