//! Element-wise ops: activations (channel-preserving) and binary arithmetic
//! with broadcasting (with constant evaluation, used for shape arithmetic).
use super::kernel::{Act, Bin, Engine, RunCx, H};
use super::{broadcast, ChannelSpec, Fact, InferCx, NodeCx, OpDef, OpError, ParamTie, Role, Tie};
use crate::ir::{DType, Data, Dim, Tensor};

/// Unary ops that keep shape and channels.
struct Unary(Un);
/// Clip: min/max are attributes (< 11) or optional inputs.
struct Clip;
/// Softmax/LogSoftmax (`true`): couple every element along their axis.
struct Softmax(bool);
struct Binary(Bin);

/// The functions of [`Unary`].
#[derive(Clone, Copy, PartialEq)]
enum Un {
    Act(Act),
    LeakyRelu,
    HardSigmoid,
    Elu,
    Selu,
    Gelu,
    /// The slope (input 1) is a parameter.
    PRelu,
}

/// Element-wise ops of one data input (PRelu's slope is a parameter).
const UNARY: [(&str, Un); 17] = [
    ("Relu", Un::Act(Act::Relu)),
    ("LeakyRelu", Un::LeakyRelu),
    ("Sigmoid", Un::Act(Act::Sigmoid)),
    ("HardSigmoid", Un::HardSigmoid),
    ("HardSwish", Un::Act(Act::HardSwish)),
    ("Tanh", Un::Act(Act::Tanh)),
    ("Elu", Un::Elu),
    ("Selu", Un::Selu),
    ("Softplus", Un::Act(Act::Softplus)),
    ("Mish", Un::Act(Act::Mish)),
    ("Gelu", Un::Gelu),
    ("Erf", Un::Act(Act::Erf)),
    ("Sqrt", Un::Act(Act::Sqrt)),
    ("Neg", Un::Act(Act::Neg)),
    ("Abs", Un::Act(Act::Abs)),
    ("Exp", Un::Act(Act::Exp)),
    ("PRelu", Un::PRelu),
];

pub(super) fn register(r: &mut super::Registry) {
    for (op, f) in UNARY {
        r.insert(op, Box::new(Unary(f)));
    }
    r.insert("Clip", Box::new(Clip));
    r.insert("Softmax", Box::new(Softmax(false)));
    r.insert("LogSoftmax", Box::new(Softmax(true)));
    r.insert("Add", Box::new(Binary(Bin::Add)));
    r.insert("Sub", Box::new(Binary(Bin::Sub)));
    r.insert("Mul", Box::new(Binary(Bin::Mul)));
    r.insert("Div", Box::new(Binary(Bin::Div)));
}

impl OpDef for Unary {
    fn infer(&self, cx: &InferCx) -> Result<Vec<Fact>, OpError> {
        let x = cx.input(0)?;
        if self.0 == Un::PRelu {
            broadcast(&x.shape, &cx.input(1)?.shape)?;
        }
        Ok(vec![Fact::new(x.dtype, x.shape.clone())])
    }
    fn params(&self, _cx: &NodeCx) -> Vec<usize> {
        if self.0 == Un::PRelu {
            vec![1]
        } else {
            vec![]
        }
    }
    fn channels(&self, cx: &NodeCx) -> ChannelSpec {
        let mut s = ChannelSpec::per_channel(cx, &[0]);
        if self.0 == Un::PRelu {
            const_operand_ties(cx, 1, &mut s);
        }
        s
    }
    fn run(&self, cx: &RunCx, e: &mut dyn Engine) -> Result<Vec<H>, OpError> {
        let x = cx.x(0)?;
        let float = |name: &str, d: f32| cx.node.attr_float(name, d).map(f64::from);
        let y = match self.0 {
            Un::Act(a) => e.act(a, x, cx.inplace && a == Act::Relu)?,
            Un::LeakyRelu => {
                let neg = e.clamp(x, None, Some(0.0))?;
                leaky(e, x, |e| e.scale(neg, float("alpha", 0.01)?))?
            }
            Un::PRelu => {
                let neg = e.clamp(x, None, Some(0.0))?;
                leaky(e, x, |e| e.binary(Bin::Mul, neg, cx.x(1)?))?
            }
            Un::HardSigmoid => {
                let ax = e.scale(x, float("alpha", 0.2)?)?;
                let y = e.shift(ax, float("beta", 0.5)?)?;
                e.clamp(y, Some(0.0), Some(1.0))?
            }
            Un::Elu => elu(e, x, float("alpha", 1.0)?)?,
            Un::Selu => {
                let y = elu(e, x, float("alpha", 1.673_263_2)?)?;
                e.scale(y, float("gamma", 1.050_701)?)?
            }
            Un::Gelu => {
                let tanh = match cx.node.attr_str("approximate", "none")?.as_str() {
                    "none" => false,
                    "tanh" => true,
                    other => return Err(bad!("approximate '{other}' must be none or tanh")),
                };
                e.act(Act::Gelu(tanh), x, false)?
            }
        };
        Ok(vec![y])
    }
    fn in_place(&self) -> bool {
        self.0 == Un::Act(Act::Relu)
    }
}

