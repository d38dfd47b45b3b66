//! Applying a [`Plan`]: the pruned graph, and the masked reference.
use super::plan::{Edit, Plan};
use super::RewriteError;
use crate::analysis::Analysis;
use crate::ir::infer::Facts;
use crate::ir::ops::{NodeChange, OpError};
use crate::ir::{Attr, DType, Dim, Graph, Node, NodeId, Tensor, Value, ValueId};

/// Applies `plan` to a copy of `g` (the graph the plan was built from): slices
/// parameters, fixes op attributes and constants, refreshes declared shapes,
/// drops what became unused and checks the result (structure and shape
/// inference with `input_shape` as at import). Names, metadata, opsets and doc
/// strings are kept.
pub fn apply(g: &Graph, plan: &Plan, input_shape: Option<&[usize]>) -> Result<Graph, RewriteError> {
    apply_with_facts(g, plan, input_shape).map(|(g, _)| g)
}

/// [`apply`], also returning the pruned graph's facts (shape inference runs once).
fn apply_with_facts(
    g: &Graph,
    plan: &Plan,
    input_shape: Option<&[usize]>,
) -> Result<(Graph, Facts), RewriteError> {
    let mut out = g.clone();
    for (label, edit) in &plan.edits {
        apply_edit(&mut out, edit)
            .map_err(|error| RewriteError::Edit { edit: label.clone(), error })?;
    }
    out.toposort()?;
    out.cleanup();
    let facts = crate::ir::infer::infer(&out, input_shape)?;
    refresh_shapes(&mut out, &facts);
    super::check::check_with(&out, &facts)?;
    Ok((out, facts))
}

fn apply_edit(g: &mut Graph, edit: &Edit) -> Result<(), OpError> {
    match edit {
        Edit::SliceInit { value, axis, keep } => {
            let v = &mut g.values[*value];
            let t = v.init.as_ref().ok_or("not an initializer")?;
            let s = t.select(*axis, keep).ok_or_else(|| {
                format!("cannot select {} indices on axis {axis} of {:?}", keep.len(), t.shape)
            })?;
            if v.shape.is_some() {
                v.shape = Some(s.shape.iter().map(|&d| Dim::Fixed(d)).collect());
            }
            v.init = Some(s);
        }
        Edit::Node { node, change } => apply_change(g, *node, change)?,
    }
    Ok(())
}

/// Writes an op's fix-up into node `nid`: attributes, or new constants for inputs
/// (a constant may be shared, so it is never edited in place).
fn apply_change(g: &mut Graph, nid: NodeId, change: &NodeChange) -> Result<(), OpError> {
    match change {
        NodeChange::Group(group) => g.nodes[nid].set_attr("group", Attr::Int(*group)),
        NodeChange::SplitSizes(sizes) => {
            let n = &g.nodes[nid];
            if n.attr("split").is_some() || g.meta.opset() < 13 {
                g.nodes[nid].set_attr("split", Attr::Ints(sizes.clone()));
            } else {
                let base = format!("{}.split", n.name);
                let c = add_const(g, &base, Tensor::i64_vec(sizes.clone()));
                let n = &mut g.nodes[nid];
                n.attrs.retain(|(a, _)| a != "num_outputs");
                if n.inputs.len() < 2 {
                    n.inputs.resize(2, None);
                }
                n.inputs[1] = Some(c);
            }
        }
        NodeChange::SliceChannels(map) => slice_channels(g, nid, map)?,
        NodeChange::ReshapeTarget(target) => {
            let n = &g.nodes[nid];
            if n.inputs.get(1).copied().flatten().is_some() {
                let base = format!("{}.shape", n.name);
                let c = add_const(g, &base, Tensor::i64_vec(target.clone()));
                g.nodes[nid].inputs[1] = Some(c);
            } else {
                g.nodes[nid].set_attr("shape", Attr::Ints(target.clone()));
            }
        }
    }
    Ok(())
}

/// A new initializer (never edits a constant that other nodes may share).
fn add_const(g: &mut Graph, base: &str, t: Tensor) -> ValueId {
    let name = g.fresh_name(base);
    g.add_value(Value { name, dtype: Some(t.dtype), init: Some(t), ..Default::default() })
}

