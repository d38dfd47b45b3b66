//! Layout ops: Flatten, Reshape, Transpose, Concat, Split, Slice, Pad,
//! Squeeze, Unsqueeze. Channel links are index maps along axis 1.
use super::kernel::{axis, torch_pad, Engine, PadMode, RunCx, H};
use super::{
    norm_axis, ChannelSpec, Fact, Fixup, FixupCx, InferCx, NodeChange, NodeCx, OpDef, OpError, Role,
};
use crate::ir::{fmt_shape, Dim, Tensor};
use std::collections::BTreeMap;
use std::sync::Arc;

struct Flatten;
struct Reshape;
struct Transpose;
struct Concat;
struct Split;
struct Slice;
struct Pad;
struct Squeeze;
struct Unsqueeze;

pub(super) fn register(r: &mut super::Registry) {
    r.insert("Flatten", Box::new(Flatten));
    r.insert("Reshape", Box::new(Reshape));
    r.insert("Transpose", Box::new(Transpose));
    r.insert("Concat", Box::new(Concat));
    r.insert("Split", Box::new(Split));
    r.insert("Slice", Box::new(Slice));
    r.insert("Pad", Box::new(Pad));
    r.insert("Squeeze", Box::new(Squeeze));
    r.insert("Unsqueeze", Box::new(Unsqueeze));
}

fn prod(d: &[Dim]) -> Option<usize> {
    d.iter().map(|x| x.fixed()).product()
}

/// Same facts with a new shape; constants and symbolic elements carried over
/// (their element order does not change under a reshape).
fn reshaped(x: &Fact, shape: Vec<Dim>) -> Fact {
    let mut f = Fact::new(x.dtype, shape.clone());
    f.constant = x.is_const();
    if let Some(k) = &x.konst {
        let mut t = (**k).clone();
        t.shape = shape.iter().map(|d| d.fixed().unwrap_or(1)).collect();
        f.konst = Some(Arc::new(t));
    }
    if shape.len() <= 1 {
        f.sym = x.sym.clone();
    }
    f
}

/// Flatten-like maps [N,C,rest..] -> [N, C*rest]: channel c owns a block of
/// features; identity-like keeps axis 0 and 1.
fn channel_map_reshape(cx: &NodeCx, what: &str) -> ChannelSpec {
    let n_in = cx.node.inputs.len();
    let (Some(x), Some(y)) = (cx.input(0), cx.output(0)) else {
        return ChannelSpec::fixed(n_in, 1, "unknown shapes");
    };
    if x.rank() < 2 || y.rank() < 2 {
        return ChannelSpec::fixed(
            n_in,
            1,
            &format!("{what} {} changes the channel axis", cx.node.label()),
        );
    }
    let (xs, ys) = (x.concrete(1), y.concrete(1));
    let mut s = ChannelSpec {
        inputs: vec![Role::Ignore; n_in],
        outputs: vec![Role::Pass],
        ..Default::default()
    };
    s.inputs[0] = Role::Pass;
    if xs[0] == ys[0] && xs[1] == ys[1] {
        s.links = (0..xs[1]).map(|k| (0, k, 0, k)).collect();
    } else if ys.len() == 2 && xs[0] == ys[0] && ys[1] == xs[1..].iter().product::<usize>() {
        let block: usize = xs[2..].iter().product();
        for c in 0..xs[1] {
            s.links.extend((0..block).map(|j| (0, c, 0, c * block + j)));
        }
    } else {
        return ChannelSpec::fixed(
            n_in,
            1,
            &format!(
                "{what} {} to {} mixes the channel axis (hard-coded channel counts)",
                cx.node.label(),
                fmt_shape(&y.shape)
            ),
        );
    }
    s
}

impl OpDef for Flatten {
    fn run(&self, cx: &RunCx, e: &mut dyn Engine) -> Result<Vec<H>, OpError> {
        let x = cx.x(0)?;
        let s = e.shape(x);
        let r = s.len() as i64;
        let axis = cx.node.attr_int("axis", 1)?;
        let axis = if axis < 0 { axis + r } else { axis };
        if !(0..=r).contains(&axis) {
            return Err(bad!("axis {axis} is out of range for rank {r}"));
        }
        let outer: i64 = s[..axis as usize].iter().product();
        let inner: i64 = s[axis as usize..].iter().product();
        Ok(vec![e.reshape(x, &[outer, inner])?])
    }
    fn infer(&self, cx: &InferCx) -> Result<Vec<Fact>, OpError> {
        let x = cx.input(0)?;
        let axis = cx.node.attr_int("axis", 1)?;
        let axis = if axis == x.rank() as i64 { x.rank() } else { norm_axis(axis, x.rank())? };
        let a = if axis == 0 {
            Dim::Fixed(1)
        } else if axis == 1 {
            x.shape[0].clone()
        } else {
            prod(&x.shape[..axis]).map(Dim::Fixed).ok_or("leading dims must be fixed")?
        };
        let b = prod(&x.shape[axis..]).map(Dim::Fixed).ok_or("trailing dims must be fixed")?;
        Ok(vec![reshaped(x, vec![a, b])])
    }
    fn channels(&self, cx: &NodeCx) -> ChannelSpec {
        channel_map_reshape(cx, "Flatten")
    }
}

impl OpDef for Reshape {
    fn run(&self, cx: &RunCx, e: &mut dyn Engine) -> Result<Vec<H>, OpError> {
        let x = cx.x(0)?;
        let mut shape = cx.ints(e, 1, "shape")?;
        if cx.node.attr_int("allowzero", 0)? == 0 {
            let size = e.shape(x);
            for (i, d) in shape.iter_mut().enumerate() {
                if *d == 0 {
                    *d = *size.get(i).ok_or("a 0 in the target shape has no input dim to copy")?;
                }
            }
        }
        Ok(vec![e.reshape(x, &shape)?])
    }
    fn infer(&self, cx: &InferCx) -> Result<Vec<Fact>, OpError> {
        let x = cx.input(0)?;
        let target: Vec<Dim> = match cx.node.attr_ints("shape")? {
            Some(s) => s.into_iter().map(|v| if v >= 0 { Dim::Fixed(v as usize) } else { Dim::Sym(v.to_string()) }).collect(),
            None => cx.input(1)?.int_elems().ok_or("the target shape (input 1) is computed at run time from non-shape values; rlal needs it constant")?,
        };
        let allowzero = cx.node.attr_int("allowzero", 0)? != 0;
        let mut out = Vec::with_capacity(target.len());
        let mut infer_at = None;
        for (i, d) in target.iter().enumerate() {
            match d {
                Dim::Fixed(0) if !allowzero => out.push(x.shape.get(i).cloned().ok_or(format!(
                    "target {} copies dim {i} the input lacks",
                    fmt_shape(&target)
                ))?),
                Dim::Sym(s) if s.parse::<i64>().is_ok_and(|v| v < -1) => {
                    return Err(bad!("target shape {} has a negative dim", fmt_shape(&target)))
                }
                Dim::Sym(s) if s == "-1" => {
                    if infer_at.replace(i).is_some() {
                        return Err(bad!(
                            "target shape {} has more than one -1",
                            fmt_shape(&target)
                        ));
                    }
                    out.push(Dim::Fixed(1));
                }
                other => out.push(other.clone()),
            }
        }
        // Element count check / -1 inference, symbol aware.
        let split = |s: &[Dim]| -> (usize, Vec<String>) {
            let mut f = 1usize;
            let mut syms = Vec::new();
            for d in s {
                match d {
                    Dim::Fixed(n) => f = f.saturating_mul(*n),
                    Dim::Sym(n) => syms.push(n.clone()),
                }
            }
            syms.sort();
            (f, syms)
        };
        let (xf, mut xs) = split(&x.shape);
        let (of, os) = split(&out);
        for s in &os {
            if let Some(p) = xs.iter().position(|q| q == s) {
                xs.remove(p);
            }
        }
        if let Some(i) = infer_at {
            if of == 0 || xf % of != 0 {
                return Err(bad!(
                    "cannot reshape {} to {}",
                    fmt_shape(&x.shape),
                    fmt_shape(&target)
                ));
            }
            out[i] = match (xf / of, xs.len()) {
                (k, 0) => Dim::Fixed(k),
                (1, 1) => Dim::Sym(xs[0].clone()),
                (k, _) => Dim::Sym(format!("{}*{k}", xs.join("*"))),
            };
        } else if xs.is_empty()
            && os.iter().all(|s| x.shape.contains(&Dim::Sym(s.clone())))
            && xf != of
        {
            return Err(bad!(
                "cannot reshape {} ({xf} elements per sample) to {}",
                fmt_shape(&x.shape),
                fmt_shape(&target)
            ));
        }
        Ok(vec![reshaped(x, out)])
    }
    fn channels(&self, cx: &NodeCx) -> ChannelSpec {
        channel_map_reshape(cx, "Reshape")
    }
    /// A constant target that hard-codes the channel (or feature) count follows it.
    fn fixup(&self, cx: &FixupCx) -> Result<Option<Fixup>, OpError> {
        let node = cx.node();
        let target = match cx.init(1) {
            Some(t) => t.to_i64(),
            None => node.attr_ints("shape")?,
        };
        let Some(mut target) = target else {
            return Err("the target shape is computed at run time; rlal cannot rewrite it".into());
        };
        let c = cx.count_out(0).unwrap_or(0) as i64;
        if target.len() < 2 || target[1] <= 0 || target[1] == c {
            return Ok(None);
        }
        let old = target.clone();
        target[1] = c;
        Ok(Some(Fixup {
            label: format!("reshape target of {}: {old:?} -> {target:?}", node.label()),
            change: NodeChange::ReshapeTarget(target),
        }))
    }
    fn target_shape(&self, node: &crate::ir::Node) -> Option<usize> {
        (node.attr_int("allowzero", 0).unwrap_or(0) == 0).then_some(1)
    }
}

