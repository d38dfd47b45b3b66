//! Golden figures: `rlal import` reproduces the MACs/params that an independent
//! counter (PyTorch forward hooks on the source modules, tools/make_graphs.py →
//! graphs/golden.json) measured, for every graph in graphs/, and the paper's
//! reference figures; and it finds exactly the prunable groups RLAL prunes.
use rlal::analysis::{import, Analysis, ImportOptions};
use rlal::ir::Graph;
use std::path::PathBuf;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn load(rel: &str) -> (Graph, Analysis) {
    import(&root().join(rel), &ImportOptions::default()).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn golden() -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(root().join("graphs/golden.json")).unwrap())
        .unwrap()
}

#[test]
fn reference_figures_are_in_the_golden_table() {
    // Figures quoted by the paper's tables / torchvision, checked against the independent counter.
    let g = golden();
    assert_eq!(g["resnet56_cifar"]["macs"], 125_485_696u64);
    assert_eq!(g["resnet56_cifar"]["params"], 853_018u64);
    assert_eq!(g["resnet20_cifar"]["macs"], 40_551_040u64);
    assert_eq!(g["resnet18"]["macs"], 1_814_073_344u64);
    assert_eq!(g["mobilenetv2"]["macs"], 300_774_272u64);
    // ops_cnn by hand (1x16x16): conv1 16*16*8 * 1*9 + conv2 8*8*16 * 8*9 + ConvTranspose
    // (input 8*8*8) * 4*2*2 + down 8*8*8 * 4*9 + conv3 8*8*16 * 8*9 + MatMul 10 * 16.
    let ops = 16 * 16 * 8 * 9 + 8 * 8 * 16 * 72 + 8 * 8 * 8 * 16 + 8 * 8 * 8 * 36 + 8 * 8 * 16 * 72;
    assert_eq!(g["ops_cnn"]["macs"], ops + 160u64);
    // Weights 72 + 1152 + 128 + 288 + 1152 + 160, ConvTranspose bias 4, BN scale+bias 2 * 48.
    assert_eq!(g["ops_cnn"]["params"], 2952 + 4 + 96u64);
}

#[test]
fn every_graph_matches_the_independent_counter() {
    let g = golden();
    let mut checked = 0;
    for (name, entry) in g.as_object().unwrap() {
        for f in entry["files"].as_array().unwrap() {
            let f = f.as_str().unwrap();
            let rel = if f.contains('/') || root().join("graphs").join(f).exists() {
                format!("graphs/{f}")
            } else {
                format!("graphs/imagenet/{f}")
            };
            let (_, a) = load(&rel);
            assert_eq!(
                a.cost.full_macs(),
                entry["macs"].as_u64().unwrap(),
                "{name}: MACs of {rel}"
            );
            let key = if f.contains("_bn.") { "params" } else { "params_folded" };
            assert_eq!(
                a.cost.full_params(),
                entry[key].as_u64().unwrap(),
                "{name}: {key} of {rel}"
            );
            checked += 1;
        }
    }
    assert!(checked >= 20, "only {checked} files listed in golden.json");
}

/// Values produced by residual Adds are never in a prunable group.
fn assert_no_residual_prunable(g: &Graph, a: &Analysis) {
    let producers = g.producers();
    for gr in a.groups.iter().filter(|gr| gr.prunable) {
        for (v, _) in &gr.members {
            if let Some(p) = producers[*v] {
                assert_ne!(
                    g.nodes[p].op_type, "Add",
                    "group {} carries the residual value {}",
                    gr.id, g.values[*v].name
                );
            }
        }
    }
}

