//! `rlal train` / `rlal eval` on the real binary: learning works (short run,
//! lower bar), the exported ONNX gives the same accuracy in ONNX Runtime as in
//! rlal's own engine (± 1 image), checkpoints resume, bad input is exit code 2.
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

fn eval_json(model: &Path, engine: &str) -> serde_json::Value {
    let (code, out, err) = rlal(&[
        "eval",
        model.to_str().unwrap(),
        "--data",
        "data/mnist5k",
        "--engine",
        engine,
        "--json",
        "--threads",
        "2",
    ]);
    assert_eq!(code, 0, "{err}");
    serde_json::from_str(&out).unwrap()
}

#[test]
fn train_learns_and_round_trips_through_onnx_runtime() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("cnn.onnx");
    let ck = dir.path().join("ck");
    let metrics = dir.path().join("m.jsonl");
    let (code, stdout, err) = rlal(&[
        "train",
        "--recipe",
        "recipes/train_mnist_cnn.yaml",
        "--epochs",
        "1",
        "-o",
        out.to_str().unwrap(),
        "--checkpoint-dir",
        ck.to_str().unwrap(),
        "--metrics",
        metrics.to_str().unwrap(),
        "-q",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(stdout.contains("test accuracy"), "{stdout}");
    let tch = eval_json(&out, "tch");
    let ort = eval_json(&out, "ort");
    let tract = eval_json(&out, "tract");
    assert_eq!(tract["engine"], "tract");
    let (a, b, c) = (
        tch["correct"].as_u64().unwrap() as i64,
        ort["correct"].as_u64().unwrap() as i64,
        tract["correct"].as_u64().unwrap() as i64,
    );
    assert!(
        (a - b).abs() <= 1 && (b - c).abs() <= 1,
        "tch {a} vs ort {b} vs tract {c} correct images"
    );
    assert_eq!(tch["samples"], 1000);
    // One epoch of the small CNN from random weights: far above chance (10%).
    assert!(tch["accuracy"].as_f64().unwrap() >= 0.85, "accuracy {}", tch["accuracy"]);
    for k in ["macs", "params", "latency_ms", "engine"] {
        assert!(tch.get(k).is_some(), "missing {k}");
    }
    // The exported graph has its BN folded back and records its preprocessing.
    let g = rlal::onnx::load(&out).unwrap();
    for (k, v) in [
        ("rlal.preprocess.mean", "0.1307"),
        ("rlal.preprocess.std", "0.3081"),
        ("rlal.input.size", "1x28x28"),
        ("rlal.input.channels", "gray"),
        ("rlal.classes", "10"),
    ] {
        assert_eq!(g.meta.prop(k), Some(v), "{k}");
    }
    assert!(g.nodes.iter().all(|n| n.op_type != "BatchNormalization"));
    let lines = std::fs::read_to_string(&metrics).unwrap();
    assert_eq!(lines.lines().count(), 1);
    // Resume to 2 epochs: one more epoch runs, the metrics file grows.
    let (code, _, err) = rlal(&[
        "train",
        "--recipe",
        "recipes/train_mnist_cnn.yaml",
        "--epochs",
        "2",
        "-o",
        out.to_str().unwrap(),
        "--checkpoint-dir",
        ck.to_str().unwrap(),
        "--metrics",
        metrics.to_str().unwrap(),
        "--resume",
        "-q",
    ]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(std::fs::read_to_string(&metrics).unwrap().lines().count(), 2);
    let st: serde_json::Value =
        serde_json::from_slice(&std::fs::read(ck.join("state.json")).unwrap()).unwrap();
    assert_eq!(st["epoch"], 2);
    // The two newest checkpoints are kept (tests/checkpoint_cli.rs).
    assert!(ck.join("weights-e2.ot").exists() && ck.join("weights-e1.ot").exists());
}

#[test]
fn bad_recipe_and_mismatched_data_are_input_errors() {
    let dir = tempfile::tempdir().unwrap();
    let r = dir.path().join("r.yaml");
    std::fs::write(&r, "model: graphs/mnist_cnn.onnx\ndata: data/mnist5k\nepoch: 3\n").unwrap();
    let (code, _, err) = rlal(&["train", "--recipe", r.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(err.contains("r.yaml") && err.contains("epoch") && err.contains("line 3"), "{err}");
    // Fields moved or renamed since: the error gives the file, the new place and the line.
    std::fs::write(&r, "model: graphs/mnist_cnn.onnx\nwarmup-epochs: 1\n").unwrap();
    let (code, _, err) = rlal(&["train", "--recipe", r.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(err.contains("'warmup-epochs' is now 'training.lr-warmup-epochs'"), "{err}");
    std::fs::write(&r, "model: graphs/mnist_cnn.onnx\ndata: data/mnist5k\nlr: 0.1\n").unwrap();
    let (code, _, err) = rlal(&["train", "--recipe", r.to_str().unwrap()]);
    assert_eq!(code, 2);
    let want = format!("{}: 'lr' is now 'training.lr' (recipes have sections since 2026-12; see docs/RECIPES.md) at line 3", r.display());
    assert!(err.contains(&want), "{err}");
    // An unknown field of the section names the section, the field and the line.
    std::fs::write(
        &r,
        "model: graphs/mnist_cnn.onnx\ntraining:\n  epochs: 1\n  learning-rate: 0.1\n",
    )
    .unwrap();
    let (code, _, err) = rlal(&["train", "--recipe", r.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(
        err.contains("training: unknown field `learning-rate`") && err.contains("line 4"),
        "{err}"
    );
    // 8x8 digits into a 28x28 graph.
    let (code, _, err) =
        rlal(&["train", "graphs/mnist_cnn.onnx", "--data", "data/digits", "--epochs", "1"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("data/digits"), "{err}");
    let (code, _, err) = rlal(&["eval", "graphs/resnet20_digits.onnx", "--data", "data/mnist5k"]);
    assert_eq!(code, 2, "{err}");
}

/// Without a loadable libonnxruntime, `rlal eval --engine ort` says so and
/// falls back to tract (the JSON names the engine that ran).
#[test]
fn eval_falls_back_to_tract_without_onnx_runtime() {
    let o = Command::new(env!("CARGO_BIN_EXE_rlal"))
        .args([
            "eval",
            "graphs/mnist_cnn.onnx",
            "--data",
            "data/mnist5k",
            "--engine",
            "ort",
            "--json",
            "--threads",
            "2",
        ])
        .env("ORT_DYLIB_PATH", "/nonexistent/libonnxruntime.so")
        .output()
        .unwrap();
    let (out, err) = (String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert!(
        err.contains("/nonexistent/libonnxruntime.so") && err.contains("falling back to tract"),
        "{err}"
    );
    // A model from elsewhere records no preprocessing: the guess is said.
    assert!(
        err.contains("records no input preprocessing; guessing scale 1/255, mean 0, std 1"),
        "{err}"
    );
    let j: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(j["engine"], "tract");
    assert_eq!(j["samples"], 1000);
}
