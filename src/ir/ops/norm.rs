//! Per-channel normalisations.
//! * BatchNormalization (inference form; training-mode outputs are allowed).
//!   Spec: https://onnx.ai/onnx/operators/onnx__BatchNormalization.html (opsets 7, 9, 14, 15).
//! * InstanceNormalization: each sample's channel normalised over its spatial axes,
//!   then per-channel scale and bias (parameters pruned with the input's channels).
//!   Spec: https://onnx.ai/onnx/operators/onnx__InstanceNormalization.html (opsets 1, 6).
use super::kernel::{Act, Bin, BnArgs, Engine, RunCx, H};
use super::{ChannelSpec, Fact, InferCx, NodeCx, OpDef, OpError, ParamTie, Tie};

struct BatchNorm;
struct InstanceNorm;

pub(super) fn register(r: &mut super::Registry) {
    r.insert("BatchNormalization", Box::new(BatchNorm));
    r.insert("InstanceNormalization", Box::new(InstanceNorm));
}

/// Checks that input 0 has at least `rank` axes and a fixed channel count `c`, and
/// that each of `vectors` (input slot, name) has shape `[c]`; returns `c`.
fn per_channel_inputs(
    cx: &InferCx,
    rank: usize,
    vectors: &[(usize, &str)],
) -> Result<usize, OpError> {
    let x = cx.input(0)?;
    if x.rank() < rank {
        let what = if rank > 2 { "channel and spatial axes" } else { "a channel axis" };
        return Err(bad!("input must have {what}, found shape {}", crate::ir::fmt_shape(&x.shape)));
    }
    let c = x.dim(1).ok_or("the channel dim must be fixed")?;
    for &(i, what) in vectors {
        let p = cx.input(i)?;
        if p.concrete(0) != [c] {
            return Err(bad!(
                "{what} has shape {} but the input has {c} channels",
                crate::ir::fmt_shape(&p.shape)
            ));
        }
    }
    Ok(c)
}

/// Channel c of input 0 is channel c of output 0; the vectors in `slots` follow it.
fn per_channel_spec(cx: &NodeCx, slots: std::ops::Range<usize>) -> ChannelSpec {
    let mut s = ChannelSpec::per_channel(cx, &[0]);
    for slot in slots {
        s.params.push(ParamTie { slot, axis: 0, tie: Tie::Output(0) });
    }
    s
}

impl OpDef for BatchNorm {
    /// Reads input 0 as `[N, C, spatial...]`.
    fn channels_first(&self) -> bool {
        true
    }
    fn infer(&self, cx: &InferCx) -> Result<Vec<Fact>, OpError> {
        let vectors = [(1, "scale"), (2, "bias"), (3, "mean"), (4, "var")];
        let c = per_channel_inputs(cx, 2, &vectors)?;
        let x = cx.input(0)?;
        let mut out = vec![Fact::new(x.dtype, x.shape.clone())];
        for _ in 1..cx.node.outputs.len() {
            out.push(Fact::new(x.dtype, vec![crate::ir::Dim::Fixed(c)]));
        }
        Ok(out)
    }
    fn params(&self, _cx: &NodeCx) -> Vec<usize> {
        vec![1, 2]
    }
    fn channels(&self, cx: &NodeCx) -> ChannelSpec {
        let mut s = per_channel_spec(cx, 1..5);
        if cx.node.outputs.len() > 1 {
            for o in 1..cx.node.outputs.len() {
                s.outputs[o] = super::Role::Ignore;
            }
        }
        s
    }
    /// Training mode updates the running statistics in place with the ONNX momentum
    /// (PyTorch momentum 1 − m; the variance update unbiased like PyTorch's); extra
    /// outputs are the running mean and variance.
    fn run(&self, cx: &RunCx, e: &mut dyn Engine) -> Result<Vec<H>, OpError> {
        let stats = [cx.x(1)?, cx.x(2)?, cx.x(3)?, cx.x(4)?];
        let momentum = match cx.bn_momentum {
            Some(m) => m,
            None => cx.node.attr_float("momentum", 0.9)? as f64,
        };
        let eps = cx.node.attr_float("epsilon", 1e-5)? as f64;
        let y = e.batch_norm(cx.x(0)?, stats, BnArgs { train: cx.train, momentum, eps })?;
        let extra = cx.node.outputs.iter().skip(1).flatten().count();
        Ok(std::iter::once(y).chain(stats[2..].iter().copied().take(extra)).collect())
    }
    fn buffers(&self) -> Vec<usize> {
        vec![3, 4]
    }
    fn is_batch_norm(&self) -> bool {
        true
    }
    /// Its backward reads its input, not its output.
    fn output_overwritable(&self) -> bool {
        true
    }
}

