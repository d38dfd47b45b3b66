//! `rlal bench train` on the real binary: a tiny run prints sane JSON, a missing
//! model is an input error (exit code 2) naming the file. Never asserts on time.
use std::process::Command;

fn rlal(args: &[&str]) -> (i32, String, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_rlal")).args(args).output().unwrap();
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn bench_train_prints_json() {
    let (code, out, err) = rlal(&[
        "bench",
        "train",
        "--model",
        "graphs/mnist_cnn.onnx",
        "--batch",
        "8",
        "--steps",
        "2",
        "--warmup",
        "1",
        "--json",
        "--threads",
        "2",
        "--device",
        "cpu",
    ]);
    assert_eq!(code, 0, "{err}");
    let j: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(j["batch"], 8);
    assert_eq!(j["steps"], 2);
    assert_eq!(j["threads"], 2);
    assert_eq!(j["device"], "cpu");
    assert_eq!(j["model"], "graphs/mnist_cnn.onnx");
    assert!(j["images_per_s"].as_f64().unwrap() > 0.0, "{out}");
    assert!(j["median_ms"].as_f64().unwrap() > 0.0, "{out}");
    // The BN-folded graph gets one identity BN per conv, as in `rlal train`.
    assert_eq!(j["bn_inserted"], 3);
    assert!(j["final_loss"].as_f64().unwrap().is_finite(), "{out}");
}

#[test]
fn bench_train_missing_model_is_an_input_error() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no_such_model.onnx");
    let (code, _, err) =
        rlal(&["bench", "train", "--model", missing.to_str().unwrap(), "--steps", "1"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("no_such_model.onnx"), "{err}");
}

#[test]
fn bench_search_reports_the_episode_stages_and_shares() {
    let dir = tempfile::tempdir().unwrap();
    let recipe = dir.path().join("r.yaml");
    std::fs::write(
        &recipe,
        "model: graphs/mnist_cnn.onnx\ndata: data/mnist5k\nmacs-ratio: 0.5\nsearch:\n  episodes-per-epoch: 3\n  reward-samples: 100\n  reward-bn-samples: 16\nagent:\n  updates-per-epoch: 2\n  batch-size: 8\ntraining:\n  batch-size: 32\n  mean: [0.1307]\n  std: [0.3081]\n  threads: 2\n",
    )
    .unwrap();
    let r = recipe.to_str().unwrap();
    let (code, out, err) =
        rlal(&["bench", "search", "--recipe", r, "--train-batches", "2", "--json"]);
    assert_eq!(code, 0, "{err}");
    let j: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(j["episodes"], 3);
    assert_eq!(j["reward_images"], 100);
    // `auto` on the CPU: the narrow networks in ONNX Runtime.
    assert_eq!(j["engine"], "ort");
    assert_eq!(j["episodes_per_epoch"], 3);
    let m = j["scored_macs_ratio"].as_f64().unwrap();
    assert!(m > 0.2 && m <= 0.5, "scored networks at {m} of the MACs for a 0.5 budget: {out}");
    let e = &j["episode_ms"];
    let parts: f64 =
        ["surgery", "build", "recal", "infer"].iter().map(|k| e[*k].as_f64().unwrap()).sum();
    assert!(e["infer"].as_f64().unwrap() > 0.0 && e["recal"].as_f64().unwrap() > 0.0, "{out}");
    assert!((parts - e["total"].as_f64().unwrap()).abs() < 1e-6 * parts.max(1.0), "{out}");
    for k in [
        "train_images_per_s",
        "reward_images_per_s",
        "train_gmacs_per_s",
        "reward_gmacs_per_s",
        "search_share",
        "search_share_paper",
        "updates_s",
    ] {
        assert!(j[k].as_f64().unwrap() > 0.0, "{k}: {out}");
    }
    assert!(
        j["episodes_share_paper"].as_f64().unwrap() < j["search_share_paper"].as_f64().unwrap()
    );
    // The training rate is that of both windows together (before and after the episodes).
    let w: Vec<f64> = j["train_images_per_s_windows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    let rate = j["train_images_per_s"].as_f64().unwrap();
    assert!(
        w.len() == 2 && rate >= w[0].min(w[1]) * 0.999 && rate <= w[0].max(w[1]) * 1.001,
        "{out}"
    );
    // `auto` overlaps the agent updates with training on CUDA only.
    assert_eq!(j["overlap"], false);
    assert!(j.get("search_share_paper_overlapped").is_none(), "{out}");
    // The masked engine scores at full width without surgery.
    let (code, out, err) = rlal(&[
        "bench",
        "search",
        "--recipe",
        r,
        "--train-batches",
        "1",
        "--episodes",
        "1",
        "--engine",
        "masked",
        "--json",
    ]);
    assert_eq!(code, 0, "{err}");
    let j: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (j["engine"].as_str(), j["episodes"].as_u64(), j["episode_ms"]["build"].as_f64()),
        (Some("masked"), Some(1), Some(0.0))
    );
    // One timed episode; the projections still count the recipe's P.
    assert_eq!(j["episodes_per_epoch"], 3);
    // libtorch's narrow networks on request.
    let (code, out, err) = rlal(&[
        "bench",
        "search",
        "--recipe",
        r,
        "--train-batches",
        "1",
        "--episodes",
        "1",
        "--engine",
        "pruned",
        "--json",
    ]);
    assert_eq!(code, 0, "{err}");
    let j: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(j["engine"], "pruned");
    // With the updates beside the training: that training's throughput and the overlapped share.
    let (code, out, err) = rlal(&[
        "bench",
        "search",
        "--recipe",
        r,
        "--train-batches",
        "2",
        "--episodes",
        "1",
        "--overlap",
        "always",
        "--json",
    ]);
    assert_eq!(code, 0, "{err}");
    let j: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(j["overlap"], true);
    assert!(
        j["beside"]["train_images_per_s"].as_f64().unwrap() > 0.0
            && j["beside"]["updates_s"].as_f64().unwrap() > 0.0,
        "{out}"
    );
    assert!(j["beside"]["extra_s"].as_f64().unwrap() >= 0.0, "{out}");
    assert!(
        j["search_share_paper_overlapped"].as_f64().unwrap()
            >= j["episodes_share_paper"].as_f64().unwrap(),
        "{out}"
    );
    for (flag, field) in [("--ort-pad", "reward-ort-pad"), ("--ort-batch", "reward-ort-batch")] {
        let (code, _, err) = rlal(&["bench", "search", "--recipe", r, flag, "0"]);
        assert_eq!(code, 2, "{flag} 0: {err}");
        assert!(err.contains(field), "{err}");
    }
    // A bad override is an input error naming it.
    let (code, _, err) = rlal(&["bench", "search", "--recipe", r, "--paper-subset", "1.5"]);
    assert_eq!(code, 2);
    assert!(err.contains("--paper-subset"), "{err}");
}

/// A short schedule for `rlal bench agent` on ResNet-20 (9 layers).
const AGENT_RECIPE: &str = "model: graphs/resnet20_mnist.onnx\nmacs-ratio: 0.5\ntraining:\n  epochs: 8\nsearch:\n  weights-only-epochs: 1\n  buffer-epochs: 2\n  agent-epochs: 6\n  episodes-per-epoch: 4\n  reward-samples: 500\nagent:\n  updates-per-epoch: 5\n  batch-size: 16\n";

#[test]
fn bench_agent_reports_regret_against_the_optimum() {
    let dir = tempfile::tempdir().unwrap();
    let recipe = dir.path().join("r.yaml");
    std::fs::write(&recipe, AGENT_RECIPE).unwrap();
    let out_dir = dir.path().join("out");
    let (code, out, err) = rlal(&[
        "bench",
        "agent",
        "--recipe",
        recipe.to_str().unwrap(),
        "--seeds",
        "2",
        "--methods",
        "rlal,random,uniform",
        "--out",
        out_dir.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(code, 0, "{err}");
    let s: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(s.as_array().unwrap().len(), 3);
    for m in s.as_array().unwrap() {
        let r = m["final_regret"].as_array().unwrap();
        assert_eq!(r.len(), 2);
        // Regret against the exact optimum of the same action space is never negative.
        assert!(r.iter().all(|x| x.as_f64().unwrap() >= -1e-9), "{m}");
    }
    let full: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out_dir.join("agent_bench.json")).unwrap()).unwrap();
    assert_eq!(full["layers"], 9);
    assert!(full["optimum"].as_array().unwrap().iter().all(|o| o["exact"] == true));
    assert_eq!(full["traces"].as_array().unwrap().len(), 6);
    assert_eq!(full["traces"][0]["epochs"].as_array().unwrap().len(), 8);
    for f in ["regret.svg", "rewards.svg"] {
        let svg = std::fs::read_to_string(out_dir.join(f)).unwrap();
        // The methods as the docs name them; tick labels that tell the ticks apart.
        let texts = rlal::search::plot::svg_texts(&svg);
        for m in ["RLAL", "random", "uniform"] {
            assert!(texts.iter().any(|t| t == m), "{f}: no legend entry {m} in {texts:?}");
        }
        let ticks = rlal::search::plot::percent_ticks(&svg);
        let mut uniq = ticks.clone();
        uniq.sort();
        uniq.dedup();
        assert!(ticks.len() >= 2 && uniq.len() == ticks.len(), "{f}: {ticks:?}");
    }
}

#[test]
fn bench_agent_surface_families_and_run_effects_are_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let recipe = dir.path().join("r.yaml");
    std::fs::write(&recipe, AGENT_RECIPE).unwrap();
    let out_dir = dir.path().join("out");
    let (code, _, err) = rlal(&[
        "bench",
        "agent",
        "--recipe",
        recipe.to_str().unwrap(),
        "--seeds",
        "1",
        "--methods",
        "random,uniform",
        "--surface",
        "coupled",
        "--noise",
        "correlated",
        "--alignment-feedback",
        "--out",
        out_dir.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    let full: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out_dir.join("agent_bench.json")).unwrap()).unwrap();
    assert_eq!(full["surface"]["family"], "coupled");
    assert_eq!(full["surface"]["noise"], "correlated");
    assert_eq!(full["surface"]["alignment_feedback"], true);
    // No exact optimum: the reference is the best architecture found, flagged.
    assert_eq!(full["optimum_exact"], false);
    let source = full["optimum_source"][0].as_str().unwrap();
    assert!(source == "reference-search" || source.starts_with("method:"), "{source}");
    for t in full["traces"].as_array().unwrap() {
        assert!(t["final_regret"].as_f64().unwrap() >= -1e-12, "{t}");
    }
    let (code, _, err) =
        rlal(&["bench", "agent", "--recipe", recipe.to_str().unwrap(), "--surface", "nope"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--surface"), "{err}");
}

#[test]
fn bench_agent_rejects_bad_input_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let recipe = dir.path().join("r.yaml");
    std::fs::write(&recipe, AGENT_RECIPE.replace("updates-per-epoch: 5", "gamma: 2")).unwrap();
    let (code, _, err) = rlal(&["bench", "agent", "--recipe", recipe.to_str().unwrap()]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("agent.gamma") && err.contains("r.yaml"), "{err}");
    std::fs::write(&recipe, AGENT_RECIPE).unwrap();
    let (code, _, err) =
        rlal(&["bench", "agent", "--recipe", recipe.to_str().unwrap(), "--seeds", "0"]);
    assert_eq!(code, 2, "{err}");
    let (code, _, err) = rlal(&[
        "bench",
        "agent",
        "--recipe",
        recipe.to_str().unwrap(),
        "--agent",
        "no-such-field=1",
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("no-such-field"), "{err}");
}

#[test]
fn bench_data_generates_jpegs_and_reports_each_worker_count() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("jpegs");
    let d = dir.to_str().unwrap();
    let args = [
        "bench",
        "data",
        "--dir",
        d,
        "--generate",
        "20",
        "--workers",
        "0,2",
        "--batch",
        "4",
        "--batches",
        "3",
        "--size",
        "64",
        "--json",
    ];
    let (code, out, err) = rlal(&args);
    assert_eq!(code, 0, "{err}");
    let rows: Vec<serde_json::Value> =
        out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(rows.len(), 2, "{out}");
    for (r, w) in rows.iter().zip([0, 2]) {
        assert_eq!((r["workers"].as_u64(), r["images"].as_u64()), (Some(w), Some(12)), "{r}");
        assert!(r["images_per_s"].as_f64().unwrap() > 0.0);
    }
    let jpegs = walk(&dir.join("train"));
    assert_eq!(jpegs, 20, "20 JPEGs in class folders");
    // Too few images for the batches asked: an input error naming the folder.
    let (code, _, err) = rlal(&["bench", "data", "--dir", d, "--batch", "8", "--batches", "5"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("jpegs") && err.contains("--generate"), "{err}");
}

fn walk(p: &std::path::Path) -> usize {
    std::fs::read_dir(p)
        .unwrap()
        .flatten()
        .map(|e| if e.path().is_dir() { walk(&e.path()) } else { 1 })
        .sum()
}

#[test]
fn bench_latency_times_pruned_beside_unpruned_with_profiles() {
    let t = tempfile::tempdir().unwrap();
    let pruned = t.path().join("p.onnx");
    let p = pruned.to_str().unwrap();
    let (code, _, err) =
        rlal(&["export", p, "--model", "graphs/mnist_cnn.onnx", "--uniform", "0.5", "-q"]);
    assert_eq!(code, 0, "{err}");
    let args = [
        "bench",
        "latency",
        "--unpruned",
        "graphs/mnist_cnn.onnx",
        "--pruned",
        p,
        "--native",
        p,
        "--batch",
        "1,4",
        "--runs",
        "3",
        "--warmup",
        "1",
        "--threads",
        "1",
        "--json",
    ];
    let (code, out, err) = rlal(&args);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let batches = v.as_array().unwrap();
    assert_eq!(batches.len(), 2);
    for (b, want) in batches.iter().zip([1, 4]) {
        assert_eq!(b["batch"], want);
        let models: Vec<&str> =
            b["models"].as_array().unwrap().iter().map(|m| m["model"].as_str().unwrap()).collect();
        assert_eq!(models, ["unpruned", "pruned", "native"]);
        assert!((b["models"][0]["speedup"].as_f64().unwrap() - 1.0).abs() < 1e-9);
        assert!(b["pruned_over_native"].as_f64().unwrap() > 0.0);
        // ONNX Runtime's profile: the convolutions are there and the kernels add up.
        let prof = &b["models"][1]["profile"];
        let ops: Vec<&str> =
            prof["by_op"].as_array().unwrap().iter().map(|o| o[0].as_str().unwrap()).collect();
        assert!(ops.iter().any(|o| o.contains("Conv")), "{ops:?}");
        let sum: f64 =
            prof["by_op"].as_array().unwrap().iter().map(|o| o[1].as_f64().unwrap()).sum();
        assert!((sum - prof["total_ms"].as_f64().unwrap()).abs() < 1e-6);
    }
    let (code, _, err) = rlal(&["bench", "latency", "--pruned", p]);
    assert_eq!(code, 2, "{err}");
}
