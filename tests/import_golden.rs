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
}

#[test]
fn every_graph_matches_the_independent_counter() {
    let g = golden();
    let mut checked = 0;
    for (name, entry) in g.as_object().unwrap() {
        for f in entry["files"].as_array().unwrap() {
            let f = f.as_str().unwrap();
            let rel = if f.contains('/') {
                format!("graphs/{f}")
            } else if root().join("graphs").join(f).exists() {
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
    assert!(checked >= 17, "only {checked} files listed in golden.json");
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
