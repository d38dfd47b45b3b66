//! InstanceNormalization end to end on graphs/instnorm_cnn.onnx (tools/make_instnorm_graph.py):
//! cost, channel groups, surgery (scale and bias pruned with their input's channels),
//! the libtorch kernel against ONNX Runtime before and after pruning, and training
//! gradients through the kernel.
use rlal::analysis::{import, Analysis, ImportOptions};
use rlal::ir::Graph;
use rlal::rewrite::{rank, surgery};
use rlal::train::Net;
use rlal::validate::ort::OrtModel;
use rlal::validate::Runner;
use std::path::Path;

const GRAPH: &str = "graphs/instnorm_cnn.onnx";

fn input(shape: &[usize]) -> Vec<f32> {
    let mut rng = rlal::rng::Rng::new(7);
    (0..shape.iter().product::<usize>()).map(|_| rng.normal_f32()).collect()
}

/// The shape of the initializer in input `slot` of every InstanceNormalization.
fn norm_params(g: &Graph, slot: usize) -> Vec<Vec<usize>> {
    let norms = g.nodes.iter().filter(|n| n.op_type == "InstanceNormalization");
    norms.map(|n| g.values[n.inputs[slot].unwrap()].init.as_ref().unwrap().shape.clone()).collect()
}

/// rlal's libtorch output of `g` against ONNX Runtime's, batch 3.
fn assert_tch_matches_ort(g: &Graph, a: &Analysis, label: &str) {
    let shape = a.facts[g.inputs[0]].as_ref().unwrap().concrete(3);
    let x = input(&shape);
    let mut net = Net::new(g, a, tch::Device::Cpu).unwrap();
    let ours = net.run(&shape, x.clone()).unwrap().remove(0).1;
    let mut ort = OrtModel::from_bytes(&rlal::onnx::to_bytes(g), 1).unwrap();
    let theirs = ort.run(&shape, x).unwrap().remove(0).1;
    assert_eq!(ours.len(), theirs.len(), "{label}");
    let diff = ours.iter().zip(&theirs).fold(0f32, |m, (p, q)| m.max((p - q).abs()));
    let scale = theirs.iter().fold(1f32, |m, v| m.max(v.abs()));
    assert!(diff <= 1e-4 * scale, "{label}: max abs diff {diff} (scale {scale})");
}

#[test]
fn instance_norm_costs_ties_and_prunes_with_its_input() {
    tch::set_num_threads(2);
    let (g, a) = import(Path::new(GRAPH), &ImportOptions::default()).unwrap();
    // By hand: conv1 12*12*8 * 9 + conv2 6*6*16 * 72 + Gemm 16*10; see the generator.
    assert_eq!(a.cost.full_macs(), 10_368 + 41_472 + 160);
    assert_eq!(a.cost.full_params(), 72 + 8 + 16 + 1152 + 16 + 32 + 160 + 10);
    assert_eq!(a.layers.iter().map(|l| l.channels).collect::<Vec<_>>(), [8, 16]);
    assert_tch_matches_ort(&g, &a, GRAPH);

    let keep = rank::keep_sets(&g, &a, &[0.5, 0.75], rank::Criterion::L1);
    let p = surgery::prune(&g, &a, &keep, None).unwrap();
    assert_eq!(norm_params(&p.graph, 1), [[4], [4]], "scales follow their input's channels");
    assert_eq!(norm_params(&p.graph, 2), [[4], [4]], "biases follow their input's channels");
    assert_eq!(p.macs_after, 12 * 12 * 4 * 9 + 6 * 6 * 4 * 36 + 4 * 10);
    assert_tch_matches_ort(&p.graph, &p.analysis, "pruned");
    // The pruned graph computes what the original does with those channels masked.
    let masked = surgery::mask(&g, &a, &p.plan);
    let shape = a.facts[g.inputs[0]].as_ref().unwrap().concrete(2);
    let run = |g: &Graph| {
        let mut m = OrtModel::from_bytes(&rlal::onnx::to_bytes(g), 1).unwrap();
        m.run(&shape, input(&shape)).unwrap().remove(0).1
    };
    let (want, got) = (run(&masked), run(&p.graph));
    let diff = want.iter().zip(&got).fold(0f32, |m, (p, q)| m.max((p - q).abs()));
    assert!(diff <= 1e-4, "pruned vs masked: {diff}");
}

#[test]
fn instance_norm_trains_its_scale_and_bias() {
    tch::set_num_threads(2);
    let (g, a) = import(Path::new(GRAPH), &ImportOptions::default()).unwrap();
    let net = Net::new(&g, &a, tch::Device::Cpu).unwrap();
    let names: Vec<String> = net.trainable().into_iter().map(|(n, _)| n).collect();
    assert!(names.iter().any(|n| n == "in1_weight") && names.iter().any(|n| n == "in2_bias"));
    let x = tch::Tensor::from_slice(&input(&[2, 1, 12, 12])).reshape([2, 1, 12, 12]);
    let y = net.forward_t(&x, true).unwrap();
    y.square().sum(tch::Kind::Float).backward();
    let scale = net.param("in1.weight").unwrap();
    assert!(scale.grad().abs().sum(tch::Kind::Float).double_value(&[]) > 0.0);
}