#[test]
fn resnet56_prunes_the_inner_channels_of_all_27_blocks() {
    for f in ["graphs/resnet56_cifar_bn.onnx", "graphs/resnet56_cifar.onnx"] {
        let (g, a) = load(f);
        assert_eq!(a.layers.len(), 27, "{f}");
        for (i, l) in a.layers.iter().enumerate() {
            let (stage, block) = (i / 9 + 1, i % 9);
            assert!(
                l.name.contains(&format!("layer{stage}.{block}/conv1")),
                "{f}: layer {i} is {}",
                l.name
            );
            assert_eq!(l.consumers.len(), 1);
            assert!(
                l.consumers[0].contains(&format!("layer{stage}.{block}/conv2")),
                "{f}: {:?}",
                l.consumers
            );
            assert_eq!(l.channels, 16 << (stage - 1));
            assert_eq!(l.stride, if block == 0 && stage > 1 { 2 } else { 1 });
            assert_eq!(l.kernel, 3);
        }
        assert_no_residual_prunable(&g, &a);
        // The residual streams are reported as fixed with the reason.
        assert!(a
            .groups
            .iter()
            .any(|gr| !gr.prunable && gr.reason.as_deref().unwrap_or("").contains("residual Add")));
    }
}

#[test]
fn mobilenetv2_prunes_the_hidden_channels_of_all_17_blocks() {
    for f in [
        "graphs/mobilenetv2_cifar_bn.onnx",
        "graphs/mobilenetv2_cifar.onnx",
        "graphs/mobilenetv2_cifar_dynamo.onnx",
        "graphs/imagenet/mobilenetv2.onnx.gz",
    ] {
        let (g, a) = load(f);
        let depthwise: Vec<usize> = (0..g.nodes.len())
            .filter(|&n| {
                g.nodes[n].op_type == "Conv" && g.nodes[n].attr_int("group", 1).unwrap() > 1
            })
            .collect();
        assert_eq!(depthwise.len(), 17, "{f}");
        for (b, dw) in depthwise.iter().enumerate() {
            let gr = a
                .groups
                .iter()
                .find(|gr| gr.passes.contains(dw))
                .unwrap_or_else(|| panic!("{f}: no group through block {b}'s depthwise conv"));
            assert!(gr.prunable, "{f}: block {b} hidden group fixed: {:?}", gr.reason);
            assert_eq!(gr.producers.len(), 1);
            let p = &g.nodes[gr.producers[0]];
            let w = a.facts[p.inputs[1].unwrap()].as_ref().unwrap().concrete(1);
            if b == 0 {
                assert_eq!(w[2], 3, "{f}: block 0's group starts at the 3x3 stem conv");
            } else {
                assert_eq!(w[2], 1, "{f}: block {b}'s group starts at its 1x1 expansion conv");
            }
            assert!(a.layers.iter().any(|l| l.group == gr.id));
        }
        assert_no_residual_prunable(&g, &a);
    }
}

#[test]
fn flatten_gemm_consumer_is_prunable_in_the_mnist_cnn() {
    let (g, a) = load("graphs/mnist_cnn_bn.onnx");
    assert_eq!(a.layers.len(), 3);
    let last = &a.layers[2];
    assert!(last
        .consumers
        .iter()
        .any(|c| g.nodes.iter().any(|n| &n.name == c && n.op_type == "Gemm")));
    // Pruning k of the 32 channels removes k*7*7 Gemm inputs: MACs are linear in kept channels.
    let mut kept = a.cost.full.clone();
    let full = a.cost.macs(&kept);
    kept[last.group] -= 1;
    let one_less = a.cost.macs(&kept);
    // conv3: 7*7*32*9 per out channel; Gemm: 10*49 per input channel.
    assert_eq!(full - one_less, 7 * 7 * 32 * 9 + 10 * 49);
}

/// The op types of `nodes`, sorted, each once.
fn ops_of(g: &Graph, nodes: &[usize]) -> Vec<String> {
    let mut v: Vec<String> = nodes.iter().map(|&n| g.nodes[n].op_type.clone()).collect();
    v.sort();
    v.dedup();
    v
}

