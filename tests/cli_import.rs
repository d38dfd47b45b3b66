//! `rlal import` on the real binary: the report, the JSON, and a clear error
//! (exit code 2, naming the file and node) for every kind of malformed input.
use prost::Message;
use rlal::onnx::pb;
use std::path::{Path, PathBuf};
use std::process::Command;

fn rlal(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_rlal")).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn graph(name: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("graphs").join(name).display().to_string()
}

fn info(name: &str, dims: &[i64]) -> pb::ValueInfoProto {
    use pb::tensor_shape_proto::{dimension::Value as D, Dimension};
    let dim = dims
        .iter()
        .map(|&d| Dimension {
            value: Some(if d < 0 { D::DimParam("N".into()) } else { D::DimValue(d) }),
            denotation: None,
        })
        .collect();
    pb::ValueInfoProto {
        name: Some(name.into()),
        r#type: Some(pb::TypeProto {
            value: Some(pb::type_proto::Value::TensorType(pb::type_proto::Tensor {
                elem_type: Some(1),
                shape: Some(pb::TensorShapeProto { dim }),
            })),
            denotation: None,
        }),
        ..Default::default()
    }
}

fn init(name: &str, dims: &[i64]) -> pb::TensorProto {
    let n: i64 = dims.iter().product();
    pb::TensorProto {
        name: Some(name.into()),
        dims: dims.to_vec(),
        data_type: Some(1),
        float_data: vec![0.5; n as usize],
        ..Default::default()
    }
}

