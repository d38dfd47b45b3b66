//! Forward parity: rlal's tch executor (eval mode) equals ONNX Runtime on every
//! reference graph (BN kept, BN folded, dynamo exports), on the same random input.
use rlal::analysis::{import, Analysis, ImportOptions};
use rlal::ir::Graph;
use rlal::rewrite::{rank, surgery};
use rlal::train::Net;
use rlal::validate::ort::OrtModel;
use rlal::validate::Runner;
use std::path::Path;

fn random_input(shape: &[usize], seed: u64) -> Vec<f32> {
    let mut rng = rlal::rng::Rng::new(seed);
    (0..shape.iter().product::<usize>()).map(|_| rng.normal_f32()).collect()
}

fn check(path: &Path, batch: usize) {
    let (g, a) = import(path, &ImportOptions::default()).unwrap();
    compare(&g, &a, &std::fs::read(path).unwrap(), batch, &path.display().to_string());
}

/// Our output of `g` (analysed as `a`) against ONNX Runtime's of `bytes`; returns ours.
fn compare(g: &Graph, a: &Analysis, bytes: &[u8], batch: usize, label: &str) -> Vec<f32> {
    let input = &a.facts[g.inputs[0]].as_ref().unwrap();
    let shape = input.concrete(batch);
    let x = random_input(&shape, 11);
    let mut net = Net::new(g, a, tch::Device::Cpu).unwrap();
    let ours = net.run(&shape, x.clone()).unwrap();
    let mut ort = OrtModel::from_bytes(bytes, 2).unwrap();
    let theirs = ort.run(&shape, x).unwrap();
    assert_eq!(ours.len(), theirs.len(), "{label}");
    for ((s1, d1), (s2, d2)) in ours.iter().zip(&theirs) {
        assert_eq!(s1, s2, "{label}: output shapes");
        assert!(d1.iter().chain(d2).all(|v| v.is_finite()), "{label}: non-finite outputs");
        let scale = d2.iter().fold(1f32, |m, v| m.max(v.abs()));
        let diff = d1.iter().zip(d2).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
        assert!(diff <= 1e-4 * scale, "{label}: max abs diff {diff} (output scale {scale})");
    }
    ours.into_iter().next().unwrap().1
}

#[test]
fn every_reference_graph_matches_onnx_runtime() {
    tch::set_num_threads(2);
    let mut n = 0;
    let mut files: Vec<_> = std::fs::read_dir("graphs")
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "onnx"))
        .collect();
    files.sort();
    for p in files {
        check(&p, 3);
        n += 1;
    }
    assert!(n >= 17, "found only {n} graphs");
}

#[test]
#[ignore = "ImageNet-size graphs: slow on CPU; run with --ignored"]
fn imagenet_graphs_match_onnx_runtime() {
    for f in ["resnet18", "mobilenetv2", "resnet50"] {
        let p = format!("graphs/imagenet/{f}.onnx.gz");
        let (g, a) = import(Path::new(&p), &ImportOptions::default()).unwrap();
        let shape = a.facts[g.inputs[0]].as_ref().unwrap().concrete(1);
        let x = random_input(&shape, 5);
        let mut net = Net::new(&g, &a, tch::Device::Cpu).unwrap();
        let ours = net.run(&shape, x.clone()).unwrap();
        let mut ort = OrtModel::from_bytes(&rlal::onnx::to_bytes(&g), 2).unwrap();
        let theirs = ort.run(&shape, x).unwrap();
        let scale = theirs[0].1.iter().fold(1f32, |m, v| m.max(v.abs()));
        let diff = ours[0].1.iter().zip(&theirs[0].1).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
        assert!(diff <= 1e-4 * scale, "{p}: {diff}");
    }
}

#[test]
fn unsupported_op_names_the_node() {
    let (mut g, a) = import(Path::new("graphs/mnist_cnn.onnx"), &ImportOptions::default()).unwrap();
    g.nodes[1].op_type = "FancyOp".into();
    let err = Net::new(&g, &a, tch::Device::Cpu).err().expect("must fail").to_string();
    assert!(
        err.contains("FancyOp") && err.contains(&g.nodes[1].name) && err.contains("Conv"),
        "{err}"
    );
}

const OPS_CNN: [&str; 3] =
    ["graphs/ops_cnn.onnx", "graphs/ops_cnn_bn.onnx", "graphs/ops_cnn_dynamo.onnx"];

#[test]
fn ops_cnn_runs_its_less_common_ops_like_onnx_runtime() {
    tch::set_num_threads(2);
    for f in OPS_CNN {
        let (g, a) = import(Path::new(f), &ImportOptions::default()).unwrap();
        for op in [
            "ConvTranspose",
            "Split",
            "Squeeze",
            "Unsqueeze",
            "MatMul",
            "Softmax",
            "Sub",
            "Div",
            "Mul",
            "ReduceMean",
            "Sigmoid",
        ] {
            assert!(g.nodes.iter().any(|n| n.op_type == op), "{f}: no {op} left after import");
        }
        for batch in [1, 4] {
            let y = compare(&g, &a, &std::fs::read(f).unwrap(), batch, f);
            // Softmax over 10 classes: every row sums to 1.
            for row in y.chunks(10) {
                assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-5, "{f}: row {row:?}");
            }
        }
    }
}

#[test]
fn pruned_ops_cnn_runs_like_onnx_runtime() {
    tch::set_num_threads(2);
    for f in OPS_CNN {
        let (g, a) = import(Path::new(f), &ImportOptions::default()).unwrap();
        let keep = rank::keep_sets(&g, &a, &[0.5, 0.5, 0.5, 0.25], rank::Criterion::L1);
        let p = surgery::prune(&g, &a, &keep, None).unwrap();
        // The executor sees sliced weights: ConvTranspose 8x4 -> 4x2, a [4, 4] Split.
        let ct = p.graph.nodes.iter().find(|n| n.op_type == "ConvTranspose").unwrap();
        assert_eq!(
            p.graph.values[ct.inputs[1].unwrap()].init.as_ref().unwrap().shape,
            [4, 2, 2, 2]
        );
        let split = p.graph.nodes.iter().find(|n| n.op_type == "Split").unwrap();
        let sizes = p.graph.values[split.inputs[1].unwrap()].init.as_ref().unwrap();
        assert_eq!(sizes.to_i64().unwrap(), [4, 4], "{f}");
        let label = format!("{f} pruned");
        compare(&p.graph, &p.analysis, &rlal::onnx::to_bytes(&p.graph), 3, &label);
    }
}
