//! Data-statistics initialisation of inserted batch normalisation (a pretrained start).
//!
//! A trained model whose BN was folded has none to recalibrate, so a sub-network
//! (channels masked or cut) feeds every later layer activations of another scale and
//! scores at chance. BN inserted with identity parameters ([`crate::ir::bn::insert_bn`])
//! keeps the function in eval mode but not in train mode, where it normalises by the
//! batch's statistics. [`data_identity_bn`] gives each such BN the statistics of its
//! input on real images instead: running mean `μ`, running variance `σ²`, scale
//! `√(σ²+ε)` and bias `μ`. Then eval mode computes the identity exactly and train mode
//! nearly (batch statistics ≈ `μ`, `σ²`), so the given model's accuracy survives,
//! and adaptive BN can recalibrate every sub-network the search scores.
use super::net::Net;
use super::TrainError;
use crate::ir::{bn, NodeId, ValueId};
use tch::{Kind, Tensor};

/// Initialises every BatchNormalization still at [`bn::at_identity`] from its input's
/// per-channel statistics on `x` (one eval-mode forward); returns how many.
pub fn data_identity_bn(net: &Net, x: &Tensor) -> Result<usize, TrainError> {
    // The current weights and statistics, not the ones the network was built with.
    let now = net.export()?;
    let g = net.graph();
    let todo: Vec<(NodeId, ValueId)> = (0..g.nodes.len())
        .filter(|&n| bn::at_identity(&now, n))
        .filter_map(|n| Some((n, g.nodes[n].inputs.first().copied().flatten()?)))
        .collect();
    if todo.is_empty() {
        return Ok(0);
    }
    let keep: Vec<ValueId> = todo.iter().map(|&(_, v)| v).collect();
    let (_, acts) = tch::no_grad(|| net.forward_capture(x, false, &keep))?;
    // Every statistic is measured and checked before any is written: an error leaves
    // the network as it was.
    let mut stats = Vec::with_capacity(todo.len());
    for (&(n, _), act) in todo.iter().zip(acts) {
        let node = &g.nodes[n];
        let act = act.ok_or_else(|| TrainError::node(node, "its input was not computed"))?;
        stats.push((node, statistics(node, &act)?));
    }
    for (node, (scale, mean, var)) in stats {
        for (slot, value) in [(1, &scale), (2, &mean), (3, &mean), (4, &var)] {
            set(net, node.inputs[slot], value);
        }
    }
    Ok(todo.len())
}

/// BN `node`'s (scale, mean, variance) from its input `act`: per channel (axis 1).
fn statistics(
    node: &crate::ir::Node,
    act: &Tensor,
) -> Result<(Tensor, Tensor, Tensor), TrainError> {
    let eps = node
        .attr_float("epsilon", 1e-5)
        .map_err(|e| TrainError::Op { node: node.label(), error: e.into() })?;
    let dims: Vec<i64> = (0..act.dim() as i64).filter(|&d| d != 1).collect();
    let act = act.to_kind(Kind::Float);
    let mean = act.mean_dim(dims.as_slice(), false, Kind::Float);
    let var = act.var_dim(dims.as_slice(), false, false);
    if !super::all_finite(&mean) || !super::all_finite(&var) {
        return Err(TrainError::node(node, "its input has non-finite values on the images"));
    }
    Ok(((&var + eps as f64).sqrt(), mean, var))
}

/// Copies `value` into the network's tensor for graph value `v`.
fn set(net: &Net, v: Option<ValueId>, value: &Tensor) {
    if let Some(Some(t)) = v.map(|v| &net.base[v]) {
        tch::no_grad(|| t.shallow_clone().copy_(value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::{self, ImportOptions};
    use crate::train::recipe::InsertBn;
    use crate::train::setup::apply_insert_bn;

    fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
        (a - b).abs().max().double_value(&[])
    }

    #[test]
    fn inserted_bn_becomes_the_identity_in_eval_and_train_mode() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("graphs/mnist_cnn.onnx");
        let (mut g, mut a) = analysis::import(&path, &ImportOptions::default()).unwrap();
        let (g0, a0) = (g.clone(), a.clone());
        let added = apply_insert_bn(&mut g, &mut a, InsertBn::On, None).unwrap();
        assert!(added > 0, "mnist_cnn has convs without BN");
        let before = Net::new(&g0, &a0, tch::Device::Cpu).unwrap();
        let net = Net::new(&g, &a, tch::Device::Cpu).unwrap();
        tch::manual_seed(3);
        // Non-centred, non-unit inputs, so the conv outputs' statistics are far from (0, 1).
        let x = Tensor::rand([32, 1, 28, 28], (Kind::Float, tch::Device::Cpu)) * 3.0 + 0.5;
        let want = tch::no_grad(|| before.forward_t(&x, false)).unwrap();
        let plain = Net::new(&g, &a, tch::Device::Cpu).unwrap();
        let id = tch::no_grad(|| plain.forward_t(&x, true)).unwrap();
        assert!(max_diff(&id, &want) > 1e-2, "identity BN in train mode changes the function");
        // A train-mode forward moved its running statistics: no longer at the identity.
        assert_eq!(data_identity_bn(&plain, &x).unwrap(), 0);
        assert_eq!(data_identity_bn(&net, &x).unwrap(), added);
        let eval = tch::no_grad(|| net.forward_t(&x, false)).unwrap();
        let scale = want.abs().max().double_value(&[]).max(1.0);
        assert!(max_diff(&eval, &want) < 1e-4 * scale, "eval mode keeps the function");
        let train = tch::no_grad(|| net.forward_t(&x, true)).unwrap();
        let d = max_diff(&train, &want);
        assert!(d < 1e-3 * scale, "train mode on the same images too: {d} vs scale {scale}");
        // Calibrated BN is no longer at the identity: a second call touches nothing.
        let g1 = net.export().unwrap();
        assert!((0..g1.nodes.len()).all(|n| !bn::at_identity(&g1, n)));
    }

    #[test]
    fn non_finite_images_are_refused_naming_the_bn_node() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("graphs/mnist_cnn.onnx");
        let (mut g, mut a) = analysis::import(&path, &ImportOptions::default()).unwrap();
        let added = apply_insert_bn(&mut g, &mut a, InsertBn::On, None).unwrap();
        let net = Net::new(&g, &a, tch::Device::Cpu).unwrap();
        let x = Tensor::ones([2, 1, 28, 28], (Kind::Float, tch::Device::Cpu));
        let _ = x.get(1).get(0).get(3).get(4).fill_(f64::NAN);
        let e = data_identity_bn(&net, &x).unwrap_err().to_string();
        assert!(e.contains("BatchNormalization") && e.contains("non-finite"), "{e}");
        // Nothing was half-initialised: every inserted BN is still at the identity.
        let now = net.export().unwrap();
        let id = (0..now.nodes.len()).filter(|&n| bn::at_identity(&now, n)).count();
        assert_eq!(id, added, "the inserted BN are left as they were");
    }

    #[test]
    fn a_graph_without_identity_bn_is_left_alone() {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("graphs/mnist_cnn_bn.onnx");
        let (g, a) = analysis::import(&path, &ImportOptions::default()).unwrap();
        let net = Net::new(&g, &a, tch::Device::Cpu).unwrap();
        let x = Tensor::rand([4, 1, 28, 28], (Kind::Float, tch::Device::Cpu));
        assert_eq!(data_identity_bn(&net, &x).unwrap(), 0);
    }
}
