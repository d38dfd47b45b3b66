//! Gemm and MatMul. Spec: https://onnx.ai/onnx/operators/onnx__Gemm.html,
//! https://onnx.ai/onnx/operators/onnx__MatMul.html
use super::kernel::{Bin, Engine, RunCx, H};
use super::{broadcast, ChannelSpec, Fact, InferCx, NodeCx, OpDef, OpError, ParamTie, Role, Tie};
use crate::ir::{fmt_shape, Dim};

struct Gemm;
struct MatMul;

pub(super) fn register(r: &mut super::Registry) {
    r.insert("Gemm", Box::new(Gemm));
    r.insert("MatMul", Box::new(MatMul));
}

impl OpDef for Gemm {
    fn run(&self, cx: &RunCx, e: &mut dyn Engine) -> Result<Vec<H>, OpError> {
        let mut a = e.low(cx.x(0)?)?;
        let mut b = e.low(cx.x(1)?)?;
        if cx.node.attr_int("transA", 0)? != 0 {
            a = e.t(a)?;
        }
        if cx.node.attr_int("transB", 0)? != 0 {
            b = e.t(b)?;
        }
        let alpha = cx.node.attr_float("alpha", 1.0)? as f64;
        let beta = cx.node.attr_float("beta", 1.0)? as f64;
        let bias = cx.opt(2).map(|c| e.low(c)).transpose()?;
        let y = match bias {
            Some(c) if alpha == 1.0 && beta == 1.0 => e.addmm(c, a, b)?,
            Some(c) if beta != 0.0 => {
                let ab = e.matmul(a, b)?;
                let ab = e.scale(ab, alpha)?;
                let c = e.scale(c, beta)?;
                e.binary(Bin::Add, ab, c)?
            }
            _ => {
                let ab = e.matmul(a, b)?;
                e.scale(ab, alpha)?
            }
        };
        Ok(vec![e.full(y)?])
    }
    fn infer(&self, cx: &InferCx) -> Result<Vec<Fact>, OpError> {
        let (a, b) = (cx.ranked(0, 2)?, cx.ranked(1, 2)?);
        let ta = cx.node.attr_int("transA", 0)? != 0;
        let tb = cx.node.attr_int("transB", 0)? != 0;
        let (m, ka) = if ta { (&a.shape[1], &a.shape[0]) } else { (&a.shape[0], &a.shape[1]) };
        let (kb, n) = if tb { (&b.shape[1], &b.shape[0]) } else { (&b.shape[0], &b.shape[1]) };
        if ka.fixed().is_some() && kb.fixed().is_some() && ka != kb {
            return Err(bad!(
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
    fn run(&self, cx: &RunCx, e: &mut dyn Engine) -> Result<Vec<H>, OpError> {
        let (a, b) = (e.low(cx.x(0)?)?, e.low(cx.x(1)?)?);
        let y = e.matmul(a, b)?;
        Ok(vec![e.full(y)?])
    }
    fn infer(&self, cx: &InferCx) -> Result<Vec<Fact>, OpError> {
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
            return Err(bad!(
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

/// MACs of a MatMul outside the weight model (both operands computed, or a constant
/// B that is not a 2-D weight): output elements × K.
pub fn matmul_dynamic_macs(cx: &NodeCx) -> u64 {
    let weight = cx.is_const(1) && cx.input(1).is_some_and(|b| b.rank() == 2);
    if cx.node.op_type != "MatMul" || weight {
        return 0;
    }
    let (Some(a), Some(y)) = (cx.input(0), cx.output(0)) else { return 0 };
    let k = a.concrete(1).last().copied().unwrap_or(1);
    (y.concrete(1).iter().product::<usize>() as u64).saturating_mul(k as u64)
}

#[cfg(test)]
mod tests {
    use super::super::testkit::{all_fixed, batch, int, tie, T};
    use super::super::{Role, Tie};
    use super::matmul_dynamic_macs;
    use crate::ir::{Dim, Tensor};

    use super::super::fixed;

    #[test]
    fn gemm_shape_macs_params_and_ties() {
        let mut t = T::new();
        let a = t.input(batch(&[6]));
        let (b, c) = (t.weight(&[6, 4]), t.weight(&[4]));
        let y = t.op("Gemm", &[a, b, c], &[]);
        assert_eq!(t.shape(y), batch(&[4]));
        assert_eq!(t.macs(0), Some(4 * 6), "per sample: 4 outputs x K = 6");
        assert_eq!(t.params(0), vec![1, 2]);
        let s = t.spec(0);
        assert_eq!(s.inputs, vec![Role::Consumer, Role::Ignore, Role::Ignore]);
        assert_eq!(s.outputs, vec![Role::Producer]);
        assert_eq!(
            s.params,
            vec![tie(1, 0, Tie::Input(0)), tie(1, 1, Tie::Output(0)), tie(2, 0, Tie::Output(0))]
        );
        // transB: B is N x K; a [1, N] bias follows the outputs on its last axis.
        let mut t = T::new();
        let a = t.input(batch(&[6]));
        let (b, c) = (t.weight(&[4, 6]), t.weight(&[1, 4]));
        let y = t.op("Gemm", &[a, b, c], &[("transB", int(1))]);
        assert_eq!(t.shape(y), batch(&[4]));
        assert_eq!(t.macs(0), Some(4 * 6));
        assert_eq!(
            t.spec(0).params,
            vec![tie(1, 1, Tie::Input(0)), tie(1, 0, Tie::Output(0)), tie(2, 1, Tie::Output(0))]
        );
        // A scalar-like bias [1] broadcasts: it follows no channel.
        let mut t = T::new();
        let a = t.input(batch(&[6]));
        let (b, c) = (t.weight(&[6, 4]), t.weight(&[1]));
        t.op("Gemm", &[a, b, c], &[]);
        assert_eq!(t.spec(0).params.len(), 2);
    }

    #[test]
    fn gemm_with_constant_rows_counts_every_row_and_trans_a_is_a_barrier() {
        let mut t = T::new();
        let (a, b) = (t.weight(&[6, 5]), t.weight(&[6, 4]));
        let y = t.op("Gemm", &[a, b], &[("transA", int(1))]);
        assert_eq!(t.shape(y), fixed(&[5, 4]));
        assert_eq!(t.macs(0), Some(5 * 4 * 6));
        assert!(all_fixed(&t.spec(0), "transA or a computed B"), "{:?}", t.spec(0));
        let mut t = T::new();
        let a = t.input(batch(&[6]));
        let b = t.input(fixed(&[6, 4]));
        t.op("Gemm", &[a, b], &[]);
        assert!(t.params(0).is_empty(), "a computed B is no parameter");
        assert!(all_fixed(&t.spec(0), "computed B"), "{:?}", t.spec(0));
    }

    #[test]
    fn gemm_rejects_bad_ranks_and_shapes() {
        type Case = (Vec<Dim>, &'static [usize], Option<&'static [usize]>, &'static str);
        let cases: Vec<Case> = vec![
            (batch(&[6]), &[5, 4], None, "inner dims differ"),
            (batch(&[2, 6]), &[6, 4], None, "input 0 must have rank 2"),
            (batch(&[6]), &[6, 4, 1], None, "input 1 must have rank 2"),
            (batch(&[6]), &[6, 4], Some(&[3]), "bias C: shapes"),
        ];
        for (a, b, c, want) in cases {
            let mut t = T::new();
            let a = t.input(a);
            let mut ins = vec![a, t.weight(b)];
            if let Some(c) = c {
                ins.push(t.weight(c));
            }
            t.op("Gemm", &ins, &[]);
            assert!(t.err().contains(want), "{b:?}: {}", t.err());
        }
    }

    #[test]
    fn matmul_with_a_2d_weight_is_a_prunable_linear_layer() {
        let mut t = T::new();
        let a = t.input(batch(&[6]));
        let w = t.weight(&[6, 4]);
        let y = t.op("MatMul", &[a, w], &[]);
        assert_eq!(t.shape(y), batch(&[4]));
        assert_eq!(t.macs(0), Some(4 * 6));
        assert_eq!(t.with_cx(0, matmul_dynamic_macs), 0, "counted once, in the weight model");
        assert_eq!(t.params(0), vec![1]);
        let s = t.spec(0);
        assert_eq!(s.inputs, vec![Role::Consumer, Role::Ignore]);
        assert_eq!(s.outputs, vec![Role::Producer]);
        assert_eq!(s.params, vec![tie(1, 0, Tie::Input(0)), tie(1, 1, Tie::Output(0))]);
    }

    #[test]
    fn matmul_on_rank_3_activations_counts_every_row_but_is_a_barrier() {
        let mut t = T::new();
        let a = t.input(batch(&[5, 6]));
        let w = t.weight(&[6, 4]);
        let y = t.op("MatMul", &[a, w], &[]);
        assert_eq!(t.shape(y), batch(&[5, 4]));
        assert_eq!(t.macs(0), Some(5 * 4 * 6));
        assert!(all_fixed(&t.spec(0), "not a 2-D product"), "{:?}", t.spec(0));
    }

    #[test]
    fn matmul_outside_the_weight_model_counts_output_elements_times_k() {
        // Both operands computed, batch dims broadcast: [N,1,5,6] x [3,6,7] -> [N,3,5,7].
        let mut t = T::new();
        let a = t.input(batch(&[1, 5, 6]));
        let b = t.input(fixed(&[3, 6, 7]));
        let y = t.op("MatMul", &[a, b], &[]);
        assert_eq!(t.shape(y), batch(&[3, 5, 7]));
        assert_eq!(t.macs(0), None);
        assert!(t.params(0).is_empty());
        assert_eq!(t.with_cx(0, matmul_dynamic_macs), 3 * 5 * 7 * 6);
        assert!(all_fixed(&t.spec(0), "MatMul"));
        // A constant vector B: [N,6] x [6] -> [N].
        let mut t = T::new();
        let a = t.input(batch(&[6]));
        let v = t.weight(&[6]);
        let y = t.op("MatMul", &[a, v], &[]);
        assert_eq!(t.shape(y), vec![Dim::Sym("N".into())]);
        assert_eq!(t.macs(0), None);
        assert_eq!(t.with_cx(0, matmul_dynamic_macs), 6);
        // A constant stack of matrices: [N,2,5,6] x [2,6,7] -> [N,2,5,7].
        let mut t = T::new();
        let a = t.input(batch(&[2, 5, 6]));
        let w = t.weight(&[2, 6, 7]);
        let y = t.op("MatMul", &[a, w], &[]);
        assert_eq!(t.shape(y), batch(&[2, 5, 7]));
        assert_eq!(t.macs(0), None);
        assert_eq!(t.with_cx(0, matmul_dynamic_macs), 2 * 5 * 7 * 6);
    }

    #[test]
    fn matmul_rejects_scalars_and_mismatched_inner_dims() {
        let mut t = T::new();
        let a = t.input(batch(&[6]));
        let w = t.weight(&[5, 4]);
        t.op("MatMul", &[a, w], &[]);
        assert!(t.err().contains("inner dims differ: [N,6] x [5,4]"), "{}", t.err());
        let mut t = T::new();
        let a = t.input(batch(&[6]));
        let s = t.init(Tensor::f32(vec![], vec![2.0]));
        t.op("MatMul", &[a, s], &[]);
        assert!(t.err().contains("rank >= 1"), "{}", t.err());
    }
}
