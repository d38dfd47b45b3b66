//! Logs: with stderr redirected (not a terminal) `rlal train` writes no `\r`
//! progress frames, one line per epoch; `--quiet` drops those lines too but
//! keeps the final result.
use std::process::Command;

fn train(extra: &[&str]) -> (i32, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("cnn.onnx");
    let mut args =
        vec!["train", "--recipe", "recipes/train_mnist_cnn.yaml", "-o", out.to_str().unwrap()];
    args.extend(extra);
    // `output()` pipes stderr, as a redirected log would.
    let o = Command::new(env!("CARGO_BIN_EXE_rlal")).args(&args).output().unwrap();
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn redirected_logs_hold_one_line_per_epoch_and_no_redraws() {
    let (code, stdout, err) = train(&["--epochs", "2"]);
    assert_eq!(code, 0, "{err}");
    assert!(!err.contains('\r'), "progress frames in a redirected log: {err:?}");
    let epochs: Vec<&str> = err.lines().filter(|l| l.starts_with("epoch ")).collect();
    assert_eq!(epochs.len(), 2, "one line per epoch: {err}");
    assert!(
        epochs[0].starts_with("epoch 1/2 loss") && epochs[1].starts_with("epoch 2/2 loss"),
        "{err}"
    );
    assert!(stdout.contains("test accuracy"), "{stdout}");

    let (code, stdout, err) = train(&["--epochs", "1", "--quiet"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        !err.contains('\r') && !err.lines().any(|l| l.starts_with("epoch ")),
        "--quiet: {err:?}"
    );
    assert!(stdout.contains("test accuracy"), "--quiet keeps the result: {stdout}");
}
