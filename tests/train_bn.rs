//! insert-bn keeps the function (exactly-identity statistics); fold-bn after
//! training gives the same outputs as the BN-kept graph.
use rlal::analysis::{import, Analysis, ImportOptions};
use rlal::ir::bn::{fold_bn, insert_bn};
use rlal::train::Net;
use std::path::Path;
use tch::{Device, Tensor};

fn out(g: &rlal::ir::Graph, a: &Analysis, x: &Tensor) -> Tensor {
    tch::no_grad(|| Net::new(g, a, Device::Cpu).unwrap().forward_t(x, false).unwrap())
}

fn analyse(g: &rlal::ir::Graph) -> Analysis {
    Analysis::new(g, rlal::ir::infer::infer(g, None).unwrap(), vec![])
}

#[test]
fn insert_is_identity_and_fold_inverts_it() {
    let (mut g, a) =
        import(Path::new("graphs/resnet20_cifar.onnx"), &ImportOptions::default()).unwrap();
    let x = Tensor::randn([2, 3, 32, 32], (tch::Kind::Float, Device::Cpu));
    let before = out(&g, &a, &x);
    let n = insert_bn(&mut g, &a.facts);
    assert_eq!(n, 19);
    let a2 = analyse(&g);
    assert_eq!(
        a2.groups.iter().filter(|g| g.prunable).count(),
        a.groups.iter().filter(|g| g.prunable).count()
    );
    let with_bn = out(&g, &a2, &x);
    assert_eq!(
        (&before - &with_bn).abs().max().double_value(&[]),
        0.0,
        "identity BN must not change the function"
    );
    // Perturb BN statistics through a training-mode forward, then fold.
    let net = Net::new(&g, &a2, Device::Cpu).unwrap();
    let _ = net.forward_t(&(x.shallow_clone() * 3.0), true).unwrap();
    let trained = net.export().unwrap();
    let kept = out(&trained, &a2, &x);
    let mut folded = trained.clone();
    assert_eq!(fold_bn(&mut folded), 19);
    assert!(folded.nodes.iter().all(|n| n.op_type != "BatchNormalization"));
    let f = out(&folded, &analyse(&folded), &x);
    let scale = kept.abs().max().double_value(&[]).max(1.0);
    assert!((&kept - &f).abs().max().double_value(&[]) <= 1e-4 * scale);
}
