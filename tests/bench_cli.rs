//! `rlal bench train` on the real binary: a tiny run prints sane JSON, a missing
//! model is an input error (exit code 2) naming the file. Never asserts on time.
use std::process::Command;

fn rlal(args: &[&str]) -> (i32, String, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_rlal"))
        .args(args)
        .output()
        .unwrap();
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
    let (code, _, err) = rlal(&[
        "bench",
        "train",
        "--model",
        missing.to_str().unwrap(),
        "--steps",
        "1",
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("no_such_model.onnx"), "{err}");
}
