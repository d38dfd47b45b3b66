//! Normalisation passes run at import. Each is a named rewrite that reports
//! how many places it changed; [`normalize`] runs them in order.
//!
//! * `fold-constants`: evaluates every node whose outputs are compile-time
//!   constants given the static non-batch input shape (Shape → Gather →
//!   Unsqueeze → Concat → Reshape chains, ConstantOfShape, Cast, computed
//!   Pad/Slice amounts, Constant nodes) into initializers; Reshape targets
//!   computed from the batch dim become `0` (copy) entries.
//! * `unshare-initializers`: gives every node its own copy of a parameter
//!   initializer that several nodes share (exporters deduplicate identical
//!   tensors across unrelated layers), so pruning one layer never edits another.
//! * `drop-identity`: removes Identity and inference-mode Dropout.
use super::infer::{infer, Facts};
use super::ops::{self};
use super::{Dim, Graph, IrError, Tensor, Value};

/// What a pass did.
#[derive(Clone, Debug, serde::Serialize)]
pub struct PassReport {
    pub pass: &'static str,
    pub changes: usize,
}

/// Runs all import passes; returns the final facts too.
pub fn normalize(
    g: &mut Graph,
    input_shape: Option<&[usize]>,
) -> Result<(Vec<PassReport>, Facts), IrError> {
    g.name_anonymous_nodes();
    let mut reports = Vec::new();
    let facts = infer(g, input_shape)?;
    reports.push(PassReport { pass: "fold-constants", changes: fold_constants(g, &facts) });
    reports.push(PassReport { pass: "drop-identity", changes: drop_identity(g) });
    let facts = infer(g, input_shape)?;
    reports.push(PassReport {
        pass: "unshare-initializers",
        changes: unshare_initializers(g, &facts),
    });
    let facts = infer(g, input_shape)?;
    Ok((reports, facts))
}

/// Replaces constant-valued nodes by initializers and resolves symbolic Reshape targets.
pub fn fold_constants(g: &mut Graph, facts: &Facts) -> usize {
    let mut changes = 0;
    let mut dead = vec![false; g.nodes.len()];
    for (nid, node) in g.nodes.iter().enumerate() {
        let outs: Vec<_> = node.outputs.iter().flatten().copied().collect();
        if outs.is_empty() || ops::lookup(node).is_none() {
            continue;
        }
        if outs.iter().all(|&o| facts[o].as_ref().is_some_and(|f| f.konst.is_some())) {
            dead[nid] = true;
        }
    }
    for (nid, d) in dead.iter().enumerate() {
        if *d {
            for &o in g.nodes[nid].outputs.clone().iter().flatten() {
                let t = facts[o]
                    .as_ref()
                    .and_then(|f| f.konst.as_deref())
                    .cloned()
                    .expect("checked above");
                g.values[o].init = Some(t);
                g.values[o].has_value_info = false;
            }
            changes += 1;
        }
    }
    let mut k = 0;
    g.nodes.retain(|_| {
        k += 1;
        !dead[k - 1]
    });
    // Reshape targets with symbolic entries: a symbol equal to the data's dim i becomes 0.
    for ni in 0..g.nodes.len() {
        let node = &g.nodes[ni];
        let Some(slot) = ops::lookup(node).and_then(|op| op.target_shape(node)) else { continue };
        let (Some(&Some(x)), Some(&Some(s))) = (node.inputs.first(), node.inputs.get(slot)) else {
            continue;
        };
        if g.values[s].init.is_some() {
            continue;
        }
        let (Some(xf), Some(sf)) = (facts[x].as_ref(), facts[s].as_ref()) else { continue };
        let Some(sym) = &sf.sym else { continue };
        let mut target = Vec::with_capacity(sym.len());
        let mut ok = true;
        for (i, d) in sym.iter().enumerate() {
            target.push(match d {
                Dim::Fixed(n) => *n as i64,
                Dim::Sym(v) if v.parse::<i64>().is_ok() => v.parse::<i64>().unwrap_or(-1),
                d if xf.shape.get(i) == Some(d) => 0,
                _ => {
                    ok = false;
                    0
                }
            });
        }
        let unknown = sym
            .iter()
            .enumerate()
            .filter(|(i, d)| {
                d.fixed().is_none()
                    && xf.shape.get(*i) != Some(d)
                    && d.to_string().parse::<i64>().is_err()
            })
            .count();
        if !ok && unknown == 1 && !target.contains(&-1) {
            // A single unresolved entry: let Reshape infer it.
            for (i, d) in sym.iter().enumerate() {
                if d.fixed().is_none() && xf.shape.get(i) != Some(d) {
                    target[i] = -1;
                }
            }
            ok = true;
        }
        if !ok {
            continue;
        }
        let name = g.fresh_name(&format!("{}.shape", g.nodes[ni].name));
        let id =
            g.add_value(Value { name, init: Some(Tensor::i64_vec(target)), ..Default::default() });
        g.nodes[ni].inputs[slot] = Some(id);
        changes += 1;
    }
    g.cleanup();
    changes
}

