//! Models whose graph inputs are malformed (a scalar input, no input at all) on
//! the real binary: `rlal import`, `rlal export` and `rlal eval` exit with 2
//! and an error naming the file and the input, never a panic (exit 101). An
//! error's `cause:` lines never repeat its message.
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

/// The messages of the `error:` line and its `cause:` lines (main.rs prints an error's
/// `source()` chain): none may contain another, or the user reads a message twice.
fn assert_no_repeated_message(cmd: &str, stderr: &str) {
    let msgs: Vec<&str> = stderr
        .lines()
        .filter_map(|l| l.strip_prefix("error: ").or_else(|| l.strip_prefix("  cause: ")))
        .collect();
    assert!(!msgs.is_empty(), "rlal {cmd}: no error line: {stderr}");
    for (i, a) in msgs.iter().enumerate() {
        for (j, b) in msgs.iter().enumerate() {
            assert!(i == j || !a.contains(b), "rlal {cmd}: '{b}' is repeated: {stderr}");
        }
    }
}

/// Failures through each layer's error types (ONNX I/O, an op's attribute, the data
/// folder through `DataError` and `TrainError`): exit code 2, each message once.
#[test]
fn errors_print_each_message_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut m = mnist();
    // The first initializer's data in a file that is not there.
    let w = &mut m.graph.as_mut().unwrap().initializer[0];
    w.raw_data = None;
    w.float_data.clear();
    w.data_location = Some(pb::tensor_proto::DataLocation::External as i32);
    w.external_data = vec![pb::StringStringEntryProto {
        key: Some("location".into()),
        value: Some("absent.bin".into()),
    }];
    let external = write(dir.path(), "external.onnx", &m);
    let mut m = mnist();
    // A Conv attribute of the wrong kind (a string for its strides).
    let conv = m.graph.as_mut().unwrap().node.iter_mut().find(|n| n.op_type() == "Conv").unwrap();
    conv.attribute.retain(|a| a.name() != "strides");
    conv.attribute.push(pb::AttributeProto {
        name: Some("strides".into()),
        r#type: Some(pb::attribute_proto::AttributeType::String as i32),
        s: Some(b"1".to_vec()),
        ..Default::default()
    });
    let bad_attr = write(dir.path(), "bad_attr.onnx", &m);
    let absent = dir.path().join("absent").display().to_string();
    let mnist = "graphs/mnist_cnn.onnx";
    let cmds: [&[&str]; 5] = [
        &["import", "no-such-model.onnx"],
        &["import", &external],
        &["import", &bad_attr],
        &["eval", mnist, "--data", &absent],
        &["train", mnist, "--data", &absent, "-q"],
    ];
    for args in cmds {
        let (code, err) = rlal(args);
        let cmd = args.join(" ");
        assert_eq!(code, 2, "rlal {cmd}: {err}");
        assert_no_repeated_message(&cmd, &err);
    }
}