impl OpDef for Transpose {
    fn run(&self, cx: &RunCx, e: &mut dyn Engine) -> Result<Vec<H>, OpError> {
        let x = cx.x(0)?;
        let r = e.shape(x).len() as i64;
        let perm = cx.node.attr_ints("perm")?.unwrap_or_else(|| (0..r).rev().collect());
        Ok(vec![e.permute(x, &perm)?])
    }
    fn infer(&self, cx: &InferCx) -> Result<Vec<Fact>, OpError> {
        let x = cx.input(0)?;
        let perm: Vec<usize> = match cx.node.attr_ints("perm")? {
            Some(p) => p.into_iter().map(|a| norm_axis(a, x.rank())).collect::<Result<_, _>>()?,
            None => (0..x.rank()).rev().collect(),
        };
        let mut seen = perm.clone();
        seen.sort_unstable();
        if seen != (0..x.rank()).collect::<Vec<_>>() {
            return Err(bad!("perm {perm:?} is not a permutation of {} axes", x.rank()));
        }
        let mut f = Fact::new(x.dtype, perm.iter().map(|&p| x.shape[p].clone()).collect());
        if let Some(t) =
            x.konst.as_ref().filter(|t| t.rank() == 2 && perm == [1, 0] && t.len() <= 1 << 16)
        {
            // 2-D constant transpose (shape arithmetic of exported Pad amounts).
            let (r, c) = (t.shape[0], t.shape[1]);
            let order: Vec<usize> = (0..c).flat_map(|j| (0..r).map(move |i| i * c + j)).collect();
            let data = match &t.data {
                crate::ir::Data::I64(v) => {
                    Some(crate::ir::Data::I64(order.iter().map(|&k| v[k]).collect()))
                }
                crate::ir::Data::I32(v) => {
                    Some(crate::ir::Data::I32(order.iter().map(|&k| v[k]).collect()))
                }
                crate::ir::Data::F32(v) => {
                    Some(crate::ir::Data::F32(order.iter().map(|&k| v[k]).collect()))
                }
                _ => None,
            };
            f.konst = data.map(|data| Arc::new(Tensor { dtype: t.dtype, shape: vec![c, r], data }));
        }
        Ok(vec![f])
    }
    fn channels(&self, cx: &NodeCx) -> ChannelSpec {
        let perm = cx.node.attr_ints("perm").ok().flatten().unwrap_or_default();
        if perm.len() >= 2 && perm[0] == 0 && perm[1] == 1 {
            return ChannelSpec::per_channel(cx, &[0]);
        }
        ChannelSpec::fixed(1, 1, &format!("Transpose {} moves the channel axis", cx.node.label()))
    }
}

impl OpDef for Concat {
    fn run(&self, cx: &RunCx, e: &mut dyn Engine) -> Result<Vec<H>, OpError> {
        let xs: Vec<H> = cx.inputs.iter().flatten().copied().collect();
        let r = e.shape(*xs.first().ok_or("Concat without inputs")?).len();
        Ok(vec![e.cat(&xs, axis(cx.node.attr_int("axis", 0)?, r)?)?])
    }
    fn infer(&self, cx: &InferCx) -> Result<Vec<Fact>, OpError> {
        let first = cx.input(0)?;
        if cx.node.attr("axis").is_none() {
            return Err("attribute 'axis' is required".into());
        }
        let axis = norm_axis(cx.node.attr_int("axis", 0)?, first.rank().max(1))?;
        let mut shape = first.shape.clone();
        let mut total = first.dim(axis as i64);
        let facts: Vec<&Fact> =
            (0..cx.node.inputs.len()).map(|i| cx.input(i)).collect::<Result<_, _>>()?;
        for f in &facts[1..] {
            if f.rank() != first.rank() {
                return Err(bad!("inputs have ranks {} and {}", first.rank(), f.rank()));
            }
            for (i, (a, b)) in shape.iter().zip(&f.shape).enumerate() {
                if i != axis && a.fixed().is_some() && b.fixed().is_some() && a != b {
                    return Err(bad!(
                        "inputs {} and {} differ off the concat axis {axis}",
                        fmt_shape(&first.shape),
                        fmt_shape(&f.shape)
                    ));
                }
            }
            total = total.zip(f.dim(axis as i64)).map(|(a, b)| a + b);
        }
        shape[axis] = total.map(Dim::Fixed).unwrap_or(Dim::Sym("?".into()));
        let mut out = Fact::new(first.dtype, shape);
        if first.rank() == 1 {
            if facts.iter().all(|f| f.konst.is_some()) {
                let mut v = Vec::new();
                for f in &facts {
                    v.extend(
                        f.konst
                            .as_ref()
                            .and_then(|t| t.to_i64())
                            .ok_or("only integer constants are folded")?,
                    );
                }
                out.konst = Some(Arc::new(
                    Tensor::i64_vec(v).cast(first.dtype).unwrap_or_else(|| Tensor::i64_vec(vec![])),
                ));
            } else if let Some(parts) =
                facts.iter().map(|f| f.int_elems()).collect::<Option<Vec<_>>>()
            {
                out.sym = Some(parts.concat());
            }
        }
        Ok(vec![out])
    }
    fn channels(&self, cx: &NodeCx) -> ChannelSpec {
        let n = cx.node.inputs.len();
        let rank = cx.output(0).map_or(0, |f| f.rank());
        let axis = norm_axis(cx.node.attr_int("axis", 1).unwrap_or(1), rank.max(1)).unwrap_or(0);
        if rank < 2 {
            return ChannelSpec {
                inputs: vec![Role::Ignore; n],
                outputs: vec![Role::Ignore],
                ..Default::default()
            };
        }
        if axis != 1 {
            return ChannelSpec::per_channel(cx, &(0..n).collect::<Vec<_>>());
        }
        let mut s = ChannelSpec {
            inputs: vec![Role::Pass; n],
            outputs: vec![Role::Pass],
            ..Default::default()
        };
        let mut off = 0;
        for i in 0..n {
            let c = cx.in_channels(i).unwrap_or(0);
            s.links.extend((0..c).map(|k| (i, k, 0, off + k)));
            off += c;
        }
        s
    }
}

/// Split sizes of a Split node along its axis.
pub fn split_sizes(
    node: &crate::ir::Node,
    dim: usize,
    split_input: Option<Vec<i64>>,
) -> Result<Vec<usize>, OpError> {
    let n_out = node.outputs.len();
    let sizes = match node.attr_ints("split")?.or(split_input) {
        Some(s) if s.iter().all(|&v| v >= 0) => s.into_iter().map(|v| v as usize).collect(),
        Some(s) => return Err(bad!("split sizes {s:?} must not be negative")),
        None => {
            let k = node.attr_int("num_outputs", n_out as i64)?;
            if k != n_out as i64 {
                return Err(bad!("num_outputs is {k} but the node has {n_out} outputs"));
            }
            let chunk = dim.div_ceil(n_out.max(1));
            (0..n_out).map(|i| chunk.min(dim.saturating_sub(i * chunk))).collect::<Vec<_>>()
        }
    };
    let total = sizes.iter().try_fold(0usize, |a, &s| a.checked_add(s));
    if total != Some(dim) || sizes.len() != n_out {
        return Err(bad!("split sizes {sizes:?} do not cover {dim} elements in {n_out} outputs"));
    }
    Ok(sizes)
}

