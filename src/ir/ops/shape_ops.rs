//! Shape arithmetic and constants: Shape, Gather, Cast, ConstantOfShape,
//! Constant, Identity, Dropout. These fold away at import (given the static
//! non-batch input shape); Identity and Dropout are dropped by a pass.
use super::{norm_axis, ChannelSpec, Fact, InferCx, NodeCx, OpDef, Role};
use crate::ir::{Attr, DType, Data, Dim, Tensor};
use std::sync::Arc;

struct ShapeOp;
struct Gather;
struct Cast;
struct ConstantOfShape;
struct Constant;
struct Identity;

pub(super) fn register(r: &mut super::Registry) {
    r.insert("Shape", Box::new(ShapeOp));
    r.insert("Gather", Box::new(Gather));
    r.insert("Cast", Box::new(Cast));
    r.insert("ConstantOfShape", Box::new(ConstantOfShape));
    r.insert("Constant", Box::new(Constant));
    r.insert("Identity", Box::new(Identity));
    r.insert("Dropout", Box::new(Identity));
}

impl OpDef for ShapeOp {
    fn infer(&self, cx: &InferCx) -> Result<Vec<Fact>, String> {
        let x = cx.input(0)?;
        let r = x.rank() as i64;
        let clampi = |v: i64| (if v < 0 { v + r } else { v }).clamp(0, r) as usize;
        let start = clampi(cx.node.attr_int("start", 0)?);
        let end = clampi(cx.node.attr_int("end", r)?);
        let dims: Vec<Dim> = x.shape[start..end.max(start)].to_vec();
        let mut f = Fact::new(DType::I64, vec![Dim::Fixed(dims.len())]);
        if dims.iter().all(|d| d.fixed().is_some()) {
            f.konst = Some(Arc::new(Tensor::i64_vec(
                dims.iter().map(|d| d.fixed().unwrap_or(0) as i64).collect(),
            )));
        } else {
            f.sym = Some(dims);
        }
        Ok(vec![f])
    }
    fn channels(&self, _cx: &NodeCx) -> ChannelSpec {
        ChannelSpec::fixed(1, 1, "its shape is read by a Shape node")
    }
}

impl OpDef for Gather {
    fn infer(&self, cx: &InferCx) -> Result<Vec<Fact>, String> {
        let (x, idx) = (cx.input(0)?, cx.input(1)?);
        let axis = norm_axis(cx.node.attr_int("axis", 0)?, x.rank())?;
        let mut shape = x.shape[..axis].to_vec();
        shape.extend(idx.shape.iter().cloned());
        shape.extend(x.shape[axis + 1..].iter().cloned());
        let mut f = Fact::new(x.dtype, shape);
        if x.rank() == 1 {
            if let (Some(elems), Some(ix)) =
                (x.int_elems(), idx.konst.as_ref().and_then(|t| t.to_i64()))
            {
                let n = elems.len() as i64;
                let picked: Option<Vec<Dim>> = ix
                    .iter()
                    .map(|&i| elems.get((if i < 0 { i + n } else { i }) as usize).cloned())
                    .collect();
                let picked = picked.ok_or("Gather index out of range")?;
                if picked.iter().all(|d| d.fixed().is_some())
                    && (x.konst.is_some() || x.sym.is_some())
                {
                    let mut t = Tensor::i64(
                        idx.konst.as_ref().map(|t| t.shape.clone()).unwrap_or_default(),
                        picked.iter().map(|d| d.fixed().unwrap_or(0) as i64).collect(),
                    );
                    if x.konst.is_some() {
                        t = t.cast(x.dtype).unwrap_or(t);
                    }
                    f.konst = Some(Arc::new(t));
                } else {
                    f.sym = Some(picked);
                }
            }
        }
        Ok(vec![f])
    }
    fn channels(&self, cx: &NodeCx) -> ChannelSpec {
        let axis = cx.node.attr_int("axis", 0).unwrap_or(0);
        if cx.input(0).is_some_and(|f| f.rank() >= 2) && (axis == 1 || axis == 0) {
            return ChannelSpec::fixed(
                2,
                1,
                &format!("Gather {} indexes the channel or batch axis", cx.node.label()),
            );
        }
        ChannelSpec::per_channel(cx, &[0])
    }
}