#[test]
fn ops_cnn_prunes_through_split_conv_transpose_arithmetic_and_the_se_gate() {
    for f in ["graphs/ops_cnn.onnx", "graphs/ops_cnn_bn.onnx", "graphs/ops_cnn_dynamo.onnx"] {
        let (g, a) = load(f);
        assert_eq!(a.layers.len(), 4, "{f}");
        let group = |i: usize| &a.groups[a.layers[i].group];
        let producers: Vec<Vec<String>> = (0..4).map(|i| ops_of(&g, &group(i).producers)).collect();
        assert_eq!(
            producers,
            [vec!["Conv"], vec!["Conv"], vec!["ConvTranspose"], vec!["Conv"]],
            "{f}"
        );
        // conv1 -> conv2.
        assert_eq!(group(0).channels, 8);
        // conv2's 16 outputs split 8 + 8 and multiplied channel by channel (GLU), times the
        // down conv's 8 outputs, through Sub/Div by per-channel constants; read by the
        // ConvTranspose and conv3.
        let g1 = group(1);
        assert_eq!((g1.channels, g1.producers.len()), (8, 2), "{f}");
        assert_eq!(ops_of(&g, &g1.consumers), ["Conv", "ConvTranspose"], "{f}");
        let passes = ops_of(&g, &g1.passes);
        for op in ["Split", "Sigmoid", "Mul", "Sub", "Div"] {
            assert!(passes.iter().any(|p| p == op), "{f}: {op} not in {passes:?}");
        }
        let split = g.nodes.iter().find(|n| n.op_type == "Split").unwrap();
        let (_, per) = g1.members.iter().find(|(v, _)| Some(*v) == split.inputs[0]).unwrap();
        assert_eq!(per[0], vec![0, 8], "{f}: group channel 0 is split-input channels 0 and 8");
        assert_eq!(per[7], vec![7, 15], "{f}");
        // The Sub and Div constants [1, 8, 1, 1] are sliced with the group.
        let sliced: Vec<&str> = g1
            .params
            .iter()
            .map(|p| g.nodes[p.node].op_type.as_str())
            .filter(|op| ["Sub", "Div"].contains(op))
            .collect();
        assert_eq!(sliced.len(), 2, "{f}: {sliced:?}");
        // ConvTranspose -> down conv.
        assert_eq!((group(2).channels, ops_of(&g, &group(2).consumers)), (4, vec!["Conv".into()]));
        // Its 2x2 kernel and stride 2 are the ConvTranspose's own; conv2's group is read
        // by it too (kernel 3 from conv2 and conv3 still the largest).
        let features = |i: usize| (a.layers[i].kernel, a.layers[i].stride);
        assert_eq!(
            [features(0), features(1), features(2), features(3)],
            [(3, 1), (3, 2), (2, 2), (3, 1)],
            "{f}"
        );
        // conv3 -> SE gate -> MatMul head.
        let g3 = group(3);
        assert_eq!(g3.channels, 16);
        assert_eq!(ops_of(&g, &g3.consumers), ["MatMul"], "{f}");
        let passes = ops_of(&g, &g3.passes);
        for op in ["ReduceMean", "Squeeze", "Sigmoid", "Unsqueeze", "Mul"] {
            assert!(passes.iter().any(|p| p == op), "{f}: {op} not in {passes:?}");
        }
        // The classes: Softmax over them, then the graph output.
        assert!(a.groups.iter().any(|gr| !gr.prunable
            && gr.channels == 10
            && gr.reason.as_deref().unwrap_or("").contains("normalises over the channel axis")));
        // MACs per removed channel, counted by hand:
        let per_channel = [
            16 * 16 * 9 + 8 * 8 * 16 * 9, // conv1 out, conv2 in
            2 * 8 * 8 * 72 + 8 * 8 * 36 + 8 * 8 * 4 * 4 + 8 * 8 * 16 * 9, // conv2 x2, down, up in, conv3 in
            8 * 8 * 8 * 4 + 8 * 8 * 8 * 9,                                // up out, down in
            8 * 8 * 72 + 10,                                              // conv3 out, MatMul row
        ];
        for (i, want) in per_channel.into_iter().enumerate() {
            let mut kept = a.cost.full.clone();
            kept[a.layers[i].group] -= 1;
            assert_eq!(a.cost.full_macs() - a.cost.macs(&kept), want, "{f}: layer {i}");
        }
    }
}