impl OpDef for Split {
    fn run(&self, cx: &RunCx, e: &mut dyn Engine) -> Result<Vec<H>, OpError> {
        let x = cx.x(0)?;
        let size = e.shape(x);
        let axis = axis(cx.node.attr_int("axis", 0)?, size.len())?;
        let n_out = cx.node.outputs.len() as i64;
        let sizes = if cx.opset >= 13 && cx.opt(1).is_some() {
            cx.ints(e, 1, "split")?
        } else if let Some(s) = cx.node.attr_ints("split")?.filter(|_| cx.opset < 13) {
            s
        } else {
            let d = size[axis as usize];
            let chunk = (d + n_out - 1) / n_out;
            (0..n_out).map(|i| (d - i * chunk).clamp(0, chunk)).collect()
        };
        e.split(x, &sizes, axis)
    }
    fn infer(&self, cx: &InferCx) -> Result<Vec<Fact>, OpError> {
        let x = cx.input(0)?;
        let axis = norm_axis(cx.node.attr_int("axis", 0)?, x.rank())?;
        let dim = x.dim(axis as i64).ok_or("the split axis must be fixed")?;
        let split_in = if cx.node.inputs.len() > 1 && cx.node.inputs[1].is_some() {
            Some(cx.const_ints(1, "split")?)
        } else {
            None
        };
        let sizes = split_sizes(cx.node, dim, split_in)?;
        Ok(sizes
            .into_iter()
            .map(|s| {
                let mut sh = x.shape.clone();
                sh[axis] = Dim::Fixed(s);
                Fact::new(x.dtype, sh)
            })
            .collect())
    }
    fn channels(&self, cx: &NodeCx) -> ChannelSpec {
        let n_out = cx.node.outputs.len();
        let rank = cx.input(0).map_or(0, |f| f.rank());
        let axis = norm_axis(cx.node.attr_int("axis", 0).unwrap_or(0), rank.max(1)).unwrap_or(0);
        let mut s = ChannelSpec {
            inputs: vec![Role::Ignore; cx.node.inputs.len()],
            outputs: vec![Role::Pass; n_out],
            ..Default::default()
        };
        s.inputs[0] = Role::Pass;
        if rank < 2 || axis == 0 {
            return ChannelSpec::fixed(
                cx.node.inputs.len(),
                n_out,
                &format!("Split {} along the batch axis", cx.node.label()),
            );
        }
        let mut off = 0;
        for o in 0..n_out {
            let c = cx.out_channels(o).unwrap_or(0);
            if axis == 1 {
                s.links.extend((0..c).map(|k| (0, off + k, o, k)));
                off += c;
            } else {
                s.links.extend((0..c).map(|k| (0, k, o, k)));
            }
        }
        s
    }
    /// A Split on the channel axis gets the pruned sizes of its outputs.
    fn fixup(&self, cx: &FixupCx) -> Result<Option<Fixup>, OpError> {
        let node = cx.node();
        let rank = cx.base.input(0).map_or(0, |f| f.rank());
        if norm_axis(node.attr_int("axis", 0)?, rank.max(1))? != 1 {
            return Ok(None);
        }
        let sizes: Vec<i64> =
            (0..node.outputs.len()).map(|o| cx.count_out(o).unwrap_or(0) as i64).collect();
        let old = split_sizes(node, cx.width_in(0), cx.init(1).and_then(|t| t.to_i64()))
            .map_or_else(|_| "?".to_string(), |o| format!("{o:?}"));
        Ok(Some(Fixup {
            label: format!("split sizes of {}: {old} -> {sizes:?}", node.label()),
            change: NodeChange::SplitSizes(sizes),
        }))
    }
}

/// Resolved Slice parameters: per axis (start, end, step), ONNX clamping rules.
pub fn slice_params(
    cx_node: &crate::ir::Node,
    shape: &[Dim],
    starts: Vec<i64>,
    ends: Vec<i64>,
    axes: Option<Vec<i64>>,
    steps: Option<Vec<i64>>,
) -> Result<Vec<(usize, i64, i64, i64)>, OpError> {
    let r = shape.len();
    let axes: Vec<usize> = match axes {
        Some(a) => a.into_iter().map(|x| norm_axis(x, r)).collect::<Result<_, _>>()?,
        None => (0..starts.len()).collect(),
    };
    let steps = steps.unwrap_or_else(|| vec![1; axes.len()]);
    if starts.len() != axes.len() || ends.len() != axes.len() || steps.len() != axes.len() {
        return Err(bad!("{}: starts/ends/axes/steps lengths differ", cx_node.label()));
    }
    let mut out = Vec::new();
    for (i, &a) in axes.iter().enumerate() {
        let step = steps[i];
        if step == 0 {
            return Err("slice step 0".into());
        }
        let Some(d) = shape[a].fixed() else {
            // Whole-axis slices of a symbolic (batch) dim are fine.
            if starts[i] == 0 && ends[i] >= i32::MAX as i64 && step == 1 {
                continue;
            }
            return Err(bad!("slicing the symbolic dim {} of axis {a}", shape[a]));
        };
        let d = d as i64;
        let clamp = |v: i64, lo: i64, hi: i64| v.max(lo).min(hi);
        let (s, e) = if step > 0 {
            let s = if starts[i] < 0 { starts[i] + d } else { starts[i] };
            let e = if ends[i] < 0 { ends[i] + d } else { ends[i] };
            (clamp(s, 0, d), clamp(e, 0, d))
        } else {
            let s = if starts[i] < 0 { starts[i] + d } else { starts[i] };
            let e = if ends[i] < 0 { ends[i] + d } else { ends[i] };
            (clamp(s, 0, d - 1), clamp(e, -1, d - 1))
        };
        out.push((a, s, e, step));
    }
    Ok(out)
}

/// The indices a Slice picks along one axis: `s`, `s + step`, ... up to `e` (excluded).
fn picks(s: i64, e: i64, step: i64) -> impl Iterator<Item = i64> {
    std::iter::successors(Some(s), move |&i| i.checked_add(step))
        .take_while(move |&i| (step > 0 && i < e) || (step < 0 && i > e))
}

fn slice_len(s: i64, e: i64, step: i64) -> usize {
    // In i128: starts, ends and steps come from the file and may be near i64's limits.
    let (s, e, step) = (s as i128, e as i128, step as i128);
    if step > 0 {
        if e > s {
            ((e - s + step - 1) / step) as usize
        } else {
            0
        }
    } else if s > e {
        ((s - e + (-step) - 1) / (-step)) as usize
    } else {
        0
    }
}

/// Starts, ends, axes and steps of a Slice node.
pub type SliceArgs = (Vec<i64>, Vec<i64>, Option<Vec<i64>>, Option<Vec<i64>>);

/// Starts/ends/axes/steps of a Slice node (attributes < 10, inputs >= 10).
pub fn slice_inputs(cx: &InferCx) -> Result<SliceArgs, OpError> {
    if cx.opset < 10 || cx.node.inputs.len() == 1 {
        let starts = cx.node.attr_ints("starts")?.ok_or("starts is required")?;
        let ends = cx.node.attr_ints("ends")?.ok_or("ends is required")?;
        return Ok((starts, ends, cx.node.attr_ints("axes")?, None));
    }
    let opt = |i: usize, what: &str| -> Result<Option<Vec<i64>>, OpError> {
        if cx.node.inputs.len() > i && cx.node.inputs[i].is_some() {
            Ok(Some(cx.const_ints(i, what)?))
        } else {
            Ok(None)
        }
    };
    Ok((cx.const_ints(1, "starts")?, cx.const_ints(2, "ends")?, opt(3, "axes")?, opt(4, "steps")?))
}