/// Rewrites the channel entry of a Slice: bounds when the picked channels are
/// an arithmetic progression, else the whole axis followed by a Gather.
fn slice_channels(g: &mut Graph, nid: NodeId, map: &[usize]) -> Result<(), OpError> {
    let step: i64 = if map.len() >= 2 { map[1] as i64 - map[0] as i64 } else { 1 };
    let arithmetic = step != 0 && map.windows(2).all(|w| w[1] as i64 - w[0] as i64 == step);
    let (start, end, st) = if arithmetic {
        let last = *map.last().ok_or("empty channel map")? as i64;
        (
            map[0] as i64,
            if step > 0 {
                last + 1
            } else if last == 0 {
                i64::MIN
            } else {
                last - 1
            },
            step,
        )
    } else {
        (0, i64::MAX, 1)
    };
    let node = g.nodes[nid].clone();
    if node.inputs.len() == 1 {
        // Opset < 10: attributes; steps are not supported there.
        let axes = node.attr_ints("axes")?.unwrap_or_else(|| {
            (0..node.attr_ints("starts").ok().flatten().map_or(0, |s| s.len() as i64)).collect()
        });
        let pos = axes.iter().position(|&a| a == 1).ok_or("no channel entry")?;
        let (start, end) = if arithmetic && step == 1 { (start, end) } else { (0, i64::MAX) };
        let mut s = node.attr_ints("starts")?.ok_or("starts")?;
        let mut e = node.attr_ints("ends")?.ok_or("ends")?;
        s[pos] = start;
        e[pos] = end;
        g.nodes[nid].set_attr("starts", Attr::Ints(s));
        g.nodes[nid].set_attr("ends", Attr::Ints(e));
        if !(arithmetic && step == 1) {
            insert_gather(g, nid, map);
        }
        return Ok(());
    }
    let get = |g: &Graph, i: usize| {
        node.inputs
            .get(i)
            .copied()
            .flatten()
            .and_then(|v| g.values[v].init.as_ref())
            .and_then(|t| t.to_i64())
    };
    let starts = get(g, 1).ok_or("starts must be constant")?;
    let rank_axes = get(g, 3).unwrap_or_else(|| (0..starts.len() as i64).collect());
    let x_rank = node.inputs[0]
        .and_then(|x| g.values[x].shape.as_ref().map(|s| s.len()))
        .unwrap_or(4) as i64;
    let pos =
        rank_axes.iter().position(|&a| a == 1 || a + x_rank == 1).ok_or("no channel entry")?;
    let mut ends = get(g, 2).ok_or("ends must be constant")?;
    let mut steps = get(g, 4).unwrap_or_else(|| vec![1; starts.len()]);
    let mut starts = starts;
    starts[pos] = start;
    ends[pos] = end;
    steps[pos] = st;
    let name = node.name.clone();
    let slots =
        [(1, "starts", starts), (2, "ends", ends), (3, "axes", rank_axes), (4, "steps", steps)];
    let mut inputs = node.inputs.clone();
    inputs.resize(5, None);
    for (slot, what, v) in slots {
        let dt = node
            .inputs
            .get(slot)
            .copied()
            .flatten()
            .and_then(|v| g.values[v].init.as_ref())
            .map_or(DType::I64, |t| t.dtype);
        let t = Tensor::i64_vec(v).cast(dt).ok_or("bad index dtype")?;
        inputs[slot] = Some(add_const(g, &format!("{name}.{what}"), t));
    }
    g.nodes[nid].inputs = inputs;
    if !arithmetic {
        insert_gather(g, nid, map);
    }
    Ok(())
}

/// Puts `Gather(axis=1, indices=map)` after node `nid`'s first output.
fn insert_gather(g: &mut Graph, nid: NodeId, map: &[usize]) {
    let y = g.nodes[nid].outputs[0].expect("Slice output");
    let name = g.nodes[nid].name.clone();
    let mid_name = g.fresh_name(&format!("{}.full", g.values[y].name));
    let mid = g.add_value(Value { name: mid_name, dtype: g.values[y].dtype, ..Default::default() });
    g.nodes[nid].outputs[0] = Some(mid);
    let idx = add_const(
        g,
        &format!("{name}.channels"),
        Tensor::i64_vec(map.iter().map(|&i| i as i64).collect()),
    );
    let gather = Node {
        name: format!("{name}.gather"),
        op_type: "Gather".into(),
        inputs: vec![Some(mid), Some(idx)],
        outputs: vec![Some(y)],
        attrs: vec![("axis".into(), Attr::Int(1))],
        ..Default::default()
    };
    // Appended: node ids of later edits stay valid; `apply` re-sorts.
    g.nodes.push(gather);
}

/// Re-infers shapes and writes fixed dims that changed into declared shapes
/// (value infos), keeping symbolic dims such as the batch name.
fn refresh_shapes(g: &mut Graph, facts: &Facts) {
    for (v, f) in g.values.iter_mut().zip(facts) {
        let (Some(shape), Some(f)) = (v.shape.as_mut(), f.as_ref()) else { continue };
        if shape.len() != f.rank() {
            v.shape = None;
            continue;
        }
        for (d, n) in shape.iter_mut().zip(&f.shape) {
            if let (Dim::Fixed(_), Dim::Fixed(k)) = (&*d, n) {
                *d = Dim::Fixed(*k);
            }
        }
    }
}

