//! Pooling and reductions: MaxPool, AveragePool, GlobalAveragePool,
//! GlobalMaxPool, ReduceMean/ReduceMax (axes as attribute < 18, input >= 18).
use super::conv::window;
use super::{norm_axis, ChannelSpec, Fact, InferCx, NodeCx, OpDef};
use crate::ir::Dim;

struct Pool;
struct GlobalPool;
struct Reduce;

pub(super) fn register(r: &mut super::Registry) {
    r.insert("MaxPool", Box::new(Pool));
    r.insert("AveragePool", Box::new(Pool));
    r.insert("GlobalAveragePool", Box::new(GlobalPool));
    r.insert("GlobalMaxPool", Box::new(GlobalPool));
    r.insert("ReduceMean", Box::new(Reduce));
    r.insert("ReduceMax", Box::new(Reduce));
}

impl OpDef for Pool {
    fn infer(&self, cx: &InferCx) -> Result<Vec<Fact>, String> {
        let x = cx.input(0)?;
        if x.rank() < 3 {
            return Err(format!(
                "input must be N x C x spatial..., found {}",
                crate::ir::fmt_shape(&x.shape)
            ));
        }
        let spatial: Vec<usize> = x.shape[2..]
            .iter()
            .map(|d| d.fixed().ok_or("spatial dims must be fixed"))
            .collect::<Result<_, _>>()?;
        let kernel: Vec<usize> = cx
            .node
            .attr_ints("kernel_shape")?
            .ok_or("kernel_shape is required")?
            .into_iter()
            .map(|k| k as usize)
            .collect();
        if kernel.contains(&0) {
            return Err("kernel_shape entries must be >= 1".into());
        }
        let g = window(cx.node, &spatial, kernel, false)?;
        let mut shape = x.shape[..2].to_vec();
        shape.extend(g.out_spatial.iter().map(|&d| Dim::Fixed(d)));
        let mut out = vec![Fact::new(x.dtype, shape.clone())];
        if cx.node.outputs.len() > 1 {
            out.push(Fact::new(crate::ir::DType::I64, shape)); // MaxPool indices
        }
        Ok(out)
    }
    fn channels(&self, cx: &NodeCx) -> ChannelSpec {
        let mut s = ChannelSpec::per_channel(cx, &[0]);
        if cx.node.outputs.len() > 1 {
            s.outputs[1] = super::Role::Fixed("MaxPool indices output".into());
        }
        s
    }
}

impl OpDef for GlobalPool {
    fn infer(&self, cx: &InferCx) -> Result<Vec<Fact>, String> {
        let x = cx.input(0)?;
        if x.rank() < 3 {
            return Err(format!(
                "input must be N x C x spatial..., found {}",
                crate::ir::fmt_shape(&x.shape)
            ));
        }
        let mut shape = x.shape[..2].to_vec();
        shape.extend(std::iter::repeat_n(Dim::Fixed(1), x.rank() - 2));
        Ok(vec![Fact::new(x.dtype, shape)])
    }
    fn channels(&self, cx: &NodeCx) -> ChannelSpec {
        ChannelSpec::per_channel(cx, &[0])
    }
}

/// Reduced axes (normalised, sorted) and keepdims of a Reduce node.
pub fn reduce_axes(cx: &InferCx) -> Result<(Vec<usize>, bool), String> {
    let x = cx.input(0)?;
    let keep = cx.node.attr_int("keepdims", 1)? != 0;
    let axes = match cx.node.attr_ints("axes")? {
        Some(a) => Some(a),
        None if cx.node.inputs.len() > 1 && cx.node.inputs[1].is_some() => {
            Some(cx.const_ints(1, "axes")?)
        }
        None => None,
    };
    let mut axes: Vec<usize> = match axes {
        Some(a) if !a.is_empty() => {
            a.iter().map(|&i| norm_axis(i, x.rank())).collect::<Result<_, _>>()?
        }
        _ => {
            if cx.node.attr_int("noop_with_empty_axes", 0)? != 0 {
                vec![]
            } else {
                (0..x.rank()).collect()
            }
        }
    };
    axes.sort_unstable();
    axes.dedup();
    Ok((axes, keep))
}

impl OpDef for Reduce {
    fn infer(&self, cx: &InferCx) -> Result<Vec<Fact>, String> {
        let x = cx.input(0)?;
        let (axes, keep) = reduce_axes(cx)?;
        let shape = x
            .shape
            .iter()
            .enumerate()
            .filter_map(|(i, d)| match (axes.contains(&i), keep) {
                (false, _) => Some(d.clone()),
                (true, true) => Some(Dim::Fixed(1)),
                (true, false) => None,
            })
            .collect();
        Ok(vec![Fact::new(x.dtype, shape)])
    }
    fn channels(&self, cx: &NodeCx) -> ChannelSpec {
        let keep = cx.node.attr_int("keepdims", 1).unwrap_or(1) != 0;
        let axes = cx
            .node
            .attr_ints("axes")
            .ok()
            .flatten()
            .or_else(|| cx.input(1).and_then(|f| f.konst.as_ref()).and_then(|t| t.to_i64()));
        let rank = cx.input(0).map_or(0, |f| f.rank());
        let axes: Vec<usize> =
            axes.unwrap_or_default().iter().filter_map(|&a| norm_axis(a, rank).ok()).collect();
        if axes.is_empty() || axes.contains(&1) || (axes.contains(&0) && !keep) {
            return ChannelSpec::fixed(
                cx.node.inputs.len(),
                1,
                &format!(
                    "{} {} reduces over the channel or batch axis",
                    cx.node.op_type,
                    cx.node.label()
                ),
            );
        }
        ChannelSpec::per_channel(cx, &[0])
    }
}