/// Removes the nodes that forward their input (Identity, inference-mode Dropout: the
/// registry's `forwards_input`) whose other outputs are unused.
pub fn drop_identity(g: &mut Graph) -> usize {
    let mut changes = 0;
    let mut i = 0;
    while i < g.nodes.len() {
        let node = &g.nodes[i];
        let forwards = ops::is(node, |op| op.forwards_input())
            && node.outputs.iter().skip(1).all(|o| {
                o.is_none()
                    || g.consumers()[o.unwrap_or(0)].is_empty()
                        && !g.outputs.contains(&o.unwrap_or(0))
            });
        if !forwards
            || node.inputs.first().copied().flatten().is_none()
            || node.outputs.first().copied().flatten().is_none()
        {
            i += 1;
            continue;
        }
        let (x, y) = (node.inputs[0].expect("checked"), node.outputs[0].expect("checked"));
        if g.outputs.contains(&y) {
            // Keep the output name: make x's producer write y when x is private to it.
            let producers = g.producers();
            let uses = g.consumers()[x].len();
            match producers[x] {
                Some(p) if uses == 1 && !g.outputs.contains(&x) => {
                    for o in g.nodes[p].outputs.iter_mut() {
                        if *o == Some(x) {
                            *o = Some(y);
                        }
                    }
                }
                _ => {
                    i += 1;
                    continue;
                }
            }
        } else {
            g.replace_uses(y, x);
        }
        g.nodes.remove(i);
        changes += 1;
    }
    if changes > 0 {
        g.cleanup();
    }
    changes
}