impl OpDef for InstanceNorm {
    /// Reads input 0 as `[N, C, spatial...]`.
    fn channels_first(&self) -> bool {
        true
    }
    fn infer(&self, cx: &InferCx) -> Result<Vec<Fact>, OpError> {
        per_channel_inputs(cx, 3, &[(1, "scale"), (2, "bias")])?;
        let x = cx.input(0)?;
        Ok(vec![Fact::new(x.dtype, x.shape.clone())])
    }
    fn params(&self, _cx: &NodeCx) -> Vec<usize> {
        vec![1, 2]
    }
    fn channels(&self, cx: &NodeCx) -> ChannelSpec {
        per_channel_spec(cx, 1..3)
    }
    /// `(x − mean) / √(var + ε) · scale + bias`, mean and (biased) variance of each
    /// sample's channel over its spatial axes.
    fn run(&self, cx: &RunCx, e: &mut dyn Engine) -> Result<Vec<H>, OpError> {
        let x = cx.x(0)?;
        let rank = e.shape(x).len();
        let spatial: Vec<i64> = (2..rank as i64).collect();
        let mean = e.reduce(x, &spatial, true, false)?;
        let d = e.binary(Bin::Sub, x, mean)?;
        let d2 = e.binary(Bin::Mul, d, d)?;
        let var = e.reduce(d2, &spatial, true, false)?;
        let var = e.shift(var, cx.node.attr_float("epsilon", 1e-5)? as f64)?;
        let std = e.act(Act::Sqrt, var, false)?;
        let y = e.binary(Bin::Div, d, std)?;
        // [C] -> [C, 1, ...] broadcasts over the spatial axes.
        let mut shape = vec![-1];
        shape.resize(rank - 1, 1);
        let scale = e.reshape(cx.x(1)?, &shape)?;
        let bias = e.reshape(cx.x(2)?, &shape)?;
        let y = e.binary(Bin::Mul, y, scale)?;
        Ok(vec![e.binary(Bin::Add, y, bias)?])
    }
}

#[cfg(test)]
mod tests {
    use super::super::testkit::{batch, same, tie, T};
    use super::super::{Role, Tie};
    use crate::ir::Dim;

    /// BatchNormalization of `[N, c, 4, 4]` with parameters of `p` elements and `n_out` outputs.
    fn bn(x: &[usize], p: usize, n_out: usize) -> (T, Vec<usize>) {
        let mut t = T::new();
        let x = t.input(batch(x));
        let mut ins = vec![Some(x)];
        for _ in 0..4 {
            ins.push(Some(t.weight(&[p])));
        }
        let outs = t.node("BatchNormalization", &ins, n_out, &[]);
        (t, outs)
    }