/// `max(x, 0) + neg(e)` (LeakyRelu, PRelu).
fn leaky(
    e: &mut dyn Engine,
    x: H,
    neg: impl FnOnce(&mut dyn Engine) -> Result<H, OpError>,
) -> Result<H, OpError> {
    let pos = e.clamp(x, Some(0.0), None)?;
    let neg = neg(e)?;
    e.binary(Bin::Add, pos, neg)
}

/// `max(x, 0) + a·(exp(min(x, 0)) − 1)`.
fn elu(e: &mut dyn Engine, x: H, a: f64) -> Result<H, OpError> {
    let m = e.clamp(x, None, Some(0.0))?;
    let m = e.act(Act::Exp, m, false)?;
    let m = e.shift(m, -1.0)?;
    let neg = e.scale(m, a)?;
    let pos = e.clamp(x, Some(0.0), None)?;
    e.binary(Bin::Add, pos, neg)
}

impl OpDef for Clip {
    fn infer(&self, cx: &InferCx) -> Result<Vec<Fact>, OpError> {
        let x = cx.input(0)?;
        Ok(vec![Fact::new(x.dtype, x.shape.clone())])
    }
    fn channels(&self, cx: &NodeCx) -> ChannelSpec {
        ChannelSpec::per_channel(cx, &[0])
    }
    fn run(&self, cx: &RunCx, e: &mut dyn Engine) -> Result<Vec<H>, OpError> {
        let (lo, hi) = if cx.opset < 11 {
            let bound = |name: &str, d: f32| cx.node.attr_float(name, d).map(f64::from);
            (Some(bound("min", f32::MIN)?), Some(bound("max", f32::MAX)?))
        } else {
            (cx.scalar(e, 1)?, cx.scalar(e, 2)?)
        };
        let x = cx.x(0)?;
        // ReLU6 / ReLU kernels (one-pass backward, as PyTorch's modules) for the common bounds.
        Ok(vec![match (lo, hi) {
            (Some(0.0), Some(6.0)) => e.act(Act::Relu6, x, cx.inplace)?,
            (Some(0.0), None) => e.act(Act::Relu, x, cx.inplace)?,
            (None, None) => x,
            (lo, hi) => e.clamp(x, lo, hi)?,
        }])
    }
    fn in_place(&self) -> bool {
        true
    }
}