fn node(name: &str, op: &str, inputs: &[&str], outputs: &[&str]) -> pb::NodeProto {
    pb::NodeProto {
        name: Some(name.into()),
        op_type: Some(op.into()),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: outputs.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

/// input [N,1,6,6] → Conv(w [4,1,3,3]) → Relu → Conv(w2 [2,4,3,3]) → output
fn small_model() -> pb::ModelProto {
    pb::ModelProto {
        ir_version: Some(8),
        opset_import: vec![pb::OperatorSetIdProto {
            domain: Some(String::new()),
            version: Some(13),
        }],
        graph: Some(pb::GraphProto {
            name: Some("small".into()),
            node: vec![
                node("conv_a", "Conv", &["x", "w"], &["a"]),
                node("relu_a", "Relu", &["a"], &["b"]),
                node("conv_b", "Conv", &["b", "w2"], &["y"]),
            ],
            initializer: vec![init("w", &[4, 1, 3, 3]), init("w2", &[2, 4, 3, 3])],
            input: vec![info("x", &[-1, 1, 6, 6])],
            output: vec![info("y", &[-1, 2, 2, 2])],
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> String {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p.display().to_string()
}

fn expect_input_error(path: &str, needles: &[&str]) {
    let (code, _, err) = rlal(&["import", path]);
    assert_eq!(code, 2, "{path}: exit code {code}, stderr: {err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(
        err.contains(Path::new(path).file_name().unwrap().to_str().unwrap()),
        "error does not name the file: {err}"
    );
    for n in needles {
        assert!(err.contains(n), "error does not mention '{n}': {err}");
    }
}

#[test]
fn report_and_json() {
    let (code, out, err) = rlal(&["import", &graph("resnet20_cifar_bn.onnx")]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("40,551,040"), "{out}");
    assert!(out.contains("prunable layers: 9"), "{out}");
    assert!(out.contains("residual Add"), "{out}");
    let (code, out, _) = rlal(&["import", &graph("resnet20_cifar_bn.onnx"), "--json"]);
    assert_eq!(code, 0);
    let j: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(j["totals"]["macs"], 40_551_040u64);
    assert_eq!(j["totals"]["flops"], 2 * 40_551_040u64);
    assert_eq!(j["totals"]["params"], 269_722u64);
    assert_eq!(j["layers"].as_array().unwrap().len(), 9);
    let groups = j["groups"].as_array().unwrap();
    assert!(groups.iter().any(|g| g["prunable"] == false && g["reason"].as_str().is_some()));
    assert!(groups.iter().all(|g| g["channels"].as_u64().unwrap() > 0));
}

#[test]
fn small_model_works_and_its_figures_are_exact() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "small.onnx", &small_model().encode_to_vec());
    let (code, out, err) = rlal(&["import", &p, "--json"]);
    assert_eq!(code, 0, "{err}");
    let j: serde_json::Value = serde_json::from_str(&out).unwrap();
    // conv_a: 4x4x4 outputs x 9; conv_b: 2x2x2 outputs x 4*9
    assert_eq!(j["totals"]["macs"], 64 * 9 + 8 * 36);
    assert_eq!(j["layers"].as_array().unwrap().len(), 1);
}

#[test]
fn malformed_inputs_give_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    expect_input_error(
        &write(d, "garbage.onnx", b"\xff\xff\xff\xffnot a protobuf at all"),
        &["not a readable ONNX model"],
    );
    expect_input_error(&write(d, "empty.onnx", b""), &["empty"]);
    let full = std::fs::read(graph("mnist_cnn.onnx")).unwrap();
    expect_input_error(
        &write(d, "truncated.onnx", &full[..full.len() / 2]),
        &["not a readable ONNX model"],
    );
    expect_input_error(&d.join("missing.onnx").display().to_string(), &[]);

    let mut m = small_model();
    m.graph.as_mut().unwrap().initializer.remove(1);
    expect_input_error(&write(d, "missing_init.onnx", &m.encode_to_vec()), &["conv_b", "w2"]);

    let mut m = small_model();
    m.graph.as_mut().unwrap().node[0].input[0] = "nowhere".into();
    expect_input_error(&write(d, "dangling.onnx", &m.encode_to_vec()), &["conv_a", "nowhere"]);

    let mut m = small_model();
    let g = m.graph.as_mut().unwrap();
    g.node[0].input[0] = "b".into(); // conv_a reads relu_a's output, relu_a reads conv_a's
    expect_input_error(&write(d, "cycle.onnx", &m.encode_to_vec()), &["cycle", "conv_a"]);

    let mut m = small_model();
    m.graph.as_mut().unwrap().input[0] = info("x", &[-1, 1, 0, 6]);
    expect_input_error(&write(d, "zero.onnx", &m.encode_to_vec()), &["zero-sized"]);

    let mut m = small_model();
    m.graph.as_mut().unwrap().initializer[0] = init("w", &[4, 9]);
    expect_input_error(&write(d, "rank.onnx", &m.encode_to_vec()), &["conv_a", "rank"]);

    let mut m = small_model();
    m.graph.as_mut().unwrap().node[1].domain = Some("com.example".into());
    expect_input_error(&write(d, "domain.onnx", &m.encode_to_vec()), &["relu_a", "com.example"]);

    let mut m = small_model();
    m.graph.as_mut().unwrap().initializer[0].float_data.pop();
    expect_input_error(&write(d, "short_tensor.onnx", &m.encode_to_vec()), &["'w'", "elements"]);

    let mut m = small_model();
    m.opset_import[0].version = Some(5);
    expect_input_error(&write(d, "opset.onnx", &m.encode_to_vec()), &["opset 5", "7..=23"]);

    let mut m = small_model();
    m.graph.as_mut().unwrap().node[2].input[1] = "w".into();
    expect_input_error(
        &write(d, "channels.onnx", &m.encode_to_vec()),
        &["conv_b", "input channels"],
    );
}

#[test]
fn unsupported_op_is_a_barrier_not_a_failure() {
    let dir = tempfile::tempdir().unwrap();
    let mut m = small_model();
    let g = m.graph.as_mut().unwrap();
    g.node[1].op_type = Some("Swishy".into());
    g.value_info.push(info("b", &[-1, 4, 4, 4]));
    let p = write(dir.path(), "barrier.onnx", &m.encode_to_vec());
    let (code, out, err) = rlal(&["import", &p]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("unsupported ops"), "{out}");
    assert!(out.contains("relu_a"), "{out}");
    assert!(out.contains("prunable layers: 0"), "{out}");
}

#[test]
fn external_data_initializers_load() {
    let dir = tempfile::tempdir().unwrap();
    let mut m = small_model();
    let w = &mut m.graph.as_mut().unwrap().initializer[1];
    let bytes: Vec<u8> = w.float_data.iter().flat_map(|f| f.to_le_bytes()).collect();
    std::fs::write(dir.path().join("weights.bin"), [vec![0u8; 16], bytes.clone()].concat())
        .unwrap();
    w.float_data.clear();
    w.data_location = Some(1);
    w.external_data = vec![
        pb::StringStringEntryProto {
            key: Some("location".into()),
            value: Some("weights.bin".into()),
        },
        pb::StringStringEntryProto { key: Some("offset".into()), value: Some("16".into()) },
        pb::StringStringEntryProto {
            key: Some("length".into()),
            value: Some(bytes.len().to_string()),
        },
    ];
    let p = write(dir.path(), "ext.onnx", &m.encode_to_vec());
    let g = rlal::onnx::load(Path::new(&p)).unwrap();
    let w2 = g.values.iter().find(|v| v.name == "w2").unwrap().init.as_ref().unwrap();
    assert_eq!(w2.as_f32().unwrap(), &[0.5; 72][..]);
    // A wrong length is an error naming the tensor.
    let mut m2 = m.clone();
    m2.graph.as_mut().unwrap().initializer[1].external_data[2].value = Some("9999".into());
    expect_input_error(
        &write(dir.path(), "ext_bad.onnx", &m2.encode_to_vec()),
        &["'w2'", "weights.bin"],
    );
}

/// The text report's "prunable layers" percentage and each layer row's share (%).
fn shares(out: &str) -> (f64, Vec<f64>) {
    let pct = |tok: &str| tok.trim_end_matches([')', ',']).trim_end_matches('%').parse::<f64>();
    let head = out.lines().find(|l| l.starts_with("prunable layers:")).expect(out);
    let total = head.split_whitespace().find(|t| t.contains('%')).map(pct).unwrap().unwrap();
    let rows = out
        .lines()
        .skip_while(|l| !l.starts_with("prunable layers:"))
        .skip(2)
        .take_while(|l| l.split_whitespace().next().is_some_and(|t| t.parse::<usize>().is_ok()))
        .map(|l| l.split_whitespace().find(|t| t.ends_with('%')).map(pct).unwrap().unwrap())
        .collect();
    (total, rows)
}

#[test]
fn layer_shares_count_every_mac_once() {
    // MobileNetV2: the projection conv of block 17 and the 1x1 head conv sit between two
    // prunable layers each, and every conv touches some prunable layer; ResNet-20: the
    // stem and the residual streams are fixed.
    for (file, layers, at_most) in
        [("mobilenetv2_cifar.onnx", 20, 100.0), ("resnet20_cifar.onnx", 9, 99.0)]
    {
        let (code, out, err) = rlal(&["import", &graph(file)]);
        assert_eq!(code, 0, "{err}");
        let (total, rows) = shares(&out);
        assert_eq!(rows.len(), layers, "{out}");
        assert!(total <= at_most, "{file}: prunable layers hold {total}% of the model\n{out}");
        let sum: f64 = rows.iter().sum();
        // Each row is rounded to 0.1%.
        assert!(
            (sum - total).abs() <= 0.05 * layers as f64 + 0.05,
            "{file}: {sum} vs {total}\n{out}"
        );
        let (code, out, _) = rlal(&["import", &graph(file), "--json"]);
        assert_eq!(code, 0);
        let j: serde_json::Value = serde_json::from_str(&out).unwrap();
        let t = &j["totals"];
        let (macs, prunable) = (t["macs"].as_u64().unwrap(), t["prunable_macs"].as_u64().unwrap());
        let layers = j["layers"].as_array().unwrap();
        let share: u64 = layers.iter().map(|l| l["macs_share"].as_u64().unwrap()).sum();
        assert_eq!(share, prunable, "{file}: the shares partition the prunable MACs");
        assert!(prunable <= macs, "{file}");
        assert!((100.0 * prunable as f64 / macs as f64 - total).abs() < 0.051, "{file}");
        // `macs` (what scales with each width) overlaps where a conv joins two layers.
        let scaling: u64 = layers.iter().map(|l| l["macs"].as_u64().unwrap()).sum();
        assert!(scaling >= share, "{file}");
        if file.starts_with("mobilenet") {
            assert_eq!(prunable, macs, "{file}: every MobileNetV2 conv touches a prunable layer");
            assert!(scaling > macs, "{file}: the overlap this report no longer adds up");
        }
    }
}

#[test]
fn conv_transpose_layer_reports_its_own_kernel_and_stride() {
    // ops_cnn's `up` is ConvTranspose(kernel 2, stride 2), read by a 3x3 stride-2 conv.
    let (code, out, err) = rlal(&["import", &graph("ops_cnn.onnx"), "--json"]);
    assert_eq!(code, 0, "{err}");
    let j: serde_json::Value = serde_json::from_str(&out).unwrap();
    let up = j["layers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["name"].as_str().unwrap().contains("ConvTranspose"))
        .expect(&out);
    assert_eq!((up["kernel"].as_u64(), up["stride"].as_u64()), (Some(2), Some(2)), "{up}");
    let (_, out, _) = rlal(&["import", &graph("ops_cnn.onnx")]);
    let row: Vec<&str> =
        out.lines().find(|l| l.contains("/up/ConvTranspose")).unwrap().split_whitespace().collect();
    assert_eq!(row[4..6], ["2", "2"], "{out}");
}

#[test]
fn dynamo_exports_name_layers_by_module_path() {
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_rlal"))
        .args(["import", "graphs/scopes_dynamo.onnx", "--json"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["totals"]["macs"], 342_224, "counted by hand in graphs/README.md");
    let layers = v["layers"].as_array().unwrap();
    let modules: Vec<&str> = layers.iter().map(|l| l["module"].as_str().unwrap()).collect();
    assert_eq!(modules, ["layer1.0.bn1 (conv fused)", "layer1.1.bn1 (conv fused)"]);
    // The node name stays the identifier.
    assert!(layers[0]["name"].as_str().unwrap().starts_with("node_Conv"));
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_rlal"))
        .args(["import", "graphs/scopes_dynamo.onnx"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("layer1.1.bn1 (conv fused)"), "{text}");
}
