//! Models whose graph inputs are malformed (a scalar input, no input at all) on
//! the real binary: `rlal import`, `rlal export` and `rlal eval` exit with 2
//! and an error naming the file and the input, never a panic (exit 101).
use prost::Message;
use rlal::onnx::pb;
use std::path::{Path, PathBuf};
use std::process::Command;

fn rlal(args: &[&str]) -> (i32, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_rlal")).args(args).output().unwrap();
    (o.status.code().unwrap_or(-1), String::from_utf8_lossy(&o.stderr).into_owned())
}

fn mnist() -> pb::ModelProto {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("graphs/mnist_cnn.onnx");
    pb::ModelProto::decode(std::fs::read(p).unwrap().as_slice()).unwrap()
}

fn write(dir: &Path, name: &str, m: &pb::ModelProto) -> String {
    let p = dir.join(name);
    std::fs::write(&p, m.encode_to_vec()).unwrap();
    p.display().to_string()
}

/// Every command on `model` exits 2 naming the file and each of `needles`.
fn expect_input_error(model: &str, dir: &Path, cmds: &[&str], needles: &[&str]) {
    let out = dir.join("out.onnx").display().to_string();
    let data = dir.join("no_data").display().to_string();
    for cmd in cmds {
        let args: Vec<&str> = match *cmd {
            "import" => vec!["import", model],
            "export" => vec!["export", &out, "--model", model, "--uniform", "0.5"],
            "export --dry-run" => {
                vec!["export", &out, "--model", model, "--uniform", "0.5", "--dry-run"]
            }
            "eval" => vec!["eval", model, "--data", &data],
            other => panic!("no command {other}"),
        };
        let (code, err) = rlal(&args);
        assert_eq!(code, 2, "rlal {cmd} {model}: exit {code}, stderr: {err}");
        assert!(!err.contains("panicked"), "{err}");
        let name = Path::new(model).file_name().unwrap().to_str().unwrap();
        assert!(err.contains(name), "rlal {cmd}: the error does not name {name}: {err}");
        for n in needles {
            assert!(err.contains(n), "rlal {cmd}: the error does not mention '{n}': {err}");
        }
    }
}

#[test]
fn a_scalar_graph_input_is_an_input_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut m = mnist();
    let g = m.graph.as_mut().unwrap();
    let input = g.input[0].name.clone().unwrap();
    let Some(pb::type_proto::Value::TensorType(t)) =
        g.input[0].r#type.as_mut().unwrap().value.as_mut()
    else {
        panic!("not a tensor input")
    };
    t.shape.as_mut().unwrap().dim.clear();
    let p = write(dir.path(), "scalar_input.onnx", &m);
    expect_input_error(
        &p,
        dir.path(),
        &["import", "export", "export --dry-run", "eval"],
        &[&input, "scalar"],
    );
}

#[test]
fn a_model_without_a_graph_input_is_an_input_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut m = mnist();
    let g = m.graph.as_mut().unwrap();
    // The input becomes a constant: the graph still imports, but there is nothing to feed.
    let input = g.input.remove(0);
    g.initializer.push(pb::TensorProto {
        name: input.name.clone(),
        dims: vec![1, 1, 28, 28],
        data_type: Some(1),
        float_data: vec![0.5; 784],
        ..Default::default()
    });
    let p = write(dir.path(), "no_input.onnx", &m);
    expect_input_error(&p, dir.path(), &["export", "eval"], &["no graph input"]);
    // Import and a dry run describe the model without running it.
    let (code, err) = rlal(&["import", &p]);
    assert!(code == 0 || code == 2, "exit {code}: {err}");
    assert!(!err.contains("panicked"), "{err}");
}
