//! Element-wise ops: activations (channel-preserving) and binary arithmetic
//! with broadcasting (with constant evaluation, used for shape arithmetic).
use super::{broadcast, ChannelSpec, Fact, InferCx, NodeCx, OpDef, ParamTie, Role, Tie};
use crate::ir::{DType, Data, Dim, Tensor};

/// Unary ops that keep shape and channels.
struct Unary;
/// Clip: min/max are attributes (< 11) or optional inputs.
struct Clip;
/// Softmax/LogSoftmax: couple every element along their axis.
struct Softmax;
#[derive(Clone, Copy)]
enum Bin {
    Add,
    Sub,
    Mul,
    Div,
}
struct Binary(Bin);

pub(super) fn register(r: &mut super::Registry) {
    for op in [
        "Relu",
        "LeakyRelu",
        "Sigmoid",
        "HardSigmoid",
        "HardSwish",
        "Tanh",
        "Elu",
        "Selu",
        "Softplus",
        "Mish",
        "Gelu",
        "Erf",
        "Sqrt",
        "Neg",
        "Abs",
        "Exp",
        "PRelu",
    ] {
        r.insert(op, Box::new(Unary));
    }
    r.insert("Clip", Box::new(Clip));
    r.insert("Softmax", Box::new(Softmax));
    r.insert("LogSoftmax", Box::new(Softmax));
    r.insert("Add", Box::new(Binary(Bin::Add)));
    r.insert("Sub", Box::new(Binary(Bin::Sub)));
    r.insert("Mul", Box::new(Binary(Bin::Mul)));
    r.insert("Div", Box::new(Binary(Bin::Div)));
}

impl OpDef for Unary {
    fn infer(&self, cx: &InferCx) -> Result<Vec<Fact>, String> {
        let x = cx.input(0)?;
        if cx.node.op_type == "PRelu" {
            broadcast(&x.shape, &cx.input(1)?.shape)?;
        }
        Ok(vec![Fact::new(x.dtype, x.shape.clone())])
    }
    fn params(&self, cx: &NodeCx) -> Vec<usize> {
        if cx.node.op_type == "PRelu" {
            vec![1]
        } else {
            vec![]
        }
    }
    fn channels(&self, cx: &NodeCx) -> ChannelSpec {
        let mut s = ChannelSpec::per_channel(cx, &[0]);
        if cx.node.op_type == "PRelu" {
            const_operand_ties(cx, 1, &mut s);
        }
        s
    }
}

impl OpDef for Clip {
    fn infer(&self, cx: &InferCx) -> Result<Vec<Fact>, String> {
        let x = cx.input(0)?;
        Ok(vec![Fact::new(x.dtype, x.shape.clone())])
    }
    fn channels(&self, cx: &NodeCx) -> ChannelSpec {
        ChannelSpec::per_channel(cx, &[0])
    }
}

impl OpDef for Softmax {
    fn infer(&self, cx: &InferCx) -> Result<Vec<Fact>, String> {
        let x = cx.input(0)?;
        Ok(vec![Fact::new(x.dtype, x.shape.clone())])
    }
    fn channels(&self, cx: &NodeCx) -> ChannelSpec {
        let rank = cx.input(0).map(|f| f.rank()).unwrap_or(0);
        let default = if cx.node.attr("axis").is_none() && rank > 0 { -1 } else { 1 };
        let axis = cx.node.attr_int("axis", default).unwrap_or(1);
        let axis = super::norm_axis(axis, rank.max(1)).unwrap_or(1);
        // Opset < 13 flattens from `axis` on, so axis <= 1 couples the channels too.
        if axis <= 1 {
            return ChannelSpec::fixed(
                1,
                1,
                &format!(
                    "{} {} normalises over the channel axis",
                    cx.node.op_type,
                    cx.node.label()
                ),
            );
        }
        ChannelSpec::per_channel(cx, &[0])
    }
}

/// A constant operand broadcast against output 0: if its channel axis has the
/// output's channel count, that axis follows the output's channels.
pub(super) fn const_operand_ties(cx: &NodeCx, slot: usize, s: &mut ChannelSpec) {
    let (Some(f), Some(y)) = (cx.input(slot), cx.output(0)) else { return };
    if !f.is_const() || y.rank() < 2 {
        return;
    }
    let c = y.dim(1);
    let r = y.rank();
    if f.rank() + 1 >= r {
        let axis = f.rank() + 1 - r; // the const's axis aligned with the output's axis 1
        if f.rank() > axis && f.dim(axis as i64) == c && c != Some(1) {
            s.params.push(ParamTie { slot, axis, tie: Tie::Output(0) });
        }
    }
}

fn sym_bin(op: Bin, a: &Dim, b: &Dim) -> Dim {
    match (op, a, b) {
        (_, Dim::Fixed(x), Dim::Fixed(y)) => {
            let (x, y) = (*x as i64, *y as i64);
            let v = match op {
                Bin::Add => x + y,
                Bin::Sub => x - y,
                Bin::Mul => x * y,
                Bin::Div if y != 0 => x / y,
                Bin::Div => return Dim::Sym("?".into()),
            };
            if v >= 0 {
                Dim::Fixed(v as usize)
            } else {
                Dim::Sym(format!("{v}"))
            }
        }
        (Bin::Mul, Dim::Fixed(1), d)
        | (Bin::Mul, d, Dim::Fixed(1))
        | (Bin::Div, d, Dim::Fixed(1)) => d.clone(),
        (Bin::Add, Dim::Fixed(0), d)
        | (Bin::Add, d, Dim::Fixed(0))
        | (Bin::Sub, d, Dim::Fixed(0)) => d.clone(),
        _ => Dim::Sym(format!("({a}{}{b})", ["+", "-", "*", "/"][op as usize])),
    }
}

