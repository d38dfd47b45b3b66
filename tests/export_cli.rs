//! `rlal export` on the real binary: dry run, export + validation report,
//! ratios files, exit codes.
use std::path::PathBuf;
use std::process::Command;

fn graph(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("graphs").join(name)
}

fn rlal(args: &[&str]) -> (i32, String, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_rlal")).args(args).output().unwrap();
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn dry_run_prints_the_plan_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("p.onnx");
    let m = graph("resnet20_cifar_bn.onnx");
    let (code, stdout, stderr) = rlal(&[
        "export",
        out.to_str().unwrap(),
        "--model",
        m.to_str().unwrap(),
        "--uniform",
        "0.5",
        "--dry-run",
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("layer 3 '/layer2/layer2.0/conv1/Conv' (group")
            && stdout.contains("32 -> 16 channels"),
        "{stdout}"
    );
    assert!(stdout.contains("MACs"), "{stdout}");
    assert!(!out.exists());
}

#[test]
fn export_writes_a_valid_model_and_reports() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("p.onnx");
    let m = graph("mobilenetv2_cifar_dynamo.onnx");
    let args = [
        "export",
        out.to_str().unwrap(),
        "--model",
        m.to_str().unwrap(),
        "--uniform",
        "0.5",
        "--criterion",
        "l2",
        "--batch",
        "2",
        "--runs",
        "2",
        "--warmup",
        "1",
        "--json",
        "--target",
        "0.5",
    ];
    let (code, stdout, stderr) = rlal(&args);
    assert_eq!(code, 0, "{stderr}");
    let r: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let (before, after) = (r["macs_before"].as_u64().unwrap(), r["macs_after"].as_u64().unwrap());
    assert!(after < before * 6 / 10, "{r}");
    assert_eq!(r["target_macs_ratio"].as_f64(), Some(0.5));
    let v = &r["validation"];
    assert_eq!(v["engine"], "ort");
    assert!(v["max_diff_masked"].as_f64().unwrap() < 1e-3, "{v}");
    assert!(v["max_diff_ort_tract"].as_f64().unwrap() < 1e-3, "{v}");
    assert_eq!(v["latency_after"].as_array().unwrap().len(), 2);
    assert_eq!(v["latency_after"][1]["batch"], 2);
    // The file re-imports with the reported MACs; no temp file is left behind.
    let (g, a) = rlal::analysis::import(&out, &Default::default()).unwrap();
    assert_eq!(a.cost.full_macs(), after);
    rlal::rewrite::check::check(&g, None).unwrap();
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
}

#[test]
fn ratios_file_by_index_and_name() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("p.onnx");
    let ratios = dir.path().join("r.yaml");
    std::fs::write(&ratios, "0: 0.5\n/layer3/layer3.2/conv1/Conv: 0.75\n").unwrap();
    let m = graph("resnet20_cifar.onnx");
    let (code, stdout, stderr) = rlal(&[
        "export",
        out.to_str().unwrap(),
        "--model",
        m.to_str().unwrap(),
        "--ratios",
        ratios.to_str().unwrap(),
        "--json",
        "--no-validate",
    ]);
    assert_eq!(code, 0, "{stderr}");
    let r: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let layers = r["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 2, "{r}");
    assert_eq!((layers[0]["layer"].as_u64(), layers[0]["to"].as_u64()), (Some(0), Some(8)));
    assert_eq!((layers[1]["layer"].as_u64(), layers[1]["to"].as_u64()), (Some(8), Some(16)));
    assert!(out.exists());
}

#[test]
fn bad_input_exits_2_and_names_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("p.onnx");
    let m = graph("resnet20_cifar.onnx");
    let cases = [
        ("0: 1.5\n", "field '0'"),
        ("/nope/Conv: 0.5\n", "field '/nope/Conv'"),
        ("3: high\n", "field '3'"),
        ("42: 0.1\n", "no prunable layer 42"),
        ("- 0.5\n", "expected a mapping"),
    ];
    for (yaml, want) in cases {
        let ratios = dir.path().join("r.yaml");
        std::fs::write(&ratios, yaml).unwrap();
        let (code, _, stderr) = rlal(&[
            "export",
            out.to_str().unwrap(),
            "--model",
            m.to_str().unwrap(),
            "--ratios",
            ratios.to_str().unwrap(),
        ]);
        assert_eq!(code, 2, "{yaml}: {stderr}");
        assert!(stderr.contains(want), "{yaml}: {stderr}");
    }
    let (code, _, stderr) = rlal(&[
        "export",
        out.to_str().unwrap(),
        "--model",
        m.to_str().unwrap(),
        "--uniform",
        "1.2",
    ]);
    assert_eq!(code, 2, "{stderr}");
    let (code, _, _) = rlal(&[
        "export",
        out.to_str().unwrap(),
        "--model",
        "/nonexistent.onnx",
        "--uniform",
        "0.5",
    ]);
    assert_eq!(code, 2);
    assert!(!out.exists());
}