/// A conv whose output is split along channels into two prunable branches that a
/// Concat joins again: one weight axis then follows two groups.
fn split_concat_graph() -> Graph {
    use rlal::ir::{Attr, DType, Dim, Node, Tensor, Value};
    let mut g = Graph::default();
    g.meta.opsets = vec![(String::new(), 13)];
    let value = |g: &mut Graph, name: &str, init: Option<Tensor>| {
        g.add_value(Value { name: name.into(), init, ..Default::default() })
    };
    let x = g.add_value(Value {
        name: "x".into(),
        dtype: Some(DType::F32),
        shape: Some(vec![Dim::Sym("N".into()), Dim::Fixed(1), Dim::Fixed(8), Dim::Fixed(8)]),
        ..Default::default()
    });
    g.inputs.push(x);
    let w = |shape: Vec<usize>| {
        let n = shape.iter().product();
        Some(Tensor::f32(shape, vec![0.1; n]))
    };
    let names = ["c1", "split_a", "split_b", "ra", "rb", "ya", "yb", "cat", "y"];
    let v: Vec<usize> = names.iter().map(|n| value(&mut g, n, None)).collect();
    let (w1, wa, wb, w2) = (
        value(&mut g, "w1", w(vec![8, 1, 3, 3])),
        value(&mut g, "wa", w(vec![4, 4, 3, 3])),
        value(&mut g, "wb", w(vec![4, 4, 3, 3])),
        value(&mut g, "w2", w(vec![2, 8, 1, 1])),
    );
    let sizes = value(&mut g, "sizes", Some(Tensor::i64_vec(vec![4, 4])));
    let pads = ("pads".to_string(), Attr::Ints(vec![1, 1, 1, 1]));
    let node = |name: &str, op: &str, i: &[usize], o: &[usize], attrs: Vec<(String, Attr)>| Node {
        name: name.into(),
        op_type: op.into(),
        inputs: i.iter().map(|&i| Some(i)).collect(),
        outputs: o.iter().map(|&o| Some(o)).collect(),
        attrs,
        ..Default::default()
    };
    g.nodes = vec![
        node("c1", "Conv", &[x, w1], &[v[0]], vec![pads.clone()]),
        node("split", "Split", &[v[0], sizes], &[v[1], v[2]], vec![("axis".into(), Attr::Int(1))]),
        node("ca", "Conv", &[v[1], wa], &[v[3]], vec![pads.clone()]),
        node("cb", "Conv", &[v[2], wb], &[v[4]], vec![pads]),
        node("relu_a", "Relu", &[v[3]], &[v[5]], vec![]),
        node("relu_b", "Relu", &[v[4]], &[v[6]], vec![]),
        node("cat", "Concat", &[v[5], v[6]], &[v[7]], vec![("axis".into(), Attr::Int(1))]),
        node("c2", "Conv", &[v[7], w2], &[v[8]], vec![]),
    ];
    g.outputs.push(v[8]);
    g
}

#[test]
fn split_and_concat_of_prunable_groups_count_every_weight() {
    let g = split_concat_graph();
    let facts = rlal::ir::infer::infer(&g, None).unwrap();
    let a = Analysis::new(&g, facts, vec![]);
    assert_eq!(a.layers.len(), 4, "c1's two halves, ca and cb are prunable");
    // By hand: c1 64*8 * 9, ca and cb 64*4 * 36 each, c2 64*2 * 8.
    assert_eq!(a.cost.full_macs(), 64 * 8 * 9 + 2 * 64 * 4 * 36 + 64 * 2 * 8);
    assert_eq!(a.cost.full_params(), 72 + 2 * 144 + 16);
    // Every weight axis shrinks with each group it follows: pruning one channel of c1's
    // first half removes c1's output channel and ca's input channel.
    let half = a.layers[0].group;
    let mut kept = a.cost.full.clone();
    kept[half] -= 1;
    assert_eq!(a.cost.full_macs() - a.cost.macs(&kept), 64 * 9 + 64 * 4 * 9);
    assert_eq!(a.cost.full_params() - a.cost.params(&kept), 9 + 4 * 9);
    // The layers' shares count every MAC once: all of them here.
    let shares: u64 = a.layers.iter().map(|l| l.macs_share).sum();
    assert_eq!(shares, a.cost.full_macs());
}