/// The reference for a plan: a copy of `g` whose removed channels output
/// exactly zero. Every parameter of the pruned groups that follows a channel
/// on the producing side (producer conv/Gemm weights and bias along the
/// output axis; BN scale, bias, mean, variance; depthwise weights and bias;
/// per-channel constants of pass-through ops, but not divisors) is zeroed at
/// the removed indices; consumer weights are left alone (their inputs are
/// zero). With zero-preserving activations (ReLU, Clip, pools) the original
/// graph then computes exactly what the pruned graph computes.
pub fn mask(g: &Graph, a: &Analysis, plan: &Plan) -> Graph {
    let mut out = g.clone();
    for c in &plan.changes {
        let gr = &a.groups[c.group];
        for p in &gr.params {
            let consumer_side = gr.consumers.contains(&p.node)
                && !g.nodes[p.node].outputs.contains(&Some(p.follows));
            if consumer_side || not_zeroable(g, p) {
                continue;
            }
            let Some(keep) = plan.kept_idx.get(&p.follows) else { continue };
            let Some(t) = out.values[p.value].init.as_mut() else { continue };
            let kept: std::collections::BTreeSet<usize> = keep.iter().copied().collect();
            let removed: Vec<usize> = (0..t.shape.get(p.axis).copied().unwrap_or(0))
                .filter(|i| !kept.contains(i))
                .collect();
            zero_indices(t, p.axis, &removed);
        }
    }
    out
}

/// Whether `p` is a parameter that masking must not zero (a divisor: zeroing it
/// would turn a zero channel into NaN, 0 / 0, instead of keeping it zero).
fn not_zeroable(g: &Graph, p: &crate::analysis::channels::ParamSlice) -> bool {
    let node = &g.nodes[p.node];
    let Some(op) = crate::ir::ops::lookup(node) else { return false };
    node.inputs.iter().enumerate().any(|(slot, v)| *v == Some(p.value) && !op.zeroable(slot))
}

/// Zeroes indices `idx` along `axis` of an f32 tensor; false when it is not f32
/// or has no such axis. Indices past the axis are ignored.
fn zero_indices(t: &mut Tensor, axis: usize, idx: &[usize]) -> bool {
    let shape = t.shape.clone();
    let (Some(data), Some(&n)) = (t.as_f32_mut(), shape.get(axis)) else { return false };
    let inner: usize = shape[axis + 1..].iter().product();
    let outer: usize = shape[..axis].iter().product();
    for o in 0..outer {
        for &i in idx.iter().filter(|&&i| i < n) {
            let base = (o * n + i) * inner;
            data[base..base + inner].iter_mut().for_each(|x| *x = 0.0);
        }
    }
    true
}

/// Sets every parameter entry of group `gr`'s channels `chans` to zero, producing
/// and consuming side alike (all of `gr.params` but those their op declares not
/// zeroable: Div divisors). Keeping such channels changes nothing downstream:
/// their consumers' weights are zero whatever the channels carry. False when a
/// parameter is not an f32 initializer (then the channels must be removed
/// instead of kept).
pub fn zero_group_channels(g: &mut Graph, gr: &crate::analysis::Group, chans: &[usize]) -> bool {
    for p in &gr.params {
        if not_zeroable(g, p) {
            continue; // kept: the channel stays finite, and its consumers' weights are zero
        }
        let Some((_, per)) = gr.members.iter().find(|(v, _)| *v == p.follows) else { return false };
        let idx: Vec<usize> = chans.iter().filter_map(|&c| per.get(c)).flatten().copied().collect();
        let Some(t) = g.values[p.value].init.as_mut() else { return false };
        if !zero_indices(t, p.axis, &idx) {
            return false;
        }
    }
    true
}

/// A pruned graph with its plan and cost figures (per sample).
#[derive(Clone, Debug)]
pub struct Pruned {
    pub graph: Graph,
    pub plan: Plan,
    pub macs_before: u64,
    pub params_before: u64,
    /// Re-counted on the pruned graph; equal to `CostModel::macs(kept)`.
    pub macs_after: u64,
    pub params_after: u64,
    /// Analysis (shapes, groups, cost) of the pruned graph.
    pub analysis: Analysis,
}

/// Plans, applies and checks a prune of `g` (analysed as `a`): the MACs and
/// parameters re-counted on the pruned graph must equal the cost model's
/// prediction for the kept channel counts.
pub fn prune(
    g: &Graph,
    a: &Analysis,
    keep: &super::KeepSets,
    input_shape: Option<&[usize]>,
) -> Result<Pruned, RewriteError> {
    let plan = Plan::build(g, a, keep)?;
    let (graph, facts) = apply_with_facts(g, &plan, input_shape)?;
    let after = Analysis::new(&graph, facts, Vec::new());
    let (macs_after, params_after) = (after.cost.full_macs(), after.cost.full_params());
    let (want_macs, want_params) = (a.cost.macs(&plan.kept), a.cost.params(&plan.kept));
    if macs_after != want_macs || params_after != want_params {
        return Err(RewriteError::Check(format!(
            "the pruned graph counts {macs_after} MACs / {params_after} params; the cost model predicts {want_macs} / {want_params}"
        )));
    }
    Ok(Pruned {
        graph,
        plan,
        macs_before: a.cost.full_macs(),
        params_before: a.cost.full_params(),
        macs_after,
        params_after,
        analysis: after,
    })
}
