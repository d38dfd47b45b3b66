//! Masks have exact removal semantics: a masked forward equals the forward of
//! the same graph with the masked channels' producing weights zeroed and their
//! BN scale/shift set to 0 (so the channels are exactly 0 where consumed).
use rlal::analysis::{import, ImportOptions};
use rlal::ir::Data;
use rlal::train::Net;
use std::collections::BTreeMap;
use std::path::Path;
use tch::{Device, Kind, Tensor};

fn check(path: &str) {
    tch::set_num_threads(2);
    let (g, a) = import(Path::new(path), &ImportOptions::default()).unwrap();
    let mut net = Net::new(&g, &a, Device::Cpu).unwrap();
    let groups = net.prunable_groups();
    assert!(!groups.is_empty(), "{path}: no prunable groups");
    // Drop every third channel (and channel 1) of every prunable group.
    let keep: BTreeMap<usize, Vec<bool>> = groups
        .iter()
        .map(|&(id, c)| (id, (0..c).map(|i| i % 3 != 0 && i != 1).collect()))
        .collect();
    // Reference graph: zero the producing parameters of the dropped channels.
    let mut z = g.clone();
    let consumers = g.consumers();
    for (&id, k) in &keep {
        for gp in net.group_params(id).iter().filter(|gp| gp.producing) {
            let v = g.value_id(&gp.name).unwrap();
            let (node, slot) = consumers[v][0];
            if g.nodes[node].op_type == "BatchNormalization" && slot > 2 {
                continue; // running statistics stay
            }
            let t = z.values[v].init.as_mut().unwrap();
            let inner: usize = t.shape[gp.axis + 1..].iter().product();
            let dim = t.shape[gp.axis];
            let Data::F32(d) = &mut t.data else { panic!("f32 params") };
            for (c, kept) in k.iter().enumerate() {
                if !kept {
                    for &i in &gp.idx[c] {
                        for (j, x) in d.iter_mut().enumerate() {
                            if (j / inner) % dim == i {
                                *x = 0.0;
                            }
                        }
                    }
                }
            }
        }
    }
    let zeroed = Net::new(&z, &a, Device::Cpu).unwrap();
    let mut rng = rlal::rng::Rng::new(3);
    let x: Vec<f32> = (0..2 * 3 * 32 * 32).map(|_| rng.normal_f32()).collect();
    let x = Tensor::from_slice(&x).reshape([2, 3, 32, 32]);
    let full = tch::no_grad(|| net.forward_t(&x, false)).unwrap();
    net.set_masks(&keep).unwrap();
    let masked = tch::no_grad(|| net.forward_t(&x, false)).unwrap();
    let want = tch::no_grad(|| zeroed.forward_t(&x, false)).unwrap();
    let diff = (&masked - &want).abs().max().double_value(&[]);
    let scale = want.abs().max().double_value(&[]).max(1.0);
    assert!(diff <= 1e-4 * scale, "{path}: masked vs zeroed differ by {diff}");
    assert!(
        (&full - &masked).abs().max().double_value(&[]) > 1e-3,
        "{path}: masks changed nothing"
    );
    // Norms and the penalty.
    let (g0, c0) = groups[0];
    let l1 = net.channel_norms(g0, 1).unwrap();
    assert_eq!(l1.len(), c0);
    assert!(l1.iter().all(|v| *v > 0.0));
    let pen = net.group_lasso();
    assert!(pen.double_value(&[]) > 0.0 && pen.requires_grad());
    // The batched penalty is the per-channel formula, in value and in every gradient.
    let naive = {
        let mut total = Tensor::zeros([], (Kind::Float, Device::Cpu));
        for (&id, k) in &keep {
            for (c, _) in k.iter().enumerate().filter(|(_, kept)| !**kept) {
                let mut s = Tensor::zeros([], (Kind::Float, Device::Cpu));
                for gp in net.group_params(id).iter().filter(|gp| gp.producing) {
                    let Some(t) = net.param(&gp.name) else { continue };
                    if t.requires_grad() {
                        let ids: Vec<i64> = gp.idx[c].iter().map(|&i| i as i64).collect();
                        s += t
                            .index_select(gp.axis as i64, &Tensor::from_slice(&ids))
                            .square()
                            .sum(Kind::Float);
                    }
                }
                total += (s + 1e-12).sqrt();
            }
        }
        total
    };
    let (a, b) = (pen.double_value(&[]), naive.double_value(&[]));
    assert!((a - b).abs() <= 1e-5 * b.abs(), "{path}: penalty {a} vs per-channel {b}");
    let grads = |loss: &Tensor| -> Vec<Tensor> {
        let params: Vec<Tensor> = net.trainable().into_iter().map(|(_, t)| t).collect();
        let g = Tensor::run_backward(&[loss], &params, true, false);
        g.into_iter()
            .zip(&params)
            .map(|(g, p)| if g.defined() { g.copy() } else { p.zeros_like() })
            .collect()
    };
    let (ga, gb) = (grads(&pen), grads(&naive));
    let mut touched = 0;
    for (x, y) in ga.iter().zip(&gb) {
        let d = (x - y).abs().max().double_value(&[]);
        assert!(
            d <= 1e-5 * y.abs().max().double_value(&[]).max(1e-6),
            "{path}: gradients differ by {d}"
        );
        touched += (y.abs().max().double_value(&[]) > 0.0) as usize;
    }
    assert!(touched > 0, "{path}: the penalty reaches no parameter");
    pen.backward();
    net.clear_masks();
    let again = tch::no_grad(|| net.forward_t(&x, false)).unwrap();
    assert_eq!((&full - &again).abs().max().double_value(&[]), 0.0);
    assert_eq!(net.group_lasso().double_value(&[]), 0.0);
}

#[test]
fn resnet_masks_equal_removal() {
    check("graphs/resnet20_cifar_bn.onnx");
    check("graphs/resnet20_cifar.onnx");
}

#[test]
fn mobilenetv2_masks_equal_removal() {
    check("graphs/mobilenetv2_cifar_bn.onnx");
}

#[test]
fn bad_masks_are_errors() {
    let (g, a) = import(Path::new("graphs/mnist_cnn.onnx"), &ImportOptions::default()).unwrap();
    let mut net = Net::new(&g, &a, Device::Cpu).unwrap();
    let (id, c) = net.prunable_groups()[0];
    let e =
        net.set_masks(&[(id, vec![true; c + 1])].into_iter().collect()).unwrap_err().to_string();
    assert!(e.contains(&format!("group {id}")), "{e}");
    let e = net.set_masks(&[(9999, vec![true])].into_iter().collect()).unwrap_err().to_string();
    assert!(e.contains("9999"), "{e}");
}
