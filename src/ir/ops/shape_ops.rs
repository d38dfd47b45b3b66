//! Shape arithmetic and constants: Shape, Gather, Cast, ConstantOfShape,
//! Constant, Identity, Dropout. These fold away at import (given the static
//! non-batch input shape); Identity and Dropout are dropped by a pass.
use super::kernel::{Engine, RunCx, H};
use super::{norm_axis, ChannelSpec, Fact, InferCx, NodeCx, OpDef, OpError, Role};
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
    fn run(&self, cx: &RunCx, e: &mut dyn Engine) -> Result<Vec<H>, OpError> {
        let s = e.shape(cx.x(0)?);
        let r = s.len() as i64;
        let clampi = |v: i64| (if v < 0 { v + r } else { v }).clamp(0, r) as usize;
        let start = clampi(cx.node.attr_int("start", 0)?);
        let end = clampi(cx.node.attr_int("end", r)?);
        Ok(vec![e.constant(&Tensor::i64_vec(s[start..end.max(start)].to_vec()))?])
    }
    fn infer(&self, cx: &InferCx) -> Result<Vec<Fact>, OpError> {
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
    fn run(&self, cx: &RunCx, e: &mut dyn Engine) -> Result<Vec<H>, OpError> {
        let x = cx.x(0)?;
        let axis = super::kernel::axis(cx.node.attr_int("axis", 0)?, e.shape(x).len())?;
        Ok(vec![e.gather(x, axis, cx.x(1)?)?])
    }
    fn infer(&self, cx: &InferCx) -> Result<Vec<Fact>, OpError> {
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
        let rank = cx.input(0).map_or(0, |f| f.rank());
        let axis = norm_axis(cx.node.attr_int("axis", 0).unwrap_or(0), rank.max(1)).unwrap_or(0);
        if rank >= 2 && axis <= 1 {
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
    fn run(&self, cx: &RunCx, e: &mut dyn Engine) -> Result<Vec<H>, OpError> {
        Ok(vec![e.cast(cx.x(0)?, cx.node.attr_int("to", 1)?)?])
    }
    fn infer(&self, cx: &InferCx) -> Result<Vec<Fact>, OpError> {
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
    fn run(&self, cx: &RunCx, e: &mut dyn Engine) -> Result<Vec<H>, OpError> {
        let shape = cx.ints(e, 0, "shape")?;
        let value = match cx.node.attr("value") {
            Some(Attr::Tensor(t)) => t.clone(),
            _ => Tensor::f32(vec![1], vec![0.0]),
        };
        let v = e.constant(&value)?;
        let v = e.reshape(v, &[-1])?;
        Ok(vec![e.expand(v, &shape)?])
    }
    fn infer(&self, cx: &InferCx) -> Result<Vec<Fact>, OpError> {
        let dims = cx.input(0)?.int_elems().ok_or("the shape (input 0) must be known")?;
        let value = match cx.node.attr("value") {
            Some(Attr::Tensor(t)) => t.clone(),
            _ => Tensor::f32(vec![1], vec![0.0]),
        };
        let mut f = Fact::new(value.dtype, dims.clone());
        if let Some(shape) = dims.iter().map(|d| d.fixed()).collect::<Option<Vec<usize>>>() {
            let n = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
            if let Some(n) = n.filter(|&n| n <= 1 << 20) {
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
pub fn constant_value(node: &crate::ir::Node) -> Result<Tensor, OpError> {
    let (name, a) = node.attrs.first().ok_or("a Constant needs a value attribute")?;
    Ok(match (name.as_str(), a) {
        ("value", Attr::Tensor(t)) => t.clone(),
        ("value_float", Attr::Float(f)) => Tensor::f32(vec![], vec![*f]),
        ("value_floats", Attr::Floats(v)) => Tensor::f32(vec![v.len()], v.clone()),
        ("value_int", Attr::Int(i)) => Tensor::i64(vec![], vec![*i]),
        ("value_ints", Attr::Ints(v)) => Tensor::i64_vec(v.clone()),
        (n, a) => return Err(bad!("unsupported Constant attribute '{n}' ({})", a.kind())),
    })
}

impl OpDef for Constant {
    fn run(&self, cx: &RunCx, e: &mut dyn Engine) -> Result<Vec<H>, OpError> {
        Ok(vec![e.constant(&constant_value(cx.node)?)?])
    }
    fn infer(&self, cx: &InferCx) -> Result<Vec<Fact>, OpError> {
        Ok(vec![Fact::konst(constant_value(cx.node)?)])
    }
    fn channels(&self, _cx: &NodeCx) -> ChannelSpec {
        ChannelSpec { inputs: vec![], outputs: vec![Role::Ignore], ..Default::default() }
    }
}

impl OpDef for Identity {
    fn run(&self, cx: &RunCx, _e: &mut dyn Engine) -> Result<Vec<H>, OpError> {
        Ok(vec![cx.x(0)?])
    }
    fn infer(&self, cx: &InferCx) -> Result<Vec<Fact>, OpError> {
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
    fn forwards_input(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::super::testkit::{all_fixed, batch, int, ints, same, T};
    use super::super::Role;
    use crate::ir::{Attr, DType, Dim, Tensor};

    use super::super::fixed;
    use super::super::testkit::n;

    #[test]
    fn shape_gives_constants_or_symbolic_elements() {
        for (attrs, len, konst, sym) in [
            (vec![], 4, None, Some([vec![n()], fixed(&[3, 4, 5])].concat())),
            (vec![("start", int(1))], 3, Some(vec![3, 4, 5]), None),
            (vec![("start", int(-2))], 2, Some(vec![4, 5]), None),
            (vec![("end", int(-1))], 3, None, Some(vec![n(), Dim::Fixed(3), Dim::Fixed(4)])),
        ] {
            let mut t = T::new();
            let x = t.input(batch(&[3, 4, 5]));
            let s = t.op("Shape", &[x], &attrs);
            let f = t.facts()[s].clone().unwrap();
            assert_eq!((f.dtype, f.shape), (DType::I64, fixed(&[len])), "{attrs:?}");
            assert_eq!(f.konst.and_then(|k| k.to_i64()), konst, "{attrs:?}");
            assert_eq!(f.sym, sym, "{attrs:?}");
            assert!(all_fixed(&t.spec(0), "read by a Shape node"));
            assert_eq!(t.macs(0), None);
        }
    }

    #[test]
    fn gather_picks_shape_elements() {
        let mut t = T::new();
        let x = t.input(batch(&[3, 4, 5]));
        let s = t.op("Shape", &[x], &[]);
        let one = t.init(Tensor::i64(vec![], vec![1]));
        let last = t.ints(&[-1]);
        let first = t.ints(&[0]);
        let c = t.op("Gather", &[s, one], &[]);
        let w = t.op("Gather", &[s, last], &[]);
        let b = t.op("Gather", &[s, first], &[]);
        assert_eq!(t.shape(c), vec![], "a scalar index gives a scalar");
        assert_eq!(t.konst(c), Some(vec![3]));
        assert_eq!((t.shape(w), t.konst(w)), (fixed(&[1]), Some(vec![5])));
        assert_eq!(t.facts()[b].as_ref().unwrap().sym, Some(vec![n()]));
        let mut t = T::new();
        let x = t.input(batch(&[3, 4, 5]));
        let s = t.op("Shape", &[x], &[]);
        let bad = t.ints(&[7]);
        t.op("Gather", &[s, bad], &[]);
        assert!(t.err().contains("Gather index out of range"), "{}", t.err());
    }

    #[test]
    fn gather_passes_channels_only_off_the_batch_and_channel_axes() {
        let mut t = T::new();
        let x = t.input(batch(&[6, 4, 4]));
        let idx = t.ints(&[0, 2]);
        let y = t.op("Gather", &[x, idx], &[("axis", int(2))]);
        assert_eq!(t.shape(y), batch(&[6, 2, 4]));
        let s = t.spec(0);
        assert_eq!(s.inputs, vec![Role::Pass, Role::Ignore]);
        assert_eq!(s.links, same(0, 0, 6));
        // Axis 1, written any way, permutes channels: a barrier (-3 was taken for identity).
        for axis in [1, -3, 0, -4] {
            let mut t = T::new();
            let x = t.input(batch(&[6, 4, 4]));
            let idx = t.ints(&[5, 4, 3, 2, 1, 0]);
            let y = t.op("Gather", &[x, idx], &[("axis", int(axis))]);
            if axis == 1 || axis == -3 {
                assert_eq!(t.shape(y), batch(&[6, 4, 4]), "axis {axis}");
            }
            let s = t.spec(0);
            assert!(all_fixed(&s, "indexes the channel or batch axis"), "axis {axis}: {s:?}");
        }
        let mut t = T::new();
        let x = t.input(batch(&[6, 4, 4]));
        let idx = t.ints(&[0]);
        t.op("Gather", &[x, idx], &[("axis", int(4))]);
        assert!(t.err().contains("axis 4 is out of range for rank 4"), "{}", t.err());
    }

    #[test]
    fn cast_converts_constants_and_keeps_symbols() {
        let mut t = T::new();
        let x = t.input(batch(&[3, 4]));
        let s = t.op("Shape", &[x], &[]);
        let c = t.ints(&[1, 2]);
        let cs = t.op("Cast", &[s], &[("to", int(6))]);
        let cf = t.op("Cast", &[c], &[("to", int(1))]);
        let cx = t.op("Cast", &[x], &[("to", int(10))]);
        let f = t.facts();
        let cs = f[cs].as_ref().unwrap();
        assert_eq!((cs.dtype, cs.sym.clone()), (DType::I32, Some(batch(&[3, 4]))));
        let cf = f[cf].as_ref().unwrap();
        assert_eq!(cf.dtype, DType::F32);
        assert_eq!(cf.konst.as_ref().unwrap().as_f32().unwrap(), &[1.0, 2.0]);
        let cx = f[cx].as_ref().unwrap();
        assert_eq!((cx.dtype, cx.shape.clone()), (DType::F16, batch(&[3, 4])));
        assert_eq!(t.spec(3).links, same(0, 0, 3));
    }

    #[test]
    fn constant_of_shape_fills_known_shapes() {
        let mut t = T::new();
        let s = t.ints(&[2, 3]);
        let filled = Attr::Tensor(Tensor::f32(vec![1], vec![1.5]));
        let y = t.op("ConstantOfShape", &[s], &[("value", filled)]);
        let z = t.op("ConstantOfShape", &[s], &[]);
        let i = t.op(
            "ConstantOfShape",
            &[s],
            &[("value", Attr::Tensor(Tensor::i64(vec![1], vec![7])))],
        );
        let f = t.facts();
        let y = f[y].as_ref().unwrap();
        assert_eq!(y.shape, fixed(&[2, 3]));
        assert_eq!(y.konst.as_ref().unwrap().as_f32().unwrap(), &[1.5; 6]);
        assert_eq!(f[z].as_ref().unwrap().konst.as_ref().unwrap().as_f32().unwrap(), &[0.0; 6]);
        assert_eq!(f[i].as_ref().unwrap().konst.as_ref().unwrap().to_i64(), Some(vec![7; 6]));
    }

    #[test]
    fn constant_of_shape_rejects_unknown_and_absurd_shapes() {
        let mut t = T::new();
        let s = t.input(vec![Dim::Fixed(2)]);
        t.op("ConstantOfShape", &[s], &[]);
        assert!(t.err().contains("the shape (input 0) must be known"), "{}", t.err());
        // 2^80 elements: an error from the size check, not an overflow.
        let mut t = T::new();
        let s = t.ints(&[1 << 40, 1 << 40]);
        t.op("ConstantOfShape", &[s], &[]);
        assert!(t.err().contains("more than the"), "{}", t.err());
    }

    #[test]
    fn constant_holds_its_attribute() {
        for (attr, dtype, shape, ints_) in [
            ("value_ints", DType::I64, vec![2], Some(vec![4, 5])),
            ("value_int", DType::I64, vec![], Some(vec![9])),
            ("value_float", DType::F32, vec![], None),
            ("value_floats", DType::F32, vec![3], None),
            ("value", DType::F32, vec![2, 2], None),
        ] {
            let a = match attr {
                "value_ints" => ints(&[4, 5]),
                "value_int" => int(9),
                "value_float" => Attr::Float(0.5),
                "value_floats" => Attr::Floats(vec![1.0, 2.0, 3.0]),
                _ => Attr::Tensor(Tensor::f32(vec![2, 2], vec![1.0; 4])),
            };
            let mut t = T::new();
            let y = t.op("Constant", &[], &[(attr, a)]);
            let f = t.facts()[y].clone().unwrap();
            assert_eq!((f.dtype, &f.shape), (dtype, &fixed(&shape)), "{attr}");
            assert!(f.is_const(), "{attr}");
            if ints_.is_some() {
                assert_eq!(t.konst(y), ints_, "{attr}");
            }
            let s = t.spec(0);
            assert_eq!((s.inputs.len(), s.outputs.clone()), (0, vec![Role::Ignore]));
        }
        let mut t = T::new();
        t.op("Constant", &[], &[("sparse_value", Attr::Opaque(vec![]))]);
        assert!(t.err().contains("unsupported Constant attribute 'sparse_value'"), "{}", t.err());
        let mut t = T::new();
        t.op("Constant", &[], &[]);
        assert!(t.err().contains("needs a value attribute"), "{}", t.err());
    }

    #[test]
    fn identity_and_dropout_forward_the_fact() {
        let mut t = T::new();
        let c = t.ints(&[3, 1]);
        let y = t.op("Identity", &[c], &[]);
        assert_eq!(t.konst(y), Some(vec![3, 1]));
        let mut t = T::new();
        let x = t.input(batch(&[3, 4]));
        let y = t.node("Dropout", &[Some(x)], 2, &[]);
        let f = t.facts();
        assert_eq!(f[y[0]].as_ref().unwrap().shape, batch(&[3, 4]));
        assert_eq!(f[y[1]].as_ref().unwrap().dtype, DType::BOOL);
        let s = t.spec(0);
        assert_eq!(s.links, same(0, 0, 3));
        assert_eq!(s.outputs[0], Role::Pass);
        assert!(matches!(&s.outputs[1], Role::Fixed(m) if m.contains("mask")), "{s:?}");
    }
}