/// Element-wise broadcast of two tensors' elements.
fn bcast_apply<T: Copy>(
    a: &[T],
    sa: &[usize],
    b: &[T],
    sb: &[usize],
    out: &[usize],
    f: impl Fn(T, T) -> T,
) -> Vec<T> {
    let r = out.len();
    let pad = |s: &[usize]| -> Vec<usize> {
        let mut v = vec![1; r - s.len()];
        v.extend_from_slice(s);
        v
    };
    let (pa, pb) = (pad(sa), pad(sb));
    let strides = |s: &[usize]| -> Vec<usize> {
        let mut st = vec![0; r];
        let mut acc = 1;
        for i in (0..r).rev() {
            st[i] = if s[i] == 1 { 0 } else { acc };
            acc *= s[i];
        }
        st
    };
    let (ta, tb) = (strides(&pa), strides(&pb));
    let n: usize = out.iter().product();
    let mut idx = vec![0usize; r];
    let mut res = Vec::with_capacity(n);
    for _ in 0..n {
        let ia: usize = idx.iter().zip(&ta).map(|(i, s)| i * s).sum();
        let ib: usize = idx.iter().zip(&tb).map(|(i, s)| i * s).sum();
        res.push(f(a[ia], b[ib]));
        for d in (0..r).rev() {
            idx[d] += 1;
            if idx[d] < out[d] {
                break;
            }
            idx[d] = 0;
        }
    }
    res
}

fn eval_bin(op: Bin, a: &Tensor, b: &Tensor, out: &[usize]) -> Option<Tensor> {
    let data = match (&a.data, &b.data) {
        (Data::I64(x), Data::I64(y)) => {
            Data::I64(bcast_apply(x, &a.shape, y, &b.shape, out, |p, q| match op {
                Bin::Add => p.wrapping_add(q),
                Bin::Sub => p.wrapping_sub(q),
                Bin::Mul => p.wrapping_mul(q),
                Bin::Div => {
                    if q == 0 {
                        0
                    } else {
                        p / q
                    }
                }
            }))
        }
        (Data::F32(x), Data::F32(y)) => {
            Data::F32(bcast_apply(x, &a.shape, y, &b.shape, out, |p, q| match op {
                Bin::Add => p + q,
                Bin::Sub => p - q,
                Bin::Mul => p * q,
                Bin::Div => p / q,
            }))
        }
        _ => return None,
    };
    Some(Tensor { dtype: a.dtype, shape: out.to_vec(), data })
}

impl OpDef for Binary {
    fn infer(&self, cx: &InferCx) -> Result<Vec<Fact>, String> {
        let (a, b) = (cx.input(0)?, cx.input(1)?);
        if a.dtype != b.dtype && a.dtype != DType::UNDEFINED && b.dtype != DType::UNDEFINED {
            return Err(format!("operand types differ: {} and {}", a.dtype, b.dtype));
        }
        let shape = broadcast(&a.shape, &b.shape)?;
        let mut f = Fact::new(a.dtype, shape.clone());
        if let (Some(x), Some(y)) = (&a.konst, &b.konst) {
            let out: Vec<usize> = shape.iter().map(|d| d.fixed().unwrap_or(1)).collect();
            if x.len() + y.len() <= 1 << 16 {
                f.konst = eval_bin(self.0, x, y, &out).map(std::sync::Arc::new);
            }
        } else if a.rank() <= 1 && b.rank() <= 1 {
            if let (Some(x), Some(y)) = (a.int_elems(), b.int_elems()) {
                let n = x.len().max(y.len());
                if (x.len() == n || x.len() == 1) && (y.len() == n || y.len() == 1) {
                    f.sym = Some(
                        (0..n)
                            .map(|i| {
                                sym_bin(self.0, &x[i.min(x.len() - 1)], &y[i.min(y.len() - 1)])
                            })
                            .collect(),
                    );
                }
            }
        }
        Ok(vec![f])
    }
    fn channels(&self, cx: &NodeCx) -> ChannelSpec {
        let Some(c) = cx.out_channels(0) else {
            return ChannelSpec {
                inputs: vec![Role::Ignore; 2],
                outputs: vec![Role::Ignore],
                ..Default::default()
            };
        };
        let vars: Vec<usize> = (0..2)
            .filter(|&i| {
                !cx.is_const(i)
                    && cx.in_channels(i) == Some(c)
                    && cx.input(i).is_some_and(|f| f.rank() == cx.output(0).map_or(0, |y| y.rank()))
            })
            .collect();
        let mut s = ChannelSpec::per_channel(cx, &vars);
        if vars.len() >= 2 && matches!(self.0, Bin::Add | Bin::Sub) {
            let why = format!("coupled by the residual {} {}", cx.node.op_type, cx.node.label());
            for &i in &vars {
                s.inputs[i] = Role::Fixed(why.clone());
            }
            s.outputs[0] = Role::Fixed(why);
        }
        for i in 0..2 {
            if cx.is_const(i) {
                const_operand_ties(cx, i, &mut s);
            } else if !vars.contains(&i)
                && cx.input(i).is_some_and(|f| f.rank() >= 2 && f.dim(1) != Some(1))
            {
                s.inputs[i] = Role::Fixed(format!(
                    "{} {} broadcasts a tensor whose channels differ",
                    cx.node.op_type,
                    cx.node.label()
                ));
            }
        }
        s
    }
}
