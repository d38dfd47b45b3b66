//! Models from TensorFlow without TensorFlow: the channels-last graphs of
//! tools/make_nhwc_graphs.py (written the way tf2onnx writes Keras models) through
//! import, export, train, prune and eval, and graph inputs that are not data.
use prost::Message;
use rlal::analysis::{import, ImportOptions};
use rlal::ir::{Dim, Layout};
use rlal::train::{recipe::Training, setup};
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

fn json(args: &[&str]) -> serde_json::Value {
    let (code, out, err) = rlal(args);
    assert_eq!(code, 0, "rlal {}: {err}", args.join(" "));
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

const MEAN: &str = "normalization/sub/y:0";
const VAR: &str = "normalization/Sqrt/x:0";

/// The image input of a written model: name and declared shape.
fn interface(path: &Path) -> (String, Vec<Dim>, Vec<String>) {
    let g = rlal::onnx::load(path).unwrap();
    assert_eq!(g.inputs.len(), 1, "{}: one graph input", path.display());
    let v = &g.values[g.inputs[0]];
    let outs = g.outputs.iter().map(|&o| g.values[o].name.clone()).collect();
    (v.name.clone(), v.shape.clone().unwrap(), outs)
}

fn assert_nhwc_interface(path: &Path) {
    let (name, shape, outs) = interface(path);
    assert_eq!(name, "input_1");
    assert_eq!(shape[1..], [Dim::Fixed(28), Dim::Fixed(28), Dim::Fixed(1)], "{}", path.display());
    assert_eq!(outs, ["model/dense/BiasAdd:0"]);
}

#[test]
fn import_finds_the_layout_and_counts_what_the_nchw_twin_counts() {
    let nhwc = json(&["import", "graphs/resnet_nhwc_mnist.onnx", "--json"]);
    let nchw = json(&["import", "graphs/resnet_nchw_mnist.onnx", "--json"]);
    assert_eq!(
        (nhwc["input_layout"].as_str(), nchw["input_layout"].as_str()),
        (Some("nhwc"), Some("nchw"))
    );
    assert_eq!(nhwc["totals"]["macs"], nchw["totals"]["macs"]);
    assert_eq!(nhwc["totals"]["params"], nchw["totals"]["params"]);
    // The blocks' hidden convs (the residual Adds tie the rest).
    assert_eq!(nhwc["layers"].as_array().unwrap().len(), 2);
    assert_eq!(nhwc["layers"], nchw["layers"]);
    let (code, out, err) = rlal(&["import", "graphs/resnet_nhwc_mnist.onnx"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("input   input_1 [unk__N,28,28,1] (NHWC, channels last"), "{out}");
    // The graph input's channels are read on its last axis (1), not its height (28).
    let input_group = |j: &serde_json::Value| {
        let groups = j["groups"].as_array().unwrap();
        let named = |g: &&serde_json::Value| g["values"][0] == j["inputs"][0]["name"];
        groups.iter().find(named).map(|g| g["channels"].clone())
    };
    assert_eq!(input_group(&nhwc), Some(1.into()));
    assert_eq!(input_group(&nchw), Some(1.into()));
    assert!(out.contains("1 channels: carried by the graph input 'input_1'"), "{out}");
    // The override, and --input-shape in the model's order (H x W x C).
    let forced = json(&[
        "import",
        "graphs/resnet_nhwc_mnist.onnx",
        "--json",
        "--input-layout",
        "nchw",
        "--input-shape",
        "32x32x1",
    ]);
    assert_eq!(forced["input_layout"], "nchw");
    assert_eq!(forced["inputs"][0]["shape"], "[unk__N,32,32,1]");
}

#[test]
fn inputs_without_values_are_refused_by_name_and_work_bound() {
    let (code, _, err) = rlal(&["import", "graphs/tf2onnx/nhwc_extra_inputs.onnx"]);
    assert_eq!(code, 2, "{err}");
    for want in [
        "'normalization/sub/y:0' [1,1,1,1] float32",
        "'normalization/Sqrt/x:0' [1,1,1,1] float32",
        "--bind NAME=v1,v2,…",
    ] {
        assert!(err.contains(want), "{want}: {err}");
    }
    assert_eq!(err.matches("besides the images").count(), 1, "said once: {err}");
    // An input with an initializer of its name is a constant, not one of them.
    assert!(!err.contains("rescaling/scale:0"), "{err}");
    let bind = [format!("{MEAN}=0.1307"), format!("{VAR}=0.0949")];
    let args = |extra: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        v.extend(["--bind".into(), bind[0].clone(), "--bind".into(), bind[1].clone()]);
        v
    };
    let a = args(&["import", "graphs/tf2onnx/nhwc_extra_inputs.onnx", "--json"]);
    let r = json(&a.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(r["input_layout"], "nhwc");
    let (code, _, err) = rlal(&[
        "import",
        "graphs/tf2onnx/nhwc_extra_inputs.onnx",
        "--bind",
        &format!("{MEAN}=1,2"),
    ]);
    assert_eq!(code, 2);
    assert!(err.contains("2 values given, the input [1,1,1,1] holds 1"), "{err}");
    // Bound, the model exports and validates in ONNX Runtime and tract with one input.
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("p.onnx");
    let o = out.to_str().unwrap();
    let a = args(&[
        "export",
        o,
        "--model",
        "graphs/tf2onnx/nhwc_extra_inputs.onnx",
        "--uniform",
        "0.5",
    ]);
    let mut a: Vec<&str> = a.iter().map(String::as_str).collect();
    a.extend(["--runs", "2", "--warmup", "1", "--batch", "4", "--json"]);
    let rep = json(&a);
    assert!(rep["validation"]["max_diff_masked"].as_f64().unwrap() < 1e-4, "{rep}");
    assert_nhwc_interface(&out);
    // In the file: the images' input alone; the bound values and the constant that
    // the source listed as an input too are initializers only.
    let m = rlal::onnx::pb::ModelProto::decode(&std::fs::read(&out).unwrap()[..]).unwrap();
    let gp = m.graph.unwrap();
    let names = |v: &[rlal::onnx::pb::ValueInfoProto]| -> Vec<String> {
        v.iter().map(|i| i.name.clone().unwrap_or_default()).collect()
    };
    assert_eq!(names(&gp.input), ["input_1"]);
    let inits: Vec<_> = gp.initializer.iter().filter_map(|t| t.name.as_deref()).collect();
    for name in [MEAN, VAR, "rescaling/scale:0"] {
        assert!(inits.contains(&name), "{name}: {inits:?}");
    }
}

/// A folder of random RGB 16x16 images (two classes): three channels that differ, so
/// a layout mix-up changes what a model computes.
fn rgb_folder(root: &Path) {
    let mut rng = rlal::rng::Rng::new(3);
    for split in ["train", "val"] {
        for class in ["a", "b"] {
            let d = root.join(split).join(class);
            std::fs::create_dir_all(&d).unwrap();
            for i in 0..4 {
                let img = image::RgbImage::from_fn(16, 16, |_, _| {
                    image::Rgb([rng.below(256) as u8, rng.below(256) as u8, rng.below(256) as u8])
                });
                img.save(d.join(format!("{i}.png"))).unwrap();
            }
        }
    }
}

#[test]
fn images_reach_a_channels_last_model_as_its_nchw_twin_sees_them() {
    let dir = tempfile::tempdir().unwrap();
    rgb_folder(dir.path());
    let mut logits = Vec::new();
    for (file, layout) in [("cnn_nhwc_rgb", Layout::Nhwc), ("cnn_nchw_rgb", Layout::Nchw)] {
        let (g, an) =
            import(Path::new(&format!("graphs/{file}.onnx")), &ImportOptions::default()).unwrap();
        let input = setup::model_input(&g, &an).unwrap();
        assert_eq!((input.layout, input.chw()), (layout, [3, 16, 16]));
        let t = Training { batch_size: 8, ..Training::default() };
        let (_, _, test) = setup::loaders(&t, 0, dir.path(), input, None).unwrap();
        let b = test.batch(0, 0).unwrap();
        let mut net = rlal::train::Net::new(&g, &an, tch::Device::Cpu).unwrap();
        let mut ort =
            rlal::validate::open(&rlal::onnx::to_bytes(&g), 1, Default::default()).unwrap();
        use rlal::validate::Runner;
        let a = net.run(&b.shape, b.data.clone()).unwrap().remove(0).1;
        let o = ort.run(&b.shape, b.data).unwrap().remove(0).1;
        assert!(a.iter().zip(&o).all(|(x, y)| (x - y).abs() < 1e-4), "{file}: tch vs ORT");
        logits.push(a);
    }
    let d = logits[0].iter().zip(&logits[1]).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max);
    assert!(d < 1e-4, "NHWC and NCHW twins differ by {d}");
}

/// A tiny prune recipe for the channels-last ResNet on the MNIST 5k subset.
const TINY: &str = "model: graphs/resnet_nhwc_mnist.onnx\ndata: data/mnist5k\nmacs-ratio: 0.6\nchannel-multiple: 4\nsearch:\n  weights-only-epochs: 1\n  buffer-epochs: 1\n  agent-epochs: 2\n  episodes-per-epoch: 2\n  reward-samples: 200\nfinetune:\n  epochs: 1\nagent:\n  updates-per-epoch: 5\n  batch-size: 16\ntraining:\n  epochs: 3\n  batch-size: 64\n  lr: 0.05\n  mean: [0.1307]\n  std: [0.3081]\n  threads: 2\n  train-samples: 1500\n  eval-every: 0\n";

#[test]
fn a_channels_last_model_trains_prunes_and_keeps_its_interface() {
    let dir = tempfile::tempdir().unwrap();
    let recipe = dir.path().join("tiny.yaml");
    std::fs::write(&recipe, TINY).unwrap();
    let run = dir.path().join("run");
    let (code, out, err) = rlal(&[
        "prune",
        "--recipe",
        recipe.to_str().unwrap(),
        "--run-dir",
        run.to_str().unwrap(),
        "-q",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("pruned model"), "{out}");
    let pruned = run.join("pruned.onnx");
    assert_nhwc_interface(&pruned);
    assert_nhwc_interface(&run.join("unpruned.onnx"));
    let rep: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("report.json")).unwrap()).unwrap();
    let acc = rep["accuracy"].as_f64().unwrap();
    // 3 short epochs on 1,500 images: above chance (10%); the layout itself is checked
    // on three channels by images_reach_a_channels_last_model_as_its_nchw_twin_sees_them.
    assert!(acc > 0.2, "pruned accuracy {acc}");
    let eval = json(&[
        "eval",
        pruned.to_str().unwrap(),
        "--data",
        "data/mnist5k",
        "--engine",
        "ort",
        "--mean",
        "0.1307",
        "--std",
        "0.3081",
        "--json",
    ]);
    assert!((eval["accuracy"].as_f64().unwrap() - acc).abs() < 0.01, "{eval} vs {acc}");
    // rlal train on the same model writes the same interface.
    let trained = dir.path().join("t.onnx");
    let (code, out, err) = rlal(&[
        "train",
        "graphs/resnet_nhwc_mnist.onnx",
        "--data",
        "data/mnist5k",
        "--epochs",
        "1",
        "-o",
        trained.to_str().unwrap(),
        "-q",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("test accuracy"), "{out}");
    assert_nhwc_interface(&trained);
}