/// Gives each node its own copy of parameter initializers used by several nodes.
pub fn unshare_initializers(g: &mut Graph, facts: &Facts) -> usize {
    let mut uses: std::collections::BTreeMap<usize, Vec<(usize, usize)>> = Default::default();
    for (nid, node) in g.nodes.iter().enumerate() {
        let Some(op) = ops::lookup(node) else { continue };
        let cx = crate::ir::ops::NodeCx {
            node,
            inputs: node.inputs.iter().map(|i| i.and_then(|i| facts[i].as_ref())).collect(),
            outputs: node.outputs.iter().map(|o| o.and_then(|o| facts[o].as_ref())).collect(),
        };
        let mut slots: Vec<usize> = op.params(&cx);
        slots.extend(op.channels(&cx).params.iter().map(|t| t.slot));
        slots.sort_unstable();
        slots.dedup();
        for s in slots {
            if let Some(Some(v)) = node.inputs.get(s) {
                if g.values[*v].init.as_ref().is_some_and(|t| t.len() > 1) {
                    uses.entry(*v).or_default().push((nid, s));
                }
            }
        }
    }
    let all_uses = g.consumers();
    let mut changes = 0;
    for (v, list) in uses {
        // Every use beyond the first (including non-parameter uses) gets a copy.
        let total = all_uses[v].len() + usize::from(g.outputs.contains(&v));
        if total <= 1 {
            continue;
        }
        for &(nid, slot) in list.iter().skip(usize::from(list.len() == total)) {
            let name = g.fresh_name(&format!("{}.{}", g.values[v].name, g.nodes[nid].name));
            let copy = Value {
                name,
                dtype: g.values[v].dtype,
                shape: g.values[v].shape.clone(),
                init: g.values[v].init.clone(),
                ..Default::default()
            };
            let id = g.add_value(copy);
            g.nodes[nid].inputs[slot] = Some(id);
            changes += 1;
        }
    }
    changes
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn graphs(name: &str) -> Graph {
        crate::onnx::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("graphs").join(name)).unwrap()
    }

    #[test]
    fn fold_constants_evaluates_the_option_a_pad_chain() {
        // The classic exporter computes the shortcut's Pad amounts with a
        // ConstantOfShape/Concat/Reshape/Slice/Transpose/Cast chain.
        let mut g = graphs("resnet20_cifar.onnx");
        assert!(g.nodes.iter().any(|n| n.op_type == "ConstantOfShape"));
        let (reports, _) = normalize(&mut g, None).unwrap();
        assert!(reports[0].changes > 0);
        for op in ["ConstantOfShape", "Transpose", "Cast", "Constant", "Concat", "Reshape"] {
            assert!(!g.nodes.iter().any(|n| n.op_type == op), "{op} left after folding");
        }
        let pads: Vec<Vec<i64>> = g
            .nodes
            .iter()
            .filter(|n| n.op_type == "Pad")
            .map(|n| g.init(n.inputs[1].unwrap()).unwrap().to_i64().unwrap())
            .collect();
        assert_eq!(pads, vec![vec![0, 8, 0, 0, 0, 8, 0, 0], vec![0, 16, 0, 0, 0, 16, 0, 0]]);
    }

    #[test]
    fn symbolic_reshape_target_becomes_copy_dims() {
        // x.view(x.size(0), -1) exports as Shape→Gather→Unsqueeze→Concat→Reshape.
        use crate::ir::{Attr, Node};
        let mut g = Graph::default();
        g.meta.opsets = vec![(String::new(), 13)];
        let x = g.add_value(Value {
            name: "x".into(),
            dtype: Some(crate::ir::DType::F32),
            shape: Some(vec![Dim::Sym("N".into()), Dim::Fixed(4), Dim::Fixed(2), Dim::Fixed(2)]),
            ..Default::default()
        });
        g.inputs.push(x);
        let mk = |g: &mut Graph, name: &str| {
            g.add_value(Value { name: name.into(), ..Default::default() })
        };
        let (s, b, u, c, y) =
            (mk(&mut g, "s"), mk(&mut g, "b"), mk(&mut g, "u"), mk(&mut g, "c"), mk(&mut g, "y"));
        let zero = g.add_value(Value {
            name: "zero".into(),
            init: Some(Tensor::i64(vec![], vec![0])),
            ..Default::default()
        });
        let minus1 = g.add_value(Value {
            name: "m1".into(),
            init: Some(Tensor::i64_vec(vec![-1])),
            ..Default::default()
        });
        let n = |name: &str, op: &str, i: Vec<usize>, o: usize| Node {
            name: name.into(),
            op_type: op.into(),
            inputs: i.into_iter().map(Some).collect(),
            outputs: vec![Some(o)],
            ..Default::default()
        };
        g.nodes.push(n("shape", "Shape", vec![x], s));
        g.nodes.push(n("gather", "Gather", vec![s, zero], b));
        let mut un = n("unsq", "Unsqueeze", vec![b], u);
        un.attrs.push(("axes".into(), Attr::Ints(vec![0])));
        g.nodes.push(un);
        let mut cat = n("cat", "Concat", vec![u, minus1], c);
        cat.attrs.push(("axis".into(), Attr::Int(0)));
        g.nodes.push(cat);
        g.nodes.push(n("reshape", "Reshape", vec![x, c], y));
        g.outputs.push(y);
        let (_, facts) = normalize(&mut g, None).unwrap();
        assert_eq!(
            g.nodes.len(),
            1,
            "{:?}",
            g.nodes.iter().map(|n| &n.op_type).collect::<Vec<_>>()
        );
        assert_eq!(g.init(g.nodes[0].inputs[1].unwrap()).unwrap().to_i64().unwrap(), vec![0, -1]);
        let yf = facts[g.outputs[0]].as_ref().unwrap();
        assert_eq!(yf.shape, vec![Dim::Sym("N".into()), Dim::Fixed(16)]);
    }

    #[test]
    fn shared_parameters_are_unshared_and_identities_dropped() {
        use crate::ir::Node;
        let (mut g, x) = input_graph(&[2, 5, 5]);
        let w = g.add_value(Value {
            name: "w".into(),
            init: Some(Tensor::f32(vec![2, 2, 1, 1], vec![1.0; 4])),
            ..Default::default()
        });
        let mk = |g: &mut Graph, name: &str| {
            g.add_value(Value { name: name.into(), ..Default::default() })
        };
        let (wi, a, b, y) = (mk(&mut g, "w_id"), mk(&mut g, "a"), mk(&mut g, "b"), mk(&mut g, "y"));
        let n = |name: &str, op: &str, i: Vec<usize>, o: usize| Node {
            name: name.into(),
            op_type: op.into(),
            inputs: i.into_iter().map(Some).collect(),
            outputs: vec![Some(o)],
            ..Default::default()
        };
        g.nodes.push(n("id", "Identity", vec![w], wi));
        g.nodes.push(n("c1", "Conv", vec![x, w], a));
        g.nodes.push(n("c2", "Conv", vec![a, wi], b));
        g.nodes.push(n("c3", "Conv", vec![b, w], y));
        g.outputs.push(y);
        let (reports, _) = normalize(&mut g, None).unwrap();
        assert!(g.nodes.iter().all(|n| n.op_type == "Conv"));
        let ws: std::collections::BTreeSet<usize> =
            g.nodes.iter().map(|n| n.inputs[1].unwrap()).collect();
        assert_eq!(ws.len(), 3, "each conv owns its weight");
        assert!(reports.iter().any(|r| r.pass == "unshare-initializers" && r.changes >= 1));
        assert_eq!(g.values[g.outputs[0]].name, "y");
    }

    /// An opset-13 graph whose one input `x` is f32 of shape [N, dims..].
    fn input_graph(dims: &[usize]) -> (Graph, usize) {
        let mut g = Graph::default();
        g.meta.opsets = vec![(String::new(), 13)];
        let shape =
            std::iter::once(Dim::Sym("N".into())).chain(dims.iter().map(|&d| Dim::Fixed(d)));
        let x = g.add_value(Value {
            name: "x".into(),
            dtype: Some(crate::ir::DType::F32),
            shape: Some(shape.collect()),
            ..Default::default()
        });
        g.inputs.push(x);
        (g, x)
    }

    #[test]
    fn identity_before_graph_output_keeps_the_output_name() {
        use crate::ir::Node;
        let (mut g, x) = input_graph(&[3]);
        let r = g.add_value(Value { name: "r".into(), ..Default::default() });
        let y = g.add_value(Value { name: "out".into(), ..Default::default() });
        g.nodes.push(Node {
            name: "relu".into(),
            op_type: "Relu".into(),
            inputs: vec![Some(x)],
            outputs: vec![Some(r)],
            ..Default::default()
        });
        g.nodes.push(Node {
            name: "id".into(),
            op_type: "Identity".into(),
            inputs: vec![Some(r)],
            outputs: vec![Some(y)],
            ..Default::default()
        });
        g.outputs.push(y);
        normalize(&mut g, None).unwrap();
        assert_eq!(g.nodes.len(), 1);
        assert_eq!(g.values[g.outputs[0]].name, "out");
        assert_eq!(g.nodes[0].outputs[0], Some(g.outputs[0]));
    }

    #[test]
    fn dropout_goes_unless_its_mask_is_used() {
        use crate::ir::Node;
        for mask_out in [false, true] {
            let (mut g, x) = input_graph(&[3]);
            let [d, m, y] = ["d", "mask", "y"]
                .map(|n| g.add_value(Value { name: n.into(), ..Default::default() }));
            let node = |name: &str, op: &str, inputs: Vec<usize>, outputs: Vec<usize>| Node {
                name: name.into(),
                op_type: op.into(),
                inputs: inputs.into_iter().map(Some).collect(),
                outputs: outputs.into_iter().map(Some).collect(),
                ..Default::default()
            };
            g.nodes.push(node("drop", "Dropout", vec![x], vec![d, m]));
            g.nodes.push(node("relu", "Relu", vec![d], vec![y]));
            g.outputs.push(y);
            if mask_out {
                g.outputs.push(m);
            }
            assert_eq!(drop_identity(&mut g), usize::from(!mask_out));
            assert_eq!(g.nodes.iter().any(|n| n.op_type == "Dropout"), mask_out);
        }
    }
}