    #[test]
    fn batch_norm_keeps_the_shape_and_ties_all_four_vectors() {
        let (t, y) = bn(&[3, 4, 4], 3, 1);
        assert_eq!(t.shape(y[0]), batch(&[3, 4, 4]));
        assert_eq!(t.macs(0), None, "BN costs no MACs (it folds into the conv)");
        assert_eq!(t.params(0), vec![1, 2], "scale and bias train; running stats do not");
        let s = t.spec(0);
        assert_eq!(s.inputs[0], Role::Pass);
        assert_eq!(s.outputs, vec![Role::Pass]);
        assert_eq!(s.links, same(0, 0, 3));
        let want: Vec<_> = (1..5).map(|slot| tie(slot, 0, Tie::Output(0))).collect();
        assert_eq!(s.params, want);
    }

    #[test]
    fn batch_norm_training_outputs_are_per_channel_vectors() {
        let (t, y) = bn(&[2, 5], 2, 3);
        assert_eq!(t.shape(y[0]), batch(&[2, 5]));
        assert_eq!(t.shape(y[1]), vec![Dim::Fixed(2)]);
        assert_eq!(t.shape(y[2]), vec![Dim::Fixed(2)]);
        let s = t.spec(0);
        assert_eq!(s.outputs, vec![Role::Pass, Role::Ignore, Role::Ignore]);
        assert_eq!(s.links, same(0, 0, 2));
    }

    #[test]
    fn batch_norm_rejects_bad_ranks_and_parameter_sizes() {
        let (t, _) = bn(&[3, 4, 4], 4, 1);
        let e = t.err();
        assert!(e.contains("scale has shape [4] but the input has 3 channels"), "{e}");
        let mut t = T::new();
        let x = t.input(vec![Dim::Sym("N".into())]);
        let p: Vec<_> = (0..4).map(|_| t.weight(&[1])).collect();
        t.op("BatchNormalization", &[x, p[0], p[1], p[2], p[3]], &[]);
        assert!(t.err().contains("must have a channel axis"), "{}", t.err());
        let mut t = T::new();
        let x = t.input(batch(&[3, 4]));
        let p: Vec<_> = (0..3).map(|_| t.weight(&[3])).collect();
        t.op("BatchNormalization", &[x, p[0], p[1], p[2]], &[]);
        assert!(t.err().contains("input 4 is missing"), "{}", t.err());
    }

    #[test]
    fn instance_norm_keeps_the_shape_and_ties_scale_and_bias_to_the_channels() {
        let mut t = T::new();
        let x = t.input(batch(&[3, 4, 4]));
        let (scale, bias) = (t.weight(&[3]), t.weight(&[3]));
        let y = t.op("InstanceNormalization", &[x, scale, bias], &[]);
        assert_eq!(t.shape(y), batch(&[3, 4, 4]));
        assert_eq!(t.macs(0), None, "normalisation costs no MACs");
        assert_eq!(t.params(0), vec![1, 2], "scale and bias train");
        let s = t.spec(0);
        assert_eq!((s.inputs[0].clone(), s.outputs.clone()), (Role::Pass, vec![Role::Pass]));
        assert_eq!(s.links, same(0, 0, 3));
        assert_eq!(s.params, vec![tie(1, 0, Tie::Output(0)), tie(2, 0, Tie::Output(0))]);
        let def = super::super::lookup(&t.g.nodes[0]).expect("registered");
        assert!(def.buffers().is_empty() && !def.is_batch_norm() && !def.folds_bn());
    }

    #[test]
    fn instance_norm_rejects_inputs_without_spatial_axes_and_bad_vectors() {
        let mut t = T::new();
        let x = t.input(batch(&[3]));
        let (scale, bias) = (t.weight(&[3]), t.weight(&[3]));
        t.op("InstanceNormalization", &[x, scale, bias], &[]);
        assert!(t.err().contains("must have channel and spatial axes"), "{}", t.err());
        let mut t = T::new();
        let x = t.input(batch(&[3, 5]));
        let (scale, bias) = (t.weight(&[3]), t.weight(&[2]));
        t.op("InstanceNormalization", &[x, scale, bias], &[]);
        assert!(t.err().contains("bias has shape [2] but the input has 3 channels"), "{}", t.err());
    }
}