impl OpDef for Slice {
    fn run(&self, cx: &RunCx, e: &mut dyn Engine) -> Result<Vec<H>, OpError> {
        let x = cx.x(0)?;
        let r = e.shape(x).len();
        let (starts, ends, axes, steps) = slice_args(cx, e)?;
        let mut y = x;
        for (k, &a) in axes.iter().enumerate() {
            let a = axis(a, r)?;
            let d = e.shape(y)[a as usize];
            let step = *steps.get(k).ok_or("steps and axes differ in length")?;
            let fix = |v: i64| if v < 0 { v.saturating_add(d) } else { v };
            let s = fix(*starts.get(k).ok_or("starts too short")?);
            let en = fix(*ends.get(k).ok_or("ends too short")?);
            y = if step > 0 {
                let (s, en) = (s.clamp(0, d), en.clamp(0, d));
                e.slice(y, a, s, en.max(s), step)?
            } else if step < 0 {
                let (s, en) = (s.clamp(-1, d - 1), en.clamp(-1, d - 1));
                let idx: Vec<i64> = (0..).map(|i| s + i * step).take_while(|&i| i > en).collect();
                e.select(y, a, &idx)?
            } else {
                return Err("a Slice step is 0".into());
            };
        }
        Ok(vec![y])
    }
    fn infer(&self, cx: &InferCx) -> Result<Vec<Fact>, OpError> {
        let x = cx.input(0)?;
        let (starts, ends, axes, steps) = slice_inputs(cx)?;
        let params = slice_params(cx.node, &x.shape, starts, ends, axes, steps)?;
        let mut shape = x.shape.clone();
        for &(a, s, e, st) in &params {
            shape[a] = Dim::Fixed(slice_len(s, e, st));
        }
        let mut f = Fact::new(x.dtype, shape);
        if let Some(t) = x.konst.as_ref().filter(|t| t.rank() > 1 && t.len() <= 1 << 16) {
            let mut cur = (**t).clone();
            for &(a, s, e, st) in &params {
                let idx: Vec<usize> = picks(s, e, st).map(|i| i as usize).collect();
                cur = cur.select(a, &idx).ok_or("slice out of range")?;
            }
            f.konst = Some(Arc::new(cur));
        } else if x.rank() == 1 {
            if let Some(elems) = x.int_elems() {
                let picked: Vec<Dim> = match params.first() {
                    Some(&(_, s, e, st)) => picks(s, e, st)
                        .map(|i| elems.get(i as usize).cloned().ok_or("slice out of range"))
                        .collect::<Result<_, _>>()?,
                    None => elems,
                };
                if x.konst.is_some() {
                    let ints: Vec<i64> = picked
                        .iter()
                        .map(|d| {
                            d.fixed().map(|v| v as i64).unwrap_or_else(|| {
                                if let Dim::Sym(s) = d {
                                    s.parse().unwrap_or(-1)
                                } else {
                                    -1
                                }
                            })
                        })
                        .collect();
                    f.konst = Tensor::i64_vec(ints).cast(x.dtype).map(Arc::new);
                } else {
                    f.sym = Some(picked);
                }
            }
        }
        Ok(vec![f])
    }
    fn channels(&self, cx: &NodeCx) -> ChannelSpec {
        let n_in = cx.node.inputs.len();
        let (Some(x), Some(y)) = (cx.input(0), cx.output(0)) else {
            return ChannelSpec::fixed(n_in, 1, "unknown shapes");
        };
        if x.rank() < 2 {
            return ChannelSpec {
                inputs: vec![Role::Ignore; n_in],
                outputs: vec![Role::Ignore],
                ..Default::default()
            };
        }
        match slice_channel_map(cx) {
            Ok(Some(map)) => {
                let mut s = ChannelSpec {
                    inputs: vec![Role::Ignore; n_in],
                    outputs: vec![Role::Pass],
                    ..Default::default()
                };
                s.inputs[0] = Role::Pass;
                s.links = map.into_iter().enumerate().map(|(o, i)| (0, i, 0, o)).collect();
                s
            }
            Ok(None) if x.dim(1) == y.dim(1) => ChannelSpec::per_channel(cx, &[0]),
            _ => ChannelSpec::fixed(
                n_in,
                1,
                &format!("Slice {} with computed bounds", cx.node.label()),
            ),
        }
    }
    /// A Slice on the channel axis picks the kept output channels among the kept
    /// input channels.
    fn fixup(&self, cx: &FixupCx) -> Result<Option<Fixup>, OpError> {
        let Some(map) = slice_channel_map(&cx.base)? else { return Ok(None) };
        let kept_out = cx.kept_outputs.first().copied().flatten();
        let kept_out = kept_out.map_or_else(|| (0..map.len()).collect(), <[usize]>::to_vec);
        let pos: BTreeMap<usize, usize> =
            cx.kept_in(0).into_iter().enumerate().map(|(p, i)| (i, p)).collect();
        let new_map = kept_out
            .iter()
            .map(|&k| {
                pos.get(&map[k]).copied().ok_or_else(|| {
                    format!("output channel {k} reads input channel {} that is removed", map[k])
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Some(Fixup {
            label: format!(
                "slice channels of {}: {} -> {}",
                cx.node().label(),
                map.len(),
                new_map.len()
            ),
            change: NodeChange::SliceChannels(new_map),
        }))
    }
}

/// For a Slice on the channel axis: output channel k -> input channel map[k].
pub fn slice_channel_map(cx: &NodeCx) -> Result<Option<Vec<usize>>, OpError> {
    let x = cx.input(0).ok_or("unknown input")?;
    let get = |i: usize| cx.input(i).and_then(|f| f.konst.as_ref()).and_then(|t| t.to_i64());
    let (starts, ends, axes, steps) = if cx.node.inputs.len() == 1 {
        (
            cx.node.attr_ints("starts")?.unwrap_or_default(),
            cx.node.attr_ints("ends")?.unwrap_or_default(),
            cx.node.attr_ints("axes")?,
            None,
        )
    } else {
        (get(1).ok_or("starts")?, get(2).ok_or("ends")?, get(3), get(4))
    };
    let params = slice_params(cx.node, &x.shape, starts, ends, axes, steps)?;
    Ok(params
        .iter()
        .find(|p| p.0 == 1)
        .map(|&(_, s, e, st)| picks(s, e, st).map(|i| i as usize).collect()))
}

/// Pads of a Pad node as (begin, end) per axis of a rank-`r` input.
pub fn pad_amounts(
    node: &crate::ir::Node,
    r: usize,
    pads_input: Option<Vec<i64>>,
    axes_input: Option<Vec<i64>>,
) -> Result<Vec<(i64, i64)>, OpError> {
    let pads = match node.attr_ints("pads")?.or(pads_input) {
        Some(p) => p,
        None => return Err("pads are required".into()),
    };
    let axes: Vec<usize> = match axes_input {
        Some(a) => a.into_iter().map(|x| norm_axis(x, r)).collect::<Result<_, _>>()?,
        None => (0..r).collect(),
    };
    if pads.len() != 2 * axes.len() {
        return Err(bad!("{} pads for {} axes", pads.len(), axes.len()));
    }
    let mut out = vec![(0, 0); r];
    for (i, &a) in axes.iter().enumerate() {
        out[a] = (pads[i], pads[i + axes.len()]);
    }
    Ok(out)
}

fn pad_of(
    cx_node: &crate::ir::Node,
    r: usize,
    get: impl Fn(usize) -> Option<Vec<i64>>,
) -> Result<Vec<(i64, i64)>, OpError> {
    let has = |i: usize| cx_node.inputs.len() > i && cx_node.inputs[i].is_some();
    let pads_in = if has(1) {
        Some(get(1).ok_or("pads (input 1) must be a constant rlal can fold")?)
    } else {
        None
    };
    let axes_in =
        if has(3) { Some(get(3).ok_or("axes (input 3) must be constant")?) } else { None };
    pad_amounts(cx_node, r, pads_in, axes_in)
}

impl OpDef for Pad {
    fn run(&self, cx: &RunCx, e: &mut dyn Engine) -> Result<Vec<H>, OpError> {
        let x = cx.x(0)?;
        let r = e.shape(x).len();
        let (p, value) = pad_args(cx, e, r)?;
        if p.len() != 2 * r {
            return Err(bad!("'pads' has {} entries for rank {r}", p.len()));
        }
        let mut tp = torch_pad(&p);
        while tp.len() > 2 && tp[tp.len() - 2..].iter().all(|&v| v == 0) {
            tp.truncate(tp.len() - 2);
        }
        let mode = match cx.node.attr_str("mode", "constant")?.as_str() {
            "constant" => PadMode::Constant(value),
            "reflect" => PadMode::Reflect,
            "edge" => PadMode::Edge,
            other => {
                return Err(OpError::Unsupported(format!("Pad mode '{other}' is not supported")))
            }
        };
        Ok(vec![e.pad(x, &tp, mode)?])
    }
    fn infer(&self, cx: &InferCx) -> Result<Vec<Fact>, OpError> {
        let x = cx.input(0)?;
        let pads = pad_of(cx.node, x.rank(), |i| cx.konst(i).and_then(|t| t.to_i64()))?;
        let mut shape = x.shape.clone();
        for (a, &(b, e)) in pads.iter().enumerate() {
            if b == 0 && e == 0 {
                continue;
            }
            let n = x.dim(a as i64).ok_or(format!("padding the symbolic axis {a}"))? as i64;
            match n.checked_add(b).and_then(|d| d.checked_add(e)) {
                Some(d) if d > 0 => shape[a] = Dim::Fixed(d as usize),
                Some(_) => return Err(bad!("padding makes axis {a} empty")),
                None => return Err(bad!("pads ({b}, {e}) of axis {a} overflow")),
            }
        }
        Ok(vec![Fact::new(x.dtype, shape)])
    }
    fn channels(&self, cx: &NodeCx) -> ChannelSpec {
        let n_in = cx.node.inputs.len();
        let Some(x) = cx.input(0) else { return ChannelSpec::fixed(n_in, 1, "unknown shapes") };
        if x.rank() < 2 {
            return ChannelSpec {
                inputs: vec![Role::Ignore; n_in],
                outputs: vec![Role::Ignore],
                ..Default::default()
            };
        }
        let Ok(pads) = pad_of(cx.node, x.rank(), |i| {
            cx.input(i).and_then(|f| f.konst.as_ref()).and_then(|t| t.to_i64())
        }) else {
            return ChannelSpec::fixed(n_in, 1, "Pad with computed pads");
        };
        let (b, e) = pads[1];
        if pads[0] != (0, 0) || b < 0 || e < 0 {
            return ChannelSpec::fixed(
                n_in,
                1,
                &format!("Pad {} crops channels or pads the batch axis", cx.node.label()),
            );
        }
        let mode = cx.node.attr_str("mode", "constant").unwrap_or_default();
        if (b, e) != (0, 0) && mode != "constant" {
            return ChannelSpec::fixed(
                n_in,
                1,
                &format!("Pad {} reflects/edges along channels", cx.node.label()),
            );
        }
        let c = cx.in_channels(0).unwrap_or(0);
        let mut s = ChannelSpec {
            inputs: vec![Role::Ignore; n_in],
            outputs: vec![Role::Pass],
            ..Default::default()
        };
        s.inputs[0] = Role::Pass;
        s.links = (0..c).map(|k| (0, k, 0, k + b as usize)).collect();
        s
    }
}

fn axes_of(cx: &InferCx, what: &str) -> Result<Option<Vec<i64>>, OpError> {
    if let Some(a) = cx.node.attr_ints("axes")? {
        return Ok(Some(a));
    }
    if cx.node.inputs.len() > 1 && cx.node.inputs[1].is_some() {
        return Ok(Some(cx.const_ints(1, what)?));
    }
    Ok(None)
}

impl OpDef for Squeeze {
    fn run(&self, cx: &RunCx, e: &mut dyn Engine) -> Result<Vec<H>, OpError> {
        let x = cx.x(0)?;
        let size = e.shape(x);
        let axes = if cx.opset >= 13 {
            cx.opt(1).map(|_| cx.ints(e, 1, "axes")).transpose()?
        } else {
            cx.node.attr_ints("axes")?
        };
        let axes = match axes {
            Some(a) => a.into_iter().map(|a| axis(a, size.len())).collect::<Result<Vec<_>, _>>()?,
            None => (0..size.len() as i64).filter(|&i| size[i as usize] == 1).collect(),
        };
        let shape: Vec<i64> =
            (0..size.len()).filter(|i| !axes.contains(&(*i as i64))).map(|i| size[i]).collect();
        Ok(vec![e.reshape(x, &shape)?])
    }
    fn infer(&self, cx: &InferCx) -> Result<Vec<Fact>, OpError> {
        let x = cx.input(0)?;
        let axes: Vec<usize> = match axes_of(cx, "axes")? {
            Some(a) => a.into_iter().map(|v| norm_axis(v, x.rank())).collect::<Result<_, _>>()?,
            None => (0..x.rank()).filter(|&i| x.shape[i] == Dim::Fixed(1)).collect(),
        };
        for &a in &axes {
            if x.shape[a] != Dim::Fixed(1) && x.shape[a].fixed().is_some() {
                return Err(bad!("cannot squeeze axis {a} of {}", fmt_shape(&x.shape)));
            }
        }
        let shape = x
            .shape
            .iter()
            .enumerate()
            .filter(|(i, _)| !axes.contains(i))
            .map(|(_, d)| d.clone())
            .collect();
        Ok(vec![reshaped(x, shape)])
    }
    fn channels(&self, cx: &NodeCx) -> ChannelSpec {
        channel_map_reshape(cx, "Squeeze")
    }
}

impl OpDef for Unsqueeze {
    fn run(&self, cx: &RunCx, e: &mut dyn Engine) -> Result<Vec<H>, OpError> {
        let x = cx.x(0)?;
        let axes = if cx.opset >= 13 {
            cx.ints(e, 1, "axes")?
        } else {
            cx.node.attr_ints("axes")?.ok_or("Unsqueeze needs 'axes'")?
        };
        let r = e.shape(x).len() + axes.len();
        let mut axes = axes.into_iter().map(|a| axis(a, r)).collect::<Result<Vec<_>, _>>()?;
        axes.sort_unstable();
        let mut y = x;
        for a in axes {
            y = e.unsqueeze(y, a)?;
        }
        Ok(vec![y])
    }
    fn infer(&self, cx: &InferCx) -> Result<Vec<Fact>, OpError> {
        let x = cx.input(0)?;
        let a = axes_of(cx, "axes")?.ok_or("axes are required")?;
        let r = x.rank() + a.len();
        let mut axes: Vec<usize> =
            a.into_iter().map(|v| norm_axis(v, r)).collect::<Result<_, _>>()?;
        axes.sort_unstable();
        let mut shape = Vec::with_capacity(r);
        let mut it = x.shape.iter();
        for i in 0..r {
            if axes.contains(&i) {
                shape.push(Dim::Fixed(1));
            } else {
                shape.push(it.next().ok_or("bad axes")?.clone());
            }
        }
        let mut f = reshaped(x, shape);
        if r == 1 {
            f.sym = x.int_elems().filter(|_| x.konst.is_none());
        }
        Ok(vec![f])
    }
    fn channels(&self, cx: &NodeCx) -> ChannelSpec {
        channel_map_reshape(cx, "Unsqueeze")
    }
}

/// Slice's run-time starts, ends, axes and steps (inputs from opset 10, attributes before).
type SliceRun = (Vec<i64>, Vec<i64>, Vec<i64>, Vec<i64>);

fn slice_args(cx: &RunCx, e: &mut dyn Engine) -> Result<SliceRun, OpError> {
    if cx.opset < 10 {
        let starts = cx.node.attr_ints("starts")?.ok_or("'starts' is required")?;
        let ends = cx.node.attr_ints("ends")?.ok_or("'ends' is required")?;
        let all = (0..starts.len() as i64).collect();
        let axes = cx.node.attr_ints("axes")?.unwrap_or(all);
        let n = starts.len();
        return Ok((starts, ends, axes, vec![1; n]));
    }
    let starts = cx.ints(e, 1, "starts")?;
    let ends = cx.ints(e, 2, "ends")?;
    let axes = match cx.opt(3) {
        Some(_) => cx.ints(e, 3, "axes")?,
        None => (0..starts.len() as i64).collect(),
    };
    let steps = match cx.opt(4) {
        Some(_) => cx.ints(e, 4, "steps")?,
        None => vec![1; starts.len()],
    };
    Ok((starts, ends, axes, steps))
}

/// Pad's ONNX pads over every axis of a rank-`r` input and its constant value.
fn pad_args(cx: &RunCx, e: &mut dyn Engine, r: usize) -> Result<(Vec<i64>, f64), OpError> {
    if cx.opset < 11 {
        let p = cx.node.attr_ints("pads")?.ok_or("'pads' is required")?;
        return Ok((p, cx.node.attr_float("value", 0.0)? as f64));
    }
    let p = cx.ints(e, 1, "pads")?;
    let value = cx.scalar(e, 2)?.unwrap_or(0.0);
    if cx.opt(3).is_none() {
        return Ok((p, value));
    }
    // Explicit axes: expand to every axis.
    let axes = cx.ints(e, 3, "axes")?;
    let n = axes.len();
    if p.len() != 2 * n {
        return Err(bad!("'pads' has {} entries for {n} axes", p.len()));
    }
    let mut full = vec![0; 2 * r];
    for (k, &a) in axes.iter().enumerate() {
        let a = axis(a, r)? as usize;
        full[a] = p[k];
        full[r + a] = p[n + k];
    }
    Ok((full, value))
}

#[cfg(test)]
mod tests {
    use super::super::testkit::{all_fixed, batch, int, ints, same, text, T};
    use super::super::{NodeChange, Role};
    use crate::ir::{Attr, Dim, Tensor, ValueId};

    use super::super::fixed;
    use super::super::testkit::n;
    /// `op(x, constant int inputs...)` on an input of per-sample shape `x`.
    fn with_ints(
        opset: i64,
        op: &str,
        x: &[usize],
        consts: &[&[i64]],
        attrs: &[(&str, Attr)],
    ) -> (T, ValueId) {
        let mut t = T::opset(opset);
        let x = t.input(batch(x));
        let mut ins = vec![x];
        for c in consts {
            ins.push(t.ints(c));
        }
        let y = t.op(op, &ins, attrs);
        (t, y)
    }
    /// Channel c of input 0 owns `block` consecutive output features.
    fn blocks(c: usize, block: usize) -> Vec<(usize, usize, usize, usize)> {
        let mut v = Vec::new();
        for ch in 0..c {
            for j in 0..block {
                v.push((0, ch, 0, ch * block + j));
            }
        }
        v
    }

    #[test]
    fn flatten_gives_each_channel_a_block_of_features() {
        let (t, y) = with_ints(13, "Flatten", &[3, 4, 4], &[], &[]);
        assert_eq!(t.shape(y), batch(&[48]));
        assert_eq!(t.macs(0), None);
        let s = t.spec(0);
        assert_eq!((s.inputs.clone(), s.outputs.clone()), (vec![Role::Pass], vec![Role::Pass]));
        assert_eq!(s.links.len(), 48);
        assert_eq!(s.links, blocks(3, 16));
        assert!(s.links.contains(&(0, 2, 0, 47)) && !s.links.contains(&(0, 1, 0, 47)));
        let (t, y) = with_ints(13, "Flatten", &[5], &[], &[]);
        assert_eq!(t.shape(y), batch(&[5]));
        assert_eq!(t.spec(0).links, same(0, 0, 5));
        for (axis, want) in [
            (2, "leading dims must be fixed"),
            (0, "trailing dims must be fixed"),
            (5, "out of range"),
        ] {
            let (t, _) = with_ints(13, "Flatten", &[3, 4, 4], &[], &[("axis", int(axis))]);
            assert!(t.err().contains(want), "axis {axis}: {}", t.err());
        }
    }

    #[test]
    fn reshape_infers_minus_one_and_maps_channels() {
        let (t, y) = with_ints(13, "Reshape", &[3, 4, 4], &[&[0, -1]], &[]);
        assert_eq!(t.shape(y), batch(&[48]));
        assert_eq!(t.spec(0).links, blocks(3, 16));
        assert_eq!(t.spec(0).inputs, vec![Role::Pass, Role::Ignore]);
        let (t, y) = with_ints(13, "Reshape", &[3, 4, 4], &[&[-1, 48]], &[]);
        assert_eq!(t.shape(y), batch(&[48]), "-1 takes the batch symbol");
        let (t, y) = with_ints(13, "Reshape", &[3, 4, 4], &[&[0, 3, 16]], &[]);
        assert_eq!(t.shape(y), batch(&[3, 16]));
        assert_eq!(t.spec(0).links, same(0, 0, 3));
        let (t, y) = with_ints(13, "Reshape", &[3, 4, 4], &[&[0, 6, 8]], &[]);
        assert_eq!(t.shape(y), batch(&[6, 8]));
        assert!(all_fixed(&t.spec(0), "mixes the channel axis"), "{:?}", t.spec(0));
        // Opset < 5: the target is an attribute.
        let (t, y) = with_ints(4, "Reshape", &[3, 4, 4], &[], &[("shape", ints(&[0, -1]))]);
        assert_eq!(t.shape(y), batch(&[48]));
        // A constant keeps its data under a new shape.
        let mut t = T::new();
        let c = t.ints(&[1, 2, 3, 4]);
        let s = t.ints(&[2, 2]);
        let y = t.op("Reshape", &[c, s], &[]);
        assert_eq!((t.shape(y), t.konst(y)), (fixed(&[2, 2]), Some(vec![1, 2, 3, 4])));
    }

    #[test]
    fn reshape_rejects_impossible_targets() {
        for (target, want) in [
            (vec![0, -1, -1], "more than one -1"),
            (vec![0, 5, -1], "cannot reshape"),
            (vec![0, 47], "48 elements per sample"),
            (vec![0, 1 << 33, 1 << 33, -1], "cannot reshape"),
            (vec![0, -2, -24], "negative dim"),
            (vec![0, 0, 0, 0, 0], "copies dim 4 the input lacks"),
        ] {
            let (t, _) = with_ints(13, "Reshape", &[3, 4, 4], &[&target], &[]);
            assert!(t.err().contains(want), "{target:?}: {}", t.err());
        }
        let mut t = T::new();
        let x = t.input(batch(&[3, 4, 4]));
        let s = t.input(fixed(&[2]));
        t.op("Reshape", &[x, s], &[]);
        assert!(t.err().contains("computed at run time"), "{}", t.err());
    }

    #[test]
    fn reshape_fixup_rewrites_a_hard_coded_channel_count() {
        // [N, 8, 2, 2] -> [-1, 32]; 2 channels kept: 8 features.
        let (t, y) = with_ints(13, "Reshape", &[8, 2, 2], &[&[-1, 32]], &[]);
        let f = t.fixup(0, &[(y, (0..8).collect())]).unwrap().unwrap();
        assert_eq!(f.change, NodeChange::ReshapeTarget(vec![-1, 8]));
        assert_eq!(f.label, "reshape target of 'n0' (Reshape): [-1, 32] -> [-1, 8]");
        // Opset 1 holds the target in an attribute.
        let (t, y) = with_ints(1, "Reshape", &[8, 2, 2], &[], &[("shape", ints(&[-1, 32]))]);
        let f = t.fixup(0, &[(y, (0..4).collect())]).unwrap().unwrap();
        assert_eq!(f.change, NodeChange::ReshapeTarget(vec![-1, 4]));
        // A target that copies (0) or infers (-1) the channel axis needs nothing.
        for target in [&[0, -1, 4][..], &[-1, 0, 4], &[-1]] {
            let (t, y) = with_ints(13, "Reshape", &[8, 2, 2], &[target], &[]);
            assert_eq!(t.fixup(0, &[(y, vec![0])]), Ok(None), "{target:?}");
        }
        // A target computed from shapes cannot be rewritten.
        let mut t = T::new();
        let x = t.input(batch(&[8, 2, 2]));
        let s = t.op("Shape", &[x], &[]);
        let y = t.op("Reshape", &[x, s], &[]);
        let e = t.fixup(1, &[(y, vec![0])]).unwrap_err().to_string();
        assert!(e.contains("computed at run time"), "{e}");
    }

    #[test]
    fn transpose_passes_channels_only_when_axis_1_stays() {
        let (t, y) = with_ints(13, "Transpose", &[3, 4, 5], &[], &[("perm", ints(&[0, 1, 3, 2]))]);
        assert_eq!(t.shape(y), batch(&[3, 5, 4]));
        assert_eq!(t.spec(0).links, same(0, 0, 3));
        let (t, y) = with_ints(13, "Transpose", &[3, 4, 5], &[], &[("perm", ints(&[0, 2, 3, 1]))]);
        assert_eq!(t.shape(y), batch(&[4, 5, 3]));
        assert!(all_fixed(&t.spec(0), "moves the channel axis"));
        let (t, y) = with_ints(13, "Transpose", &[3, 4, 5], &[], &[]);
        assert_eq!(t.shape(y), vec![Dim::Fixed(5), Dim::Fixed(4), Dim::Fixed(3), n()]);
        assert!(all_fixed(&t.spec(0), "moves the channel axis"));
        for perm in [vec![0, 0, 1, 2], vec![0, 1, 2]] {
            let (t, _) = with_ints(13, "Transpose", &[3, 4, 5], &[], &[("perm", ints(&perm))]);
            assert!(t.err().contains("is not a permutation of 4 axes"), "{perm:?}: {}", t.err());
        }
        let mut t = T::new();
        let c = t.init(Tensor::i64(vec![2, 3], vec![1, 2, 3, 4, 5, 6]));
        let y = t.op("Transpose", &[c], &[("perm", ints(&[1, 0]))]);
        assert_eq!((t.shape(y), t.konst(y)), (fixed(&[3, 2]), Some(vec![1, 4, 2, 5, 3, 6])));
    }

    #[test]
    fn concat_on_channels_offsets_the_second_input() {
        let mut t = T::new();
        let a = t.input(batch(&[2, 4, 4]));
        let b = t.input(batch(&[3, 4, 4]));
        let y = t.op("Concat", &[a, b], &[("axis", int(1))]);
        assert_eq!(t.shape(y), batch(&[5, 4, 4]));
        let s = t.spec(0);
        assert_eq!(s.inputs, vec![Role::Pass, Role::Pass]);
        let second: Vec<_> = (0..3).map(|k| (1, k, 0, 2 + k)).collect();
        assert_eq!(s.links, [same(0, 0, 2), second].concat());
        // Off the channel axis every input's channel k is output channel k.
        let mut t = T::new();
        let a = t.input(batch(&[2, 4, 4]));
        let b = t.input(batch(&[2, 4, 3]));
        let y = t.op("Concat", &[a, b], &[("axis", int(-1))]);
        assert_eq!(t.shape(y), batch(&[2, 4, 7]));
        assert_eq!(t.spec(0).links, [same(0, 0, 2), same(1, 0, 2)].concat());
    }

    #[test]
    fn concat_folds_shape_vectors() {
        let mut t = T::new();
        let x = t.input(batch(&[3, 4]));
        let (a, b) = (t.ints(&[1, 2]), t.ints(&[3]));
        let c = t.op("Concat", &[a, b], &[("axis", int(0))]);
        let s = t.op("Shape", &[x], &[]);
        let m = t.ints(&[-1]);
        let d = t.op("Concat", &[s, m], &[("axis", int(0))]);
        assert_eq!((t.shape(c), t.konst(c)), (fixed(&[3]), Some(vec![1, 2, 3])));
        let sym = t.facts()[d].as_ref().unwrap().sym.clone();
        assert_eq!(sym, Some(vec![n(), Dim::Fixed(3), Dim::Fixed(4), Dim::Sym("-1".into())]));
    }

    #[test]
    fn concat_rejects_bad_axes_and_shapes() {
        for (b, attrs, want) in [
            (vec![2, 4, 4], vec![], "'axis' is required"),
            (vec![2, 4], vec![("axis", int(1))], "ranks 4 and 3"),
            (vec![2, 4, 5], vec![("axis", int(1))], "differ off the concat axis 1"),
            (vec![2, 4, 4], vec![("axis", int(4))], "out of range"),
        ] {
            let mut t = T::new();
            let x = t.input(batch(&[2, 4, 4]));
            let y = t.input(batch(&b));
            t.op("Concat", &[x, y], &attrs);
            assert!(t.err().contains(want), "{b:?} {attrs:?}: {}", t.err());
        }
    }

    /// Split of `[N, 6, 4, 4]` into `n_out` outputs.
    fn split(
        opset: i64,
        sizes: Option<&[i64]>,
        n_out: usize,
        attrs: &[(&str, Attr)],
    ) -> (T, Vec<ValueId>) {
        let mut t = T::opset(opset);
        let x = t.input(batch(&[6, 4, 4]));
        let mut ins = vec![Some(x)];
        if let Some(s) = sizes {
            ins.push(Some(t.ints(s)));
        }
        let outs = t.node("Split", &ins, n_out, attrs);
        (t, outs)
    }

    #[test]
    fn split_on_channels_maps_each_output_to_its_slice() {
        let (t, y) = split(13, Some(&[2, 4]), 2, &[("axis", int(1))]);
        assert_eq!((t.shape(y[0]), t.shape(y[1])), (batch(&[2, 4, 4]), batch(&[4, 4, 4])));
        let s = t.spec(0);
        assert_eq!(s.inputs, vec![Role::Pass, Role::Ignore]);
        assert_eq!(s.outputs, vec![Role::Pass, Role::Pass]);
        let second: Vec<_> = (0..4).map(|k| (0, 2 + k, 1, k)).collect();
        assert_eq!(s.links, [same(0, 0, 2), second].concat());
        assert_eq!(t.macs(0), None);
        // Opset 11: sizes as an attribute; no sizes: equal parts.
        let (t, y) = split(11, None, 2, &[("axis", int(1)), ("split", ints(&[5, 1]))]);
        assert_eq!((t.shape(y[0]), t.shape(y[1])), (batch(&[5, 4, 4]), batch(&[1, 4, 4])));
        let (t, y) = split(13, None, 3, &[("axis", int(-3))]);
        assert!(y.iter().all(|&o| t.shape(o) == batch(&[2, 4, 4])));
        // Off the channel axis each output carries every channel.
        let (t, y) = split(13, Some(&[1, 3]), 2, &[("axis", int(2))]);
        assert_eq!((t.shape(y[0]), t.shape(y[1])), (batch(&[6, 1, 4]), batch(&[6, 3, 4])));
        assert_eq!(t.spec(0).links, [same(0, 0, 6), same(0, 1, 6)].concat());
    }

    #[test]
    fn split_fixup_sets_the_kept_sizes_on_the_channel_axis() {
        let (t, y) = split(13, Some(&[2, 4]), 2, &[("axis", int(1))]);
        let x = t.g.inputs[0];
        let kept = [(x, vec![0, 3, 5]), (y[0], vec![0]), (y[1], vec![1, 3])];
        let f = t.fixup(0, &kept).unwrap().unwrap();
        assert_eq!(f.change, NodeChange::SplitSizes(vec![1, 2]));
        assert_eq!(f.label, "split sizes of 'n0' (Split): [2, 4] -> [1, 2]");
        // Equal parts print their sizes too; an untouched output keeps its width.
        let (t, y) = split(13, None, 3, &[("axis", int(-3))]);
        let f = t.fixup(0, &[(y[1], vec![1])]).unwrap().unwrap();
        assert_eq!(f.label, "split sizes of 'n0' (Split): [2, 2, 2] -> [2, 1, 2]");
        // Off the channel axis the outputs keep the same channels: nothing to fix.
        let (t, y) = split(13, Some(&[1, 3]), 2, &[("axis", int(2))]);
        assert_eq!(t.fixup(0, &[(y[0], vec![0, 1])]), Ok(None));
    }

    #[test]
    fn split_num_outputs_leaves_a_smaller_last_chunk() {
        let mut t = T::opset(18);
        let x = t.input(batch(&[7, 2]));
        let y = t.node("Split", &[Some(x)], 3, &[("axis", int(1)), ("num_outputs", int(3))]);
        let shapes: Vec<_> = y.iter().map(|&o| t.shape(o)).collect();
        assert_eq!(shapes, vec![batch(&[3, 2]), batch(&[3, 2]), batch(&[1, 2])]);
    }

    #[test]
    fn split_along_the_batch_of_a_vector_is_a_barrier() {
        let mut t = T::new();
        let c = t.ints(&[1, 2, 3, 4]);
        let s = t.ints(&[1, 3]);
        let y = t.node("Split", &[Some(c), Some(s)], 2, &[]);
        assert_eq!((t.shape(y[0]), t.shape(y[1])), (fixed(&[1]), fixed(&[3])));
        assert!(all_fixed(&t.spec(0), "batch axis"));
    }

    #[test]
    fn split_rejects_bad_sizes_without_panicking() {
        for (opset, sizes, n_out, attrs, want) in [
            (13, Some(&[2, 3][..]), 2, vec![("axis", int(1))], "do not cover 6 elements"),
            (13, Some(&[1, 2, 3][..]), 2, vec![("axis", int(1))], "do not cover"),
            (13, Some(&[-1, 7][..]), 2, vec![("axis", int(1))], "must not be negative"),
            (18, None, 2, vec![("axis", int(1)), ("num_outputs", int(3))], "num_outputs is 3"),
            (18, None, 2, vec![("axis", int(1)), ("num_outputs", int(-1))], "num_outputs is -1"),
            (13, None, 2, vec![("axis", int(0))], "the split axis must be fixed"),
            (13, None, 2, vec![("axis", int(4))], "out of range"),
        ] {
            let (t, _) = split(opset, sizes, n_out, &attrs);
            assert!(t.err().contains(want), "{sizes:?} {attrs:?}: {}", t.err());
        }
        let mut t = T::new();
        let x = t.input(batch(&[6, 4, 4]));
        let s = t.input(fixed(&[2]));
        t.node("Split", &[Some(x), Some(s)], 2, &[("axis", int(1))]);
        assert!(t.err().contains("split (input 1) must be a constant"), "{}", t.err());
    }

    /// Slice (opset 13) of `[N, 8, 6, 6]`.
    fn slice(starts: &[i64], ends: &[i64], axes: &[i64], steps: Option<&[i64]>) -> (T, ValueId) {
        let mut consts = vec![starts, ends, axes];
        consts.extend(steps);
        with_ints(13, "Slice", &[8, 6, 6], &consts, &[])
    }

    #[test]
    fn slice_on_channels_maps_the_picked_channels() {
        let (t, y) = slice(&[1], &[7], &[1], Some(&[2]));
        assert_eq!(t.shape(y), batch(&[3, 6, 6]));
        let s = t.spec(0);
        assert_eq!(
            s.inputs,
            vec![Role::Pass, Role::Ignore, Role::Ignore, Role::Ignore, Role::Ignore]
        );
        assert_eq!(s.links, vec![(0, 1, 0, 0), (0, 3, 0, 1), (0, 5, 0, 2)]);
        // Reversed, with a negative axis and clamped bounds.
        let (t, y) = slice(&[-1], &[-100], &[-3], Some(&[-1]));
        assert_eq!(t.shape(y), batch(&[8, 6, 6]));
        assert_eq!(t.spec(0).links, (0..8).map(|k| (0, 7 - k, 0, k)).collect::<Vec<_>>());
        // Spatial slices keep the channels.
        let (t, y) = slice(&[0, 1], &[3, i64::MAX], &[2, 3], None);
        assert_eq!(t.shape(y), batch(&[8, 3, 5]));
        assert_eq!(t.spec(0).links, same(0, 0, 8));
        // Opset 9: attributes.
        let attrs = [("starts", ints(&[2])), ("ends", ints(&[4])), ("axes", ints(&[1]))];
        let (t, y) = with_ints(9, "Slice", &[8, 6, 6], &[], &attrs);
        assert_eq!(t.shape(y), batch(&[2, 6, 6]));
        assert_eq!(t.spec(0).links, vec![(0, 2, 0, 0), (0, 3, 0, 1)]);
    }

    #[test]
    fn slice_fixup_maps_the_kept_outputs_to_the_kept_inputs() {
        // Channels 1, 3, 5, 7 of 8.
        let (t, y) = slice(&[1], &[8], &[1], Some(&[2]));
        let x = t.g.inputs[0];
        let f = t.fixup(0, &[(x, vec![0, 1, 5, 6, 7]), (y, vec![0, 2, 3])]).unwrap().unwrap();
        // Outputs 0, 2, 3 read inputs 1, 5, 7: positions 1, 2, 4 among the kept inputs.
        assert_eq!(f.change, NodeChange::SliceChannels(vec![1, 2, 4]));
        assert_eq!(f.label, "slice channels of 'n0' (Slice): 4 -> 3");
        // An untouched input keeps its indices; reversed picks stay in output order.
        let (t, y) = slice(&[-1], &[i64::MIN], &[1], Some(&[-3]));
        let f = t.fixup(0, &[(y, vec![0, 2])]).unwrap().unwrap();
        assert_eq!(f.change, NodeChange::SliceChannels(vec![7, 1]));
        // A kept output channel that reads a removed input channel.
        let (t, y) = slice(&[1], &[8], &[1], Some(&[2]));
        let e = t.fixup(0, &[(x, vec![0, 1, 5, 6]), (y, vec![0, 2, 3])]).unwrap_err().to_string();
        assert!(e.contains("output channel 3 reads input channel 7 that is removed"), "{e}");
        // A slice off the channel axis: nothing to fix.
        let (t, y) = slice(&[1], &[5], &[2], None);
        assert_eq!(t.fixup(0, &[(y, vec![0, 1])]), Ok(None));
    }

    #[test]
    fn slice_folds_constants_and_shape_vectors() {
        let mut t = T::new();
        let c = t.init(Tensor::i64(vec![2, 3], vec![1, 2, 3, 4, 5, 6]));
        let (s, e, a) = (t.ints(&[1]), t.ints(&[3]), t.ints(&[1]));
        let huge = t.ints(&[i64::MAX]);
        let y = t.op("Slice", &[c, s, e, a], &[]);
        let z = t.op("Slice", &[c, s, e, a, huge], &[]);
        assert_eq!((t.shape(y), t.konst(y)), (fixed(&[2, 2]), Some(vec![2, 3, 5, 6])));
        // A step of i64::MAX picks one element and stops (no overflow).
        assert_eq!((t.shape(z), t.konst(z)), (fixed(&[2, 1]), Some(vec![2, 5])));
        let mut t = T::new();
        let x = t.input(batch(&[3, 4]));
        let sh = t.op("Shape", &[x], &[]);
        let v = t.ints(&[10, 20, 30, 40]);
        let (s, e) = (t.ints(&[1]), t.ints(&[i64::MAX]));
        let (a, st) = (t.ints(&[0]), t.ints(&[2]));
        let tail = t.op("Slice", &[sh, s, e], &[]);
        let odd = t.op("Slice", &[v, s, e, a, st], &[]);
        assert_eq!(t.facts()[tail].as_ref().unwrap().sym, Some(fixed(&[3, 4])));
        assert_eq!(t.konst(odd), Some(vec![20, 40]));
    }

    #[test]
    fn slice_rejects_bad_parameters() {
        for (starts, ends, axes, steps, want) in [
            (vec![0], vec![2], vec![1], Some(vec![0]), "slice step 0"),
            (vec![0, 0], vec![2], vec![1], None, "lengths differ"),
            (vec![0], vec![2], vec![0], None, "slicing the symbolic dim N of axis 0"),
            (vec![0], vec![2], vec![4], None, "out of range"),
        ] {
            let (t, _) = slice(&starts, &ends, &axes, steps.as_deref());
            assert!(t.err().contains(want), "{starts:?} {axes:?}: {}", t.err());
        }
        let mut t = T::new();
        let x = t.input(batch(&[8, 6, 6]));
        let s = t.input(fixed(&[1]));
        let e = t.ints(&[2]);
        t.op("Slice", &[x, s, e], &[]);
        assert!(t.err().contains("starts (input 1) must be a constant"), "{}", t.err());
    }

    #[test]
    fn pad_shifts_channels_by_the_leading_channel_pad() {
        let (t, y) = with_ints(13, "Pad", &[3, 4, 4], &[&[0, 1, 1, 1, 0, 2, 1, 1]], &[]);
        assert_eq!(t.shape(y), batch(&[6, 6, 6]));
        let s = t.spec(0);
        assert_eq!(
            (s.inputs.clone(), s.outputs.clone()),
            (vec![Role::Pass, Role::Ignore], vec![Role::Pass])
        );
        assert_eq!(s.links, (0..3).map(|k| (0, k, 0, k + 1)).collect::<Vec<_>>());
        let attrs = [("mode", text("reflect"))];
        let (t, y) = with_ints(13, "Pad", &[3, 4, 4], &[&[0, 0, 1, 2, 0, 0, 3, 4]], &attrs);
        assert_eq!(t.shape(y), batch(&[3, 8, 10]));
        assert_eq!(t.spec(0).links, same(0, 0, 3));
        // Opset 18 axes input: pads only the channel axis.
        let mut t = T::opset(18);
        let x = t.input(batch(&[3, 4, 4]));
        let (p, a) = (t.ints(&[1, 1]), t.ints(&[1]));
        let y = t.node("Pad", &[Some(x), Some(p), None, Some(a)], 1, &[])[0];
        assert_eq!(t.shape(y), batch(&[5, 4, 4]));
        assert_eq!(t.spec(0).links, (0..3).map(|k| (0, k, 0, k + 1)).collect::<Vec<_>>());
        // Opset 2: pads as an attribute.
        let (t, y) =
            with_ints(2, "Pad", &[3, 4, 4], &[], &[("pads", ints(&[0, 0, 1, 1, 0, 0, 1, 1]))]);
        assert_eq!(t.shape(y), batch(&[3, 6, 6]));
    }

    #[test]
    fn pad_that_crops_or_reflects_channels_is_a_barrier() {
        let (t, y) = with_ints(13, "Pad", &[3, 4, 4], &[&[0, -1, 0, 0, 0, 0, 0, 0]], &[]);
        assert_eq!(t.shape(y), batch(&[2, 4, 4]));
        assert!(all_fixed(&t.spec(0), "crops channels"));
        let attrs = [("mode", text("edge"))];
        let (t, _) = with_ints(13, "Pad", &[3, 4, 4], &[&[0, 1, 0, 0, 0, 0, 0, 0]], &attrs);
        assert!(all_fixed(&t.spec(0), "reflects/edges along channels"));
    }

    #[test]
    fn pad_rejects_bad_pads_without_panicking() {
        for (pads, want) in [
            (vec![0, 0, 1, 1, 0, 0], "6 pads for 4 axes"),
            (vec![0, 0, -4, 0, 0, 0, 0, 0], "padding makes axis 2 empty"),
            (vec![0, 0, i64::MAX, 0, 0, 0, i64::MAX, 0], "overflow"),
            (vec![1, 0, 0, 0, 0, 0, 0, 0], "padding the symbolic axis 0"),
        ] {
            let (t, _) = with_ints(13, "Pad", &[3, 4, 4], &[&pads], &[]);
            assert!(t.err().contains(want), "{pads:?}: {}", t.err());
        }
        let mut t = T::new();
        let x = t.input(batch(&[3, 4, 4]));
        let p = t.input(fixed(&[8]));
        t.op("Pad", &[x, p], &[]);
        assert!(t.err().contains("pads (input 1) must be a constant"), "{}", t.err());
    }

    #[test]
    fn squeeze_and_unsqueeze_keep_the_channel_axis() {
        let (t, y) = with_ints(13, "Squeeze", &[3, 1, 1], &[&[2, 3]], &[]);
        assert_eq!(t.shape(y), batch(&[3]));
        let s = t.spec(0);
        assert_eq!(
            (s.inputs.clone(), s.outputs.clone()),
            (vec![Role::Pass, Role::Ignore], vec![Role::Pass])
        );
        assert_eq!(s.links, same(0, 0, 3));
        let (t, y) = with_ints(13, "Squeeze", &[3, 1, 1], &[], &[]);
        assert_eq!(t.shape(y), batch(&[3]), "no axes: every fixed 1");
        let (t, y) = with_ints(11, "Squeeze", &[3, 1, 1], &[], &[("axes", ints(&[-1]))]);
        assert_eq!(t.shape(y), batch(&[3, 1]));
        assert_eq!(t.spec(0).links, same(0, 0, 3));
        let (t, y) = with_ints(13, "Unsqueeze", &[3], &[&[2, 3]], &[]);
        assert_eq!(t.shape(y), batch(&[3, 1, 1]));
        assert_eq!(t.spec(0).links, same(0, 0, 3));
        let (t, y) = with_ints(13, "Unsqueeze", &[3], &[&[-1]], &[]);
        assert_eq!(t.shape(y), batch(&[3, 1]));
        let (t, y) = with_ints(11, "Unsqueeze", &[3], &[], &[("axes", ints(&[2]))]);
        assert_eq!(t.shape(y), batch(&[3, 1]));
        assert_eq!(t.macs(0), None);
    }

    #[test]
    fn squeeze_or_unsqueeze_that_moves_the_channels_is_a_barrier() {
        let (t, y) = with_ints(13, "Squeeze", &[1, 4, 1], &[&[1]], &[]);
        assert_eq!(t.shape(y), batch(&[4, 1]));
        assert!(all_fixed(&t.spec(0), "mixes the channel axis"), "{:?}", t.spec(0));
        let (t, y) = with_ints(13, "Unsqueeze", &[3], &[&[1]], &[]);
        assert_eq!(t.shape(y), batch(&[1, 3]));
        assert!(all_fixed(&t.spec(0), "mixes the channel axis"), "{:?}", t.spec(0));
        let (t, y) = with_ints(13, "Unsqueeze", &[3], &[&[0]], &[]);
        assert_eq!(t.shape(y), vec![Dim::Fixed(1), n(), Dim::Fixed(3)]);
        assert!(all_fixed(&t.spec(0), "mixes the channel axis"), "{:?}", t.spec(0));
    }

    #[test]
    fn unsqueeze_turns_a_symbolic_scalar_into_a_shape_vector() {
        let mut t = T::new();
        let x = t.input(batch(&[3]));
        let s = t.op("Shape", &[x], &[]);
        let zero = t.init(Tensor::i64(vec![], vec![0]));
        let b = t.op("Gather", &[s, zero], &[]);
        let axes = t.ints(&[0]);
        let u = t.op("Unsqueeze", &[b, axes], &[]);
        assert_eq!(t.shape(u), fixed(&[1]));
        assert_eq!(t.facts()[u].as_ref().unwrap().sym, Some(vec![n()]));
    }

    #[test]
    fn squeeze_and_unsqueeze_reject_bad_axes() {
        for (op, x, axes, want) in [
            ("Squeeze", &[3, 1, 1][..], Some(&[1][..]), "cannot squeeze axis 1 of [N,3,1,1]"),
            ("Squeeze", &[3, 1, 1], Some(&[4]), "out of range"),
            ("Unsqueeze", &[3], None, "axes are required"),
            ("Unsqueeze", &[3], Some(&[2, 2]), "bad axes"),
            ("Unsqueeze", &[3], Some(&[5]), "out of range"),
        ] {
            let consts: Vec<&[i64]> = axes.into_iter().collect();
            let (t, _) = with_ints(13, op, x, &consts, &[]);
            assert!(t.err().contains(want), "{op} {axes:?}: {}", t.err());
        }
    }
}
