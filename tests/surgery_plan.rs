//! Plans: impossible keep-sets are errors naming the group; plans print.
use rlal::analysis::{import, ImportOptions};
use rlal::rewrite::{rank, surgery, KeepSets, Plan, RewriteError};
use std::path::PathBuf;

fn load(name: &str) -> (rlal::ir::Graph, rlal::analysis::Analysis) {
    import(
        &PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("graphs").join(name),
        &ImportOptions::default(),
    )
    .unwrap()
}

fn plan_err(name: &str, keep: KeepSets) -> String {
    let (g, a) = load(name);
    match Plan::build(&g, &a, &keep) {
        Err(e @ RewriteError::Plan { .. }) => e.to_string(),
        other => panic!("expected a plan error, got {other:?}"),
    }
}

#[test]
fn impossible_plans_name_the_group() {
    let (_, a) = load("resnet20_cifar_bn.onnx");
    let gid = a.layers[3].group;
    let e = plan_err("resnet20_cifar_bn.onnx", KeepSets::from([(gid, vec![])]));
    assert!(e.contains("layer 3 '/layer2/layer2.0/conv1/Conv'") && e.contains("empty"), "{e}");
    let e = plan_err("resnet20_cifar_bn.onnx", KeepSets::from([(gid, vec![0, 32])]));
    assert!(e.contains("layer 3") && e.contains("out of range"), "{e}");
    let e = plan_err("resnet20_cifar_bn.onnx", KeepSets::from([(gid, vec![1, 1, 2])]));
    assert!(e.contains("appears twice"), "{e}");
    let fixed = a.groups.iter().find(|g| !g.prunable).unwrap().id;
    let e = plan_err("resnet20_cifar_bn.onnx", KeepSets::from([(fixed, vec![0])]));
    assert!(e.contains("not prunable"), "{e}");
    let e = plan_err("resnet20_cifar_bn.onnx", KeepSets::from([(999, vec![0])]));
    assert!(e.contains("group 999"), "{e}");
}

#[test]
fn plan_prints_labels_and_edits() {
    let (g, a) = load("mobilenetv2_cifar_dynamo.onnx");
    let keep = rank::keep_sets(&g, &a, &vec![0.5; a.layers.len()], rank::Criterion::L1);
    let plan = Plan::build(&g, &a, &keep).unwrap();
    let text = plan.to_string();
    assert!(text.contains("layer 19 'node_Conv_912' (group"), "{text}");
    assert!(text.contains("1280 -> 640 channels"), "{text}");
    assert!(text.contains("set group of depthwise conv"), "{text}");
    // The dynamo Reshape hard-codes [-1, 1280]: rewritten.
    assert!(text.contains("reshape target of") && text.contains("[-1, 640]"), "{text}");
    // A plan that keeps everything changes nothing.
    let full: KeepSets =
        a.layers.iter().map(|l| (l.group, (0..a.groups[l.group].channels).collect())).collect();
    let p = surgery::prune(&g, &a, &full, None).unwrap();
    assert!(p.plan.is_empty());
    assert_eq!(p.macs_after, p.macs_before);
}

#[test]
fn mnist_flatten_gemm_rows_follow_channels() {
    let (g, a) = load("mnist_cnn.onnx");
    let keep = rank::keep_sets(&g, &a, &[0.0, 0.0, 0.75], rank::Criterion::L2);
    let p = surgery::prune(&g, &a, &keep, None).unwrap();
    let gemm = p.graph.nodes.iter().find(|n| n.op_type == "Gemm").unwrap();
    let w = p.graph.values[gemm.inputs[1].unwrap()].init.as_ref().unwrap();
    let full_w = g.values[g.nodes.iter().find(|n| n.op_type == "Gemm").unwrap().inputs[1].unwrap()]
        .init
        .as_ref()
        .unwrap();
    assert_eq!(
        w.shape[1] * 4,
        full_w.shape[1],
        "Gemm in-features shrink with the 32 -> 8 channels"
    );
}

#[test]
fn ops_cnn_plan_lists_split_sizes_and_every_sliced_tensor() {
    let (g, a) = load("ops_cnn.onnx");
    let keep = rank::keep_sets(&g, &a, &[0.0, 0.5, 0.5, 0.0], rank::Criterion::L1);
    let text = Plan::build(&g, &a, &keep).unwrap().to_string();
    assert!(text.contains("plan: 2 group(s) pruned"), "{text}");
    assert!(text.contains("layer 1 '/conv2/Conv' (group"), "{text}");
    assert!(
        text.contains("layer 2 '/up/ConvTranspose' (group") && text.contains("4 -> 2 channels")
    );
    assert!(text.contains("split sizes of '/Split' (Split): [8, 8] -> [4, 4]"), "{text}");
    // conv2 loses 8 of its 16 outputs (4 per half); the ConvTranspose both its axes.
    assert!(text.contains("slice 'up.weight' [8, 4, 2, 2] axis 0: 8 -> 4"), "{text}");
    assert!(text.contains("slice 'up.weight' [8, 4, 2, 2] axis 1: 4 -> 2"), "{text}");
    assert!(text.contains("slice 'up.bias' [4] axis 0: 4 -> 2"), "{text}");
    assert!(text.contains("axis 0: 16 -> 8"), "{text}");
    // The Sub and Div constants [1, 8, 1, 1] shrink with the group.
    assert_eq!(text.matches("[1, 8, 1, 1] axis 1: 8 -> 4").count(), 2, "{text}");
}

#[test]
fn ops_cnn_softmax_classes_cannot_be_pruned() {
    let (g, a) = load("ops_cnn.onnx");
    let logits = g.nodes.iter().find(|n| n.op_type == "MatMul").unwrap().outputs[0].unwrap();
    let classes = a.groups.iter().find(|gr| gr.members.iter().any(|(v, _)| *v == logits));
    let classes = classes.unwrap().id;
    let e = plan_err("ops_cnn.onnx", KeepSets::from([(classes, vec![0, 1])]));
    assert!(e.contains("not prunable") && e.contains("normalises over the channel axis"), "{e}");
}
