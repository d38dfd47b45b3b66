//! Gemm and MatMul. Spec: https://onnx.ai/onnx/operators/onnx__Gemm.html,
//! https://onnx.ai/onnx/operators/onnx__MatMul.html
use super::{broadcast, ChannelSpec, Fact, InferCx, NodeCx, OpDef, ParamTie, Role, Tie};
use crate::ir::{fmt_shape, Dim};

struct Gemm;
struct MatMul;

pub(super) fn register(r: &mut super::Registry) {
    r.insert("Gemm", Box::new(Gemm));
    r.insert("MatMul", Box::new(MatMul));
}

impl OpDef for Gemm {
    fn infer(&self, cx: &InferCx) -> Result<Vec<Fact>, String> {
        let (a, b) = (cx.ranked(0, 2)?, cx.ranked(1, 2)?);
        let ta = cx.node.attr_int("transA", 0)? != 0;
        let tb = cx.node.attr_int("transB", 0)? != 0;
        let (m, ka) = if ta { (&a.shape[1], &a.shape[0]) } else { (&a.shape[0], &a.shape[1]) };
        let (kb, n) = if tb { (&b.shape[1], &b.shape[0]) } else { (&b.shape[0], &b.shape[1]) };
        if ka.fixed().is_some() && kb.fixed().is_some() && ka != kb {
            return Err(format!(
                "inner dims differ: A {} (transA={}) and B {} (transB={})",
                fmt_shape(&a.shape),
                ta as u8,
                fmt_shape(&b.shape),
                tb as u8
            ));
        }
        let shape = vec![m.clone(), n.clone()];
        if let Some(c) = cx.opt(2) {
            broadcast(&shape, &c.shape).map_err(|e| format!("bias C: {e}"))?;
        }
        Ok(vec![Fact::new(a.dtype, shape)])
    }
    fn macs_weight(&self, cx: &NodeCx) -> Option<(usize, u64)> {
        let transa = cx.node.attr_int("transA", 0).unwrap_or(0) != 0;
        let m = cx.input(0)?.shape[if transa { 1 } else { 0 }].fixed().unwrap_or(1);
        Some((1, m as u64))
    }
    fn params(&self, cx: &NodeCx) -> Vec<usize> {
        (1..3).filter(|&i| cx.is_const(i)).collect()
    }
    fn channels(&self, cx: &NodeCx) -> ChannelSpec {
        let n_in = cx.node.inputs.len();
        if cx.node.attr_int("transA", 0).unwrap_or(0) != 0 || !cx.is_const(1) {
            return ChannelSpec::fixed(
                n_in,
                1,
                &format!("Gemm {} with transA or a computed B", cx.node.label()),
            );
        }
        let tb = cx.node.attr_int("transB", 0).unwrap_or(0) != 0;
        let mut s = ChannelSpec {
            inputs: vec![Role::Ignore; n_in],
            outputs: vec![Role::Producer],
            ..Default::default()
        };
        s.inputs[0] = Role::Consumer;
        s.params.push(ParamTie { slot: 1, axis: if tb { 1 } else { 0 }, tie: Tie::Input(0) });
        s.params.push(ParamTie { slot: 1, axis: if tb { 0 } else { 1 }, tie: Tie::Output(0) });
        if let Some(c) = cx.input(2) {
            let n = cx.out_channels(0);
            if c.rank() >= 1 && c.dim(-1) == n && n != Some(1) {
                s.params.push(ParamTie { slot: 2, axis: c.rank() - 1, tie: Tie::Output(0) });
            }
        }
        s
    }
}

impl OpDef for MatMul {
    fn infer(&self, cx: &InferCx) -> Result<Vec<Fact>, String> {
        let (a, b) = (cx.input(0)?, cx.input(1)?);
        if a.rank() == 0 || b.rank() == 0 {
            return Err("MatMul operands must have rank >= 1".into());
        }
        let mut sa = a.shape.clone();
        let mut sb = b.shape.clone();
        let (va, vb) = (sa.len() == 1, sb.len() == 1);
        if va {
            sa.insert(0, Dim::Fixed(1));
        }
        if vb {
            sb.push(Dim::Fixed(1));
        }
        let (ka, kb) = (&sa[sa.len() - 1], &sb[sb.len() - 2]);
        if ka.fixed().is_some() && kb.fixed().is_some() && ka != kb {
            return Err(format!(
                "inner dims differ: {} x {}",
                fmt_shape(&a.shape),
                fmt_shape(&b.shape)
            ));
        }
        let mut shape = broadcast(&sa[..sa.len() - 2], &sb[..sb.len() - 2])?;
        if !va {
            shape.push(sa[sa.len() - 2].clone());
        }
        if !vb {
            shape.push(sb[sb.len() - 1].clone());
        }
        Ok(vec![Fact::new(a.dtype, shape)])
    }
    fn macs_weight(&self, cx: &NodeCx) -> Option<(usize, u64)> {
        let (a, b) = (cx.input(0)?, cx.input(1)?);
        if !cx.is_const(1) || b.rank() != 2 {
            return None;
        }
        Some((1, a.concrete(1)[..a.rank() - 1].iter().product::<usize>() as u64))
    }
    fn params(&self, cx: &NodeCx) -> Vec<usize> {
        if cx.is_const(1) {
            vec![1]
        } else {
            vec![]
        }
    }
    fn channels(&self, cx: &NodeCx) -> ChannelSpec {
        let (a, b) = (cx.input(0), cx.input(1));
        if !cx.is_const(1) || b.map_or(0, |f| f.rank()) != 2 || a.map_or(0, |f| f.rank()) != 2 {
            return ChannelSpec::fixed(
                2,
                1,
                &format!("MatMul {} is not a 2-D product with a constant weight", cx.node.label()),
            );
        }
        ChannelSpec {
            inputs: vec![Role::Consumer, Role::Ignore],
            outputs: vec![Role::Producer],
            links: vec![],
            params: vec![
                ParamTie { slot: 1, axis: 0, tie: Tie::Input(0) },
                ParamTie { slot: 1, axis: 1, tie: Tie::Output(0) },
            ],
        }
    }
}

/// MACs of a MatMul whose operands are both computed (not part of the weight model).
pub fn matmul_dynamic_macs(cx: &NodeCx) -> u64 {
    if cx.node.op_type != "MatMul" || cx.is_const(1) {
        return 0;
    }
    let (Some(a), Some(y)) = (cx.input(0), cx.output(0)) else { return 0 };
    let k = a.concrete(1).last().copied().unwrap_or(1);
    (y.concrete(1).iter().product::<usize>() as u64).saturating_mul(k as u64)
}