#[test]
fn bn_is_folded_unless_keep_bn() {
    let dir = tempfile::tempdir().unwrap();
    let m = graph("resnet20_cifar_bn.onnx");
    for (flag, want_bn) in [(None, false), (Some("--keep-bn"), true)] {
        let out = dir.path().join("p.onnx");
        let mut args = vec![
            "export",
            out.to_str().unwrap(),
            "--model",
            m.to_str().unwrap(),
            "--uniform",
            "0.5",
            "--batch",
            "2",
            "--runs",
            "1",
            "--warmup",
            "0",
            "--json",
        ];
        args.extend(flag);
        let (code, stdout, stderr) = rlal(&args);
        assert_eq!(code, 0, "{stderr}");
        let r: serde_json::Value = serde_json::from_str(&stdout).unwrap();
        assert!(r["validation"]["max_diff_masked"].as_f64().unwrap() < 1e-4, "{r}");
        let g = rlal::onnx::load(&out).unwrap();
        assert_eq!(g.nodes.iter().any(|n| n.op_type == "BatchNormalization"), want_bn, "{flag:?}");
    }
}

#[test]
fn cuda_execution_provider_is_used_or_refused_clearly() {
    // The CPU-only `onnxruntime` wheel of tools/setup.sh has no CUDA execution provider: `--ep cuda`
    // must say so (exit 2, nothing written), never silently run on the CPU. With a CUDA build of
    // ONNX Runtime (ORT_DYLIB_PATH) the same commands validate on the GPU.
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("p.onnx");
    let m = graph("mnist_cnn.onnx");
    let (code, stdout, stderr) = rlal(&[
        "export",
        out.to_str().unwrap(),
        "--model",
        m.to_str().unwrap(),
        "--uniform",
        "0.5",
        "--ep",
        "cuda",
        "--batch",
        "2",
        "--runs",
        "2",
        "--warmup",
        "1",
        "--json",
    ]);
    if code == 0 {
        let r: serde_json::Value = serde_json::from_str(&stdout).unwrap();
        assert_eq!(r["validation"]["engine"], "ort-cuda", "{r}");
        assert!(out.exists());
    } else {
        assert_eq!(code, 2, "{stderr}");
        assert!(
            stderr.contains("execution provider 'cuda'")
                && stderr.contains("without the CUDA execution provider")
                && stderr.contains("libonnxruntime"),
            "{stderr}"
        );
        assert!(!out.exists());
        let (code, _, stderr) = rlal(&[
            "eval",
            m.to_str().unwrap(),
            "--data",
            "/nonexistent",
            "--engine",
            "ort",
            "--ep",
            "cuda",
        ]);
        assert_eq!(code, 2, "{stderr}");
        assert!(stderr.contains("without the CUDA execution provider"), "{stderr}");
    }
    let (code, _, stderr) = rlal(&[
        "eval",
        m.to_str().unwrap(),
        "--data",
        "/nonexistent",
        "--engine",
        "tract",
        "--ep",
        "cuda",
    ]);
    assert_eq!(code, 2);
    assert!(stderr.contains("--ep cuda applies to --engine ort only"), "{stderr}");
}

#[test]
fn tch_engine_on_cuda_is_used_or_refused_clearly() {
    // `rlal eval --engine tch --device cuda`: on a GPU machine with the CUDA build of the torch
    // wheel the engine is tch-cuda; elsewhere a clear refusal naming libtorch's CUDA backend (or
    // the missing device), exit 2, never a silent CPU run.
    let m = graph("mnist_cnn.onnx");
    let data = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("data/mnist5k");
    let (code, stdout, stderr) = rlal(&[
        "eval",
        m.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--engine",
        "tch",
        "--device",
        "cuda",
        "--json",
    ]);
    if code == 0 {
        let r: serde_json::Value = serde_json::from_str(&stdout).unwrap();
        assert_eq!(r["engine"], "tch-cuda", "{r}");
    } else {
        assert_eq!(code, 2, "{stderr}");
        assert!(
            stderr.contains("device: cuda was requested")
                && (stderr.contains("libtorch_cuda.so") || stderr.contains("no CUDA device")),
            "{stderr}"
        );
    }
    let (code, _, stderr) = rlal(&[
        "eval",
        m.to_str().unwrap(),
        "--data",
        "/nonexistent",
        "--engine",
        "ort",
        "--device",
        "cuda",
    ]);
    assert_eq!(code, 2);
    assert!(stderr.contains("--device applies to --engine tch only"), "{stderr}");
}