impl OpDef for Softmax {
    fn infer(&self, cx: &InferCx) -> Result<Vec<Fact>, OpError> {
        let x = cx.input(0)?;
        let axis = cx.node.attr_int("axis", if cx.opset >= 13 { -1 } else { 1 })?;
        if x.rank() > 0 {
            super::norm_axis(axis, x.rank())?;
        }
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
    fn run(&self, cx: &RunCx, e: &mut dyn Engine) -> Result<Vec<H>, OpError> {
        let x = cx.x(0)?;
        let r = e.shape(x).len();
        if cx.opset >= 13 {
            let axis = super::kernel::axis(cx.node.attr_int("axis", -1)?, r)?;
            return Ok(vec![e.softmax(x, axis, self.0)?]);
        }
        // Opset < 13: coerce to 2-D at `axis` (default 1), normalise the rows.
        let axis = if r == 0 { 0 } else { super::kernel::axis(cx.node.attr_int("axis", 1)?, r)? };
        let s = e.shape(x);
        let outer: i64 = s[..axis as usize].iter().product();
        let rows = e.reshape(x, &[outer, -1])?;
        let y = e.softmax(rows, 1, self.0)?;
        Ok(vec![e.reshape(y, &s)?])
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
                Bin::Add => x.checked_add(y),
                Bin::Sub => x.checked_sub(y),
                Bin::Mul => x.checked_mul(y),
                Bin::Div => x.checked_div(y),
            };
            let Some(v) = v else { return Dim::Sym("?".into()) };
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
                        p.wrapping_div(q)
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
    fn infer(&self, cx: &InferCx) -> Result<Vec<Fact>, OpError> {
        let (a, b) = (cx.input(0)?, cx.input(1)?);
        if a.dtype != b.dtype && a.dtype != DType::UNDEFINED && b.dtype != DType::UNDEFINED {
            return Err(bad!("operand types differ: {} and {}", a.dtype, b.dtype));
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
    /// A zero divisor turns a zero channel into NaN.
    fn zeroable(&self, slot: usize) -> bool {
        !(matches!(self.0, Bin::Div) && slot == 1)
    }
    fn run(&self, cx: &RunCx, e: &mut dyn Engine) -> Result<Vec<H>, OpError> {
        Ok(vec![e.binary(self.0, cx.x(0)?, cx.x(1)?)?])
    }
    /// Add's backward reads neither operand nor its output.
    fn output_overwritable(&self) -> bool {
        self.0 == Bin::Add
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

#[cfg(test)]
mod tests {
    use super::super::testkit::{all_fixed, batch, int, same, tie, T};
    use super::super::{Role, Tie};
    use crate::ir::{Dim, Tensor};

    fn sym(s: &str) -> Dim {
        Dim::Sym(s.into())
    }

    #[test]
    fn unary_ops_keep_the_shape_and_pass_channels() {
        // PRelu's slope is a parameter input: tested on its own.
        let unary = super::UNARY.iter().map(|(o, _)| o);
        for op in unary.filter(|o| **o != "PRelu").chain(&["Clip"]) {
            let mut t = T::new();
            let x = t.input(batch(&[3, 4, 4]));
            let y = t.op(op, &[x], &[]);
            assert_eq!(t.shape(y), batch(&[3, 4, 4]), "{op}");
            assert_eq!(t.macs(0), None, "{op}");
            assert!(t.params(0).is_empty(), "{op}");
            let s = t.spec(0);
            assert_eq!((s.inputs[0].clone(), s.outputs.clone()), (Role::Pass, vec![Role::Pass]));
            assert_eq!(s.links, same(0, 0, 3), "{op}");
        }
        // Clip's bounds are operands without channels.
        let mut t = T::new();
        let x = t.input(batch(&[3, 4]));
        let (lo, hi) =
            (t.init(Tensor::f32(vec![], vec![0.0])), t.init(Tensor::f32(vec![], vec![6.0])));
        t.op("Clip", &[x, lo, hi], &[]);
        assert_eq!(t.spec(0).inputs, vec![Role::Pass, Role::Ignore, Role::Ignore]);
    }

    #[test]
    fn prelu_slope_is_a_parameter_that_follows_the_channels() {
        let mut t = T::new();
        let x = t.input(batch(&[3, 4, 4]));
        let a = t.weight(&[3, 1, 1]);
        let y = t.op("PRelu", &[x, a], &[]);
        assert_eq!(t.shape(y), batch(&[3, 4, 4]));
        assert_eq!(t.params(0), vec![1]);
        let s = t.spec(0);
        assert_eq!(s.links, same(0, 0, 3));
        assert_eq!(s.params, vec![tie(1, 0, Tie::Output(0))]);
        let mut t = T::new();
        let x = t.input(batch(&[3, 4, 4]));
        let a = t.weight(&[1]);
        t.op("PRelu", &[x, a], &[]);
        assert!(t.spec(0).params.is_empty(), "one shared slope follows no channel");
        let mut t = T::new();
        let x = t.input(batch(&[3, 4, 4]));
        let a = t.weight(&[5, 1, 1]);
        t.op("PRelu", &[x, a], &[]);
        assert!(t.err().contains("do not broadcast"), "{}", t.err());
    }

    #[test]
    fn softmax_is_per_channel_only_off_the_channel_axis() {
        for (op, axis, per_channel) in [
            ("Softmax", Some(-1), true),
            ("Softmax", Some(2), true),
            ("Softmax", Some(1), false),
            ("Softmax", Some(-3), false),
            ("LogSoftmax", Some(3), true),
            ("LogSoftmax", Some(0), false),
        ] {
            let mut t = T::new();
            let x = t.input(batch(&[3, 4, 5]));
            let attrs: Vec<_> = axis.map(|a| ("axis", int(a))).into_iter().collect();
            let y = t.op(op, &[x], &attrs);
            assert_eq!(t.shape(y), batch(&[3, 4, 5]));
            let s = t.spec(0);
            if per_channel {
                assert_eq!(s.links, same(0, 0, 3), "{op} axis {axis:?}");
            } else {
                assert!(all_fixed(&s, "normalises over the channel axis"), "{op} {axis:?}: {s:?}");
            }
        }
        // Opset 13 default axis -1: over the classes of [N, 10], i.e. axis 1.
        let mut t = T::new();
        let x = t.input(batch(&[10]));
        t.op("Softmax", &[x], &[]);
        assert!(all_fixed(&t.spec(0), "normalises over the channel axis"));
    }

    #[test]
    fn softmax_rejects_an_axis_out_of_range() {
        for axis in [4, -5] {
            let mut t = T::new();
            let x = t.input(batch(&[3, 4, 5]));
            t.op("Softmax", &[x], &[("axis", int(axis))]);
            let e = t.err();
            assert!(e.contains(&format!("axis {axis} is out of range for rank 4")), "{e}");
        }
    }

    #[test]
    fn add_and_sub_of_two_computed_tensors_couple_their_channels() {
        for op in ["Add", "Sub"] {
            let mut t = T::new();
            let x = t.input(batch(&[3, 4, 4]));
            let r = t.op("Relu", &[x], &[]);
            let y = t.op(op, &[x, r], &[]);
            assert_eq!(t.shape(y), batch(&[3, 4, 4]));
            assert_eq!(t.macs(1), None);
            assert!(t.params(1).is_empty());
            let s = t.spec(1);
            assert!(
                s.inputs
                    .iter()
                    .chain(&s.outputs)
                    .all(|r| matches!(r, Role::Fixed(m) if m.contains(&format!("residual {op}")))),
                "{op}: {s:?}"
            );
            // The links stay: the coupled values form one (fixed) group.
            assert_eq!(s.links, [same(0, 0, 3), same(1, 0, 3)].concat());
        }
    }

    #[test]
    fn mul_and_div_of_computed_tensors_pass_channels_with_broadcasting() {
        for op in ["Mul", "Div"] {
            let mut t = T::new();
            let x = t.input(batch(&[3, 4, 4]));
            let g = t.op("GlobalAveragePool", &[x], &[]);
            let y = t.op(op, &[x, g], &[]);
            assert_eq!(t.shape(y), batch(&[3, 4, 4]));
            let s = t.spec(1);
            assert_eq!(s.inputs, vec![Role::Pass, Role::Pass], "{op}");
            assert_eq!(s.links, [same(0, 0, 3), same(1, 0, 3)].concat(), "{op}");
        }
        // A one-channel operand broadcasts over the channels: no channel of its own.
        let mut t = T::new();
        let x = t.input(batch(&[3, 4, 4]));
        let m = t.op("ReduceMean", &[x], &[("axes", super::super::testkit::ints(&[1]))]);
        let y = t.op("Mul", &[x, m], &[]);
        assert_eq!(t.shape(y), batch(&[3, 4, 4]));
        let s = t.spec(1);
        assert_eq!(s.inputs, vec![Role::Pass, Role::Ignore]);
        assert_eq!(s.links, same(0, 0, 3));
        // A computed operand whose axis 1 is not the channel axis is a barrier there.
        let mut t = T::new();
        let x = t.input(batch(&[3, 4, 4]));
        let z = t.input(vec![Dim::Fixed(4), Dim::Fixed(4)]);
        t.op("Add", &[x, z], &[]);
        let s = t.spec(0);
        assert_eq!(s.inputs[0], Role::Pass);
        assert!(matches!(&s.inputs[1], Role::Fixed(m) if m.contains("channels differ")), "{s:?}");
    }

    #[test]
    fn per_channel_constants_follow_the_output_channels() {
        for (op, slot) in [("Sub", 1), ("Div", 1), ("Mul", 0), ("Add", 0)] {
            let mut t = T::new();
            let x = t.input(batch(&[3, 4, 4]));
            let c = t.weight(&[1, 3, 1, 1]);
            let ins = if slot == 1 { [x, c] } else { [c, x] };
            let y = t.op(op, &ins, &[]);
            assert_eq!(t.shape(y), batch(&[3, 4, 4]));
            assert!(t.params(0).is_empty(), "{op}: constants of arithmetic are not trained");
            let s = t.spec(0);
            assert_eq!(s.inputs[1 - slot], Role::Pass, "{op}");
            assert_eq!(s.inputs[slot], Role::Ignore, "{op}");
            assert_eq!(s.links, same(1 - slot, 0, 3), "{op}");
            assert_eq!(s.params, vec![tie(slot, 1, Tie::Output(0))], "{op}");
            let def = super::super::lookup(&t.g.nodes[0]).expect("registered");
            assert_eq!(def.zeroable(slot), op != "Div", "{op}: only a divisor must stay");
            assert!(def.zeroable(1 - slot), "{op}");
        }
        // [3, 1, 1] lines up with axis 1 too; a scalar follows nothing.
        let mut t = T::new();
        let x = t.input(batch(&[3, 4, 4]));
        let c = t.weight(&[3, 1, 1]);
        let s1 = t.init(Tensor::f32(vec![], vec![2.0]));
        let y = t.op("Div", &[x, c], &[]);
        t.op("Div", &[y, s1], &[]);
        assert_eq!(t.spec(0).params, vec![tie(1, 0, Tie::Output(0))]);
        assert!(t.spec(1).params.is_empty());
    }

    #[test]
    fn binary_ops_fold_integer_and_float_constants() {
        let mut t = T::new();
        let a = t.ints(&[2, 3]);
        let b = t.ints(&[10]);
        let y = t.op("Add", &[a, b], &[]);
        assert_eq!(t.shape(y), vec![Dim::Fixed(2)]);
        assert_eq!(t.konst(y), Some(vec![12, 13]));
        // Truncating division; i64::MIN / -1 wraps instead of panicking; / 0 gives 0.
        let mut t = T::new();
        let a = t.ints(&[7, -7, i64::MIN, 5]);
        let b = t.ints(&[2, 2, -1, 0]);
        let y = t.op("Div", &[a, b], &[]);
        assert_eq!(t.konst(y), Some(vec![3, -3, i64::MIN, 0]));
        let mut t = T::new();
        let a = t.init(Tensor::f32(vec![2, 1], vec![1.5, 2.0]));
        let b = t.init(Tensor::f32(vec![3], vec![1.0, 2.0, 4.0]));
        let y = t.op("Mul", &[a, b], &[]);
        let f = t.facts()[y].clone().unwrap();
        assert_eq!(f.shape, vec![Dim::Fixed(2), Dim::Fixed(3)]);
        let k = f.konst.unwrap();
        assert_eq!(k.as_f32().unwrap(), &[1.5, 3.0, 6.0, 2.0, 4.0, 8.0]);
    }

    #[test]
    fn binary_ops_compute_symbolic_shape_vectors() {
        let mut t = T::new();
        let x = t.input(batch(&[3, 4, 4]));
        let s = t.op("Shape", &[x], &[]);
        let two = t.ints(&[2]);
        let four = t.ints(&[4]);
        let huge = t.ints(&[1 << 62]);
        let m = t.op("Mul", &[s, two], &[]);
        let d = t.op("Sub", &[s, four], &[]);
        let o = t.op("Mul", &[s, huge], &[]);
        let f = t.facts();
        let elems = |v: usize| f[v].as_ref().unwrap().sym.clone().unwrap();
        assert_eq!(elems(m), vec![sym("(N*2)"), Dim::Fixed(6), Dim::Fixed(8), Dim::Fixed(8)]);
        assert_eq!(elems(d), vec![sym("(N-4)"), sym("-1"), Dim::Fixed(0), Dim::Fixed(0)]);
        // 3 * 2^62 overflows i64: an unknown element, not a panic.
        assert_eq!(elems(o)[1], sym("?"));
        assert_eq!(t.shape(m), vec![Dim::Fixed(4)]);
    }

    #[test]
    fn binary_ops_reject_mixed_types_and_shapes_that_do_not_broadcast() {
        let mut t = T::new();
        let x = t.input(batch(&[3, 4, 4]));
        let c = t.ints(&[1]);
        t.op("Add", &[x, c], &[]);
        assert!(t.err().contains("operand types differ: float32 and int64"), "{}", t.err());
        let mut t = T::new();
        let x = t.input(batch(&[3, 4, 4]));
        let c = t.weight(&[2, 1, 1]);
        t.op("Mul", &[x, c], &[]);
        assert!(t.err().contains("[N,3,4,4] and [2,1,1] do not broadcast"), "{}", t.err());
    }
}
