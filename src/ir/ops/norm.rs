//! BatchNormalization (inference form; training-mode outputs are allowed).
//! Spec: https://onnx.ai/onnx/operators/onnx__BatchNormalization.html (opsets 7, 9, 14, 15).
use super::{ChannelSpec, Fact, InferCx, NodeCx, OpDef, ParamTie, Tie};

struct BatchNorm;

pub(super) fn register(r: &mut super::Registry) {
    r.insert("BatchNormalization", Box::new(BatchNorm));
}

impl OpDef for BatchNorm {
    fn infer(&self, cx: &InferCx) -> Result<Vec<Fact>, String> {
        let x = cx.input(0)?;
        if x.rank() < 2 {
            return Err(format!(
                "input must have a channel axis, found shape {}",
                crate::ir::fmt_shape(&x.shape)
            ));
        }
        let c = x.dim(1).ok_or("the channel dim must be fixed")?;
        for (i, what) in [(1, "scale"), (2, "bias"), (3, "mean"), (4, "var")] {
            let p = cx.input(i)?;
            if p.concrete(0) != [c] {
                return Err(format!(
                    "{what} has shape {} but the input has {c} channels",
                    crate::ir::fmt_shape(&p.shape)
                ));
            }
        }
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
        let mut s = ChannelSpec::per_channel(cx, &[0]);
        for slot in 1..5 {
            s.params.push(ParamTie { slot, axis: 0, tie: Tie::Output(0) });
        }
        if cx.node.outputs.len() > 1 {
            for o in 1..cx.node.outputs.len() {
                s.outputs[o] = super::Role::Ignore;
            }
        }
        s
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
}