impl OpDef for Cast {
    fn infer(&self, cx: &InferCx) -> Result<Vec<Fact>, String> {
        let x = cx.input(0)?;
        let to = DType(cx.node.attr_int("to", 1)? as i32);
        let mut f = Fact::new(to, x.shape.clone());
        f.konst = x.konst.as_ref().and_then(|t| t.cast(to)).map(Arc::new);
        if to.is_int() {
            f.sym = x.sym.clone();
        }
        Ok(vec![f])
    }
    fn channels(&self, cx: &NodeCx) -> ChannelSpec {
        ChannelSpec::per_channel(cx, &[0])
    }
}

impl OpDef for ConstantOfShape {
    fn infer(&self, cx: &InferCx) -> Result<Vec<Fact>, String> {
        let dims = cx.input(0)?.int_elems().ok_or("the shape (input 0) must be known")?;
        let value = match cx.node.attr("value") {
            Some(Attr::Tensor(t)) => t.clone(),
            _ => Tensor::f32(vec![1], vec![0.0]),
        };
        let mut f = Fact::new(value.dtype, dims.clone());
        if let Some(shape) = dims.iter().map(|d| d.fixed()).collect::<Option<Vec<usize>>>() {
            let n: usize = shape.iter().product();
            if n <= 1 << 20 {
                let data = match &value.data {
                    Data::F32(v) => Data::F32(vec![v.first().copied().unwrap_or(0.0); n]),
                    Data::I64(v) => Data::I64(vec![v.first().copied().unwrap_or(0); n]),
                    Data::I32(v) => Data::I32(vec![v.first().copied().unwrap_or(0); n]),
                    Data::F64(v) => Data::F64(vec![v.first().copied().unwrap_or(0.0); n]),
                    Data::Bool(v) => Data::Bool(vec![v.first().copied().unwrap_or(false); n]),
                    _ => return Ok(vec![f]),
                };
                f.konst = Some(Arc::new(Tensor { dtype: value.dtype, shape, data }));
            }
        }
        Ok(vec![f])
    }
}

/// The tensor a Constant node holds.
pub fn constant_value(node: &crate::ir::Node) -> Result<Tensor, String> {
    let (name, a) = node.attrs.first().ok_or("a Constant needs a value attribute")?;
    Ok(match (name.as_str(), a) {
        ("value", Attr::Tensor(t)) => t.clone(),
        ("value_float", Attr::Float(f)) => Tensor::f32(vec![], vec![*f]),
        ("value_floats", Attr::Floats(v)) => Tensor::f32(vec![v.len()], v.clone()),
        ("value_int", Attr::Int(i)) => Tensor::i64(vec![], vec![*i]),
        ("value_ints", Attr::Ints(v)) => Tensor::i64_vec(v.clone()),
        (n, a) => return Err(format!("unsupported Constant attribute '{n}' ({})", a.kind())),
    })
}

impl OpDef for Constant {
    fn infer(&self, cx: &InferCx) -> Result<Vec<Fact>, String> {
        Ok(vec![Fact::konst(constant_value(cx.node)?)])
    }
    fn channels(&self, _cx: &NodeCx) -> ChannelSpec {
        ChannelSpec { inputs: vec![], outputs: vec![Role::Ignore], ..Default::default() }
    }
}

impl OpDef for Identity {
    fn infer(&self, cx: &InferCx) -> Result<Vec<Fact>, String> {
        let x = cx.input(0)?;
        let mut out = vec![x.clone()];
        if cx.node.outputs.len() > 1 {
            out.push(Fact::new(DType::BOOL, x.shape.clone())); // Dropout mask
        }
        Ok(out)
    }
    fn channels(&self, cx: &NodeCx) -> ChannelSpec {
        let mut s = ChannelSpec::per_channel(cx, &[0]);
        for o in 1..cx.node.outputs.len() {
            s.outputs[o] = Role::Fixed("Dropout mask output".into());
        }
        s
    }
}
