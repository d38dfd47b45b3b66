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
