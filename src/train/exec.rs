//! The tch op table: one entry per executable ONNX op type, mirroring the IR
//! registry ([`crate::ir::ops`]). Each entry maps a node and its input tensors
//! to its output tensors; shape-like operands (pads, axes, shapes) are read from
//! the IR constants folded at import, or from run-time integer tensors.
//!
//! Semantics follow the ONNX spec; notes:
//! * BatchNormalization in training mode uses batch statistics and updates the
//!   running statistics in place with ONNX momentum `m` (running = m·running +
//!   (1−m)·batch, i.e. PyTorch momentum 1−m; the variance update is unbiased
//!   like PyTorch's).
//! * Dropout executes as identity (rlal trains the graph's function as exported).
use crate::ir::{Attr, DType, Data, Node};
use std::collections::HashMap;
use std::sync::OnceLock;
use tch::{Kind, Tensor};

/// Inputs of one node execution.
pub struct OpCx<'a> {
    pub node: &'a Node,
    /// Run-time tensors of the inputs (`None`: omitted optional input).
    pub inputs: Vec<Option<&'a Tensor>>,
    /// IR constants of the inputs, when they are initializers.
    pub consts: Vec<Option<&'a crate::ir::Tensor>>,
    pub train: bool,
    pub opset: i64,
    /// Mixed precision: convolutions and matrix products compute in this kind
    /// (bf16/fp16) from fp32 inputs and weights and return fp32 (autocast's policy).
    pub low: Option<Kind>,
    /// Overrides the BatchNormalization momentum attribute (0: a train-mode forward
    /// sets the running statistics to the batch's; see [`crate::train::Net::set_bn_momentum`]).
    pub bn_momentum: Option<f64>,
    /// Input 0 may be overwritten (see [`inplace_nodes`]): activations then run in place,
    /// as PyTorch's `ReLU(inplace=True)` modules do, saving an allocation per call.
    pub inplace: bool,
}

/// Ops whose output may be overwritten by the next op: their backward never reads
/// their own output (conv and BN keep their inputs, Add keeps nothing).
const INPLACE_PRODUCERS: &[&str] = &["Conv", "BatchNormalization", "Add"];

/// Per node, whether it (a Relu or Clip) may compute in place on its input 0: that value
/// is computed by an [`INPLACE_PRODUCERS`] op, read by this node only and not a graph
/// output. Autograd would refuse anything else at backward, never compute it wrongly.
pub fn inplace_nodes(g: &crate::ir::Graph) -> Vec<bool> {
    let (producers, consumers) = (g.producers(), g.consumers());
    g.nodes
        .iter()
        .map(|node| {
            let Some(Some(v)) = node.inputs.first().copied() else { return false };
            matches!(node.op_type.as_str(), "Relu" | "Clip")
                && producers[v]
                    .is_some_and(|p| INPLACE_PRODUCERS.contains(&g.nodes[p].op_type.as_str()))
                && consumers[v].len() == 1
                && !g.outputs.contains(&v)
                && g.values[v].init.is_none()
        })
        .collect()
}

pub type OpFn = fn(&OpCx) -> Result<Vec<Tensor>, String>;

fn e(err: tch::TchError) -> String {
    err.to_string()
}

impl<'a> OpCx<'a> {
    /// Input `i` in the compute kind of a mixed-precision op ([`OpCx::low`]), else as is.
    pub fn x_low(&self, i: usize) -> Result<Tensor, String> {
        let t = self.x(i)?;
        Ok(match self.low {
            Some(k) => t.f_to_kind(k).map_err(e)?,
            None => t.shallow_clone(),
        })
    }
    /// Optional input `i` in the compute kind.
    pub fn opt_low(&self, i: usize) -> Result<Option<Tensor>, String> {
        match self.opt(i) {
            Some(_) => self.x_low(i).map(Some),
            None => Ok(None),
        }
    }
    /// The result of a mixed-precision op back in fp32.
    pub fn full(&self, y: Tensor) -> Result<Tensor, String> {
        match self.low {
            Some(_) => y.f_to_kind(Kind::Float).map_err(e),
            None => Ok(y),
        }
    }
    pub fn x(&self, i: usize) -> Result<&'a Tensor, String> {
        self.inputs.get(i).copied().flatten().ok_or_else(|| format!("input {i} is missing"))
    }
    pub fn opt(&self, i: usize) -> Option<&'a Tensor> {
        self.inputs.get(i).copied().flatten()
    }
    /// Integer contents of input `i` (IR constant or run-time tensor).
    pub fn ints(&self, i: usize, what: &str) -> Result<Vec<i64>, String> {
        if let Some(Some(c)) = self.consts.get(i) {
            return c
                .to_i64()
                .or_else(|| c.to_f32().map(|v| v.into_iter().map(|x| x as i64).collect()))
                .ok_or_else(|| format!("{what} (input {i}) must be an integer tensor"));
        }
        let t = self.x(i)?;
        let t = t.f_to_kind(Kind::Int64).map_err(e)?.f_flatten(0, -1).map_err(e)?;
        Vec::<i64>::try_from(&t).map_err(e)
    }
    /// A scalar float from input `i`, if present.
    pub fn scalar(&self, i: usize) -> Result<Option<f64>, String> {
        match self.opt(i) {
            None => Ok(None),
            Some(t) => Ok(Some(
                t.f_double_value(&[])
                    .or_else(|_| t.f_flatten(0, -1).and_then(|f| f.f_double_value(&[0])))
                    .map_err(e)?,
            )),
        }
    }
    fn int(&self, name: &str, d: i64) -> Result<i64, String> {
        self.node.attr_int(name, d)
    }
    fn float(&self, name: &str, d: f32) -> Result<f64, String> {
        self.node.attr_float(name, d).map(|f| f as f64)
    }
    fn ints_attr(&self, name: &str) -> Result<Option<Vec<i64>>, String> {
        self.node.attr_ints(name)
    }
    /// Axes from the attribute (opset < `since`) or from input `slot`.
    pub fn axes(&self, since: i64, slot: usize) -> Result<Option<Vec<i64>>, String> {
        if self.opset >= since {
            if self.opt(slot).is_some() {
                return Ok(Some(self.ints(slot, "axes")?));
            }
            Ok(None)
        } else {
            self.ints_attr("axes")
        }
    }
}

fn rank(t: &Tensor) -> i64 {
    t.dim() as i64
}

fn norm(axis: i64, r: i64) -> Result<i64, String> {
    let a = if axis < 0 { axis + r } else { axis };
    if a < 0 || a >= r {
        return Err(format!("axis {axis} is out of range for rank {r}"));
    }
    Ok(a)
}

/// IR tensor → tch tensor (on CPU).
pub fn to_tch(t: &crate::ir::Tensor) -> Result<Tensor, String> {
    let shape: Vec<i64> = t.shape.iter().map(|&d| d as i64).collect();
    let out = match &t.data {
        Data::F32(v) => Tensor::from_slice(v),
        Data::F64(v) => Tensor::from_slice(v),
        Data::I64(v) => Tensor::from_slice(v),
        Data::I32(v) => Tensor::from_slice(v),
        Data::Bool(v) => Tensor::from_slice(v),
        _ => match t.dtype {
            DType::F16 | DType::BF16 => {
                Tensor::from_slice(&t.to_f32().ok_or("unreadable float tensor")?)
            }
            _ => Tensor::from_slice(
                &t.to_i64()
                    .ok_or_else(|| format!("tensors of type {} are not supported", t.dtype))?,
            ),
        },
    };
    out.f_reshape(&shape).map_err(e)
}

/// ONNX dtype number → tch kind.
pub fn kind_of(dt: i64) -> Result<Kind, String> {
    Ok(match dt {
        1 => Kind::Float,
        2 => Kind::Uint8,
        3 => Kind::Int8,
        5 => Kind::Int16,
        6 => Kind::Int,
        7 => Kind::Int64,
        9 => Kind::Bool,
        10 => Kind::Half,
        11 => Kind::Double,
        16 => Kind::BFloat16,
        _ => return Err(format!("cast to ONNX type {dt} is not supported")),
    })
}

type Table = HashMap<&'static str, OpFn>;

fn table() -> &'static Table {
    static T: OnceLock<Table> = OnceLock::new();
    T.get_or_init(|| {
        let mut t: Table = HashMap::new();
        super::exec_nn::register(&mut t);
        register(&mut t);
        t
    })
}

/// The execution function of a node's op (default domain only).
pub fn lookup(node: &Node) -> Option<OpFn> {
    if !(node.domain.is_empty() || node.domain == "ai.onnx") {
        return None;
    }
    table().get(node.op_type.as_str()).copied()
}

/// Executable op types, sorted.
pub fn supported() -> Vec<&'static str> {
    let mut v: Vec<&'static str> = table().keys().copied().collect();
    v.sort_unstable();
    v
}

fn register(t: &mut Table) {
    t.insert("Relu", |c| {
        Ok(vec![if c.inplace { c.x(0)?.shallow_clone().f_relu_() } else { c.x(0)?.f_relu() }
            .map_err(e)?])
    });
    t.insert("LeakyRelu", |c| {
        let x = c.x(0)?;
        let a = c.float("alpha", 0.01)?;
        Ok(vec![(x.f_clamp_min(0.0).map_err(e)? + x.f_clamp_max(0.0).map_err(e)? * a)])
    });
    t.insert("PRelu", |c| {
        let x = c.x(0)?;
        Ok(vec![(x.f_clamp_min(0.0).map_err(e)? + x.f_clamp_max(0.0).map_err(e)? * c.x(1)?)])
    });
    t.insert("Sigmoid", |c| Ok(vec![c.x(0)?.f_sigmoid().map_err(e)?]));
    t.insert("HardSigmoid", |c| {
        let (a, b) = (c.float("alpha", 0.2)?, c.float("beta", 0.5)?);
        Ok(vec![(c.x(0)? * a + b).f_clamp(0.0, 1.0).map_err(e)?])
    });
    t.insert("HardSwish", |c| Ok(vec![c.x(0)?.f_hardswish().map_err(e)?]));
    t.insert("Tanh", |c| Ok(vec![c.x(0)?.f_tanh().map_err(e)?]));
    t.insert("Elu", |c| Ok(vec![elu(c.x(0)?, c.float("alpha", 1.0)?)?]));
    t.insert("Selu", |c| {
        let (a, g) = (c.float("alpha", 1.673_263_2)?, c.float("gamma", 1.050_701)?);
        Ok(vec![elu(c.x(0)?, a)? * g])
    });
    t.insert("Softplus", |c| Ok(vec![c.x(0)?.f_softplus().map_err(e)?]));
    t.insert("Mish", |c| Ok(vec![c.x(0)?.f_mish().map_err(e)?]));
    t.insert("Gelu", |c| {
        Ok(vec![c.x(0)?.f_gelu(&c.node.attr_str("approximate", "none")?).map_err(e)?])
    });
    t.insert("Erf", |c| Ok(vec![c.x(0)?.f_erf().map_err(e)?]));
    t.insert("Sqrt", |c| Ok(vec![c.x(0)?.f_sqrt().map_err(e)?]));
    t.insert("Neg", |c| Ok(vec![c.x(0)?.f_neg().map_err(e)?]));
    t.insert("Abs", |c| Ok(vec![c.x(0)?.f_abs().map_err(e)?]));
    t.insert("Exp", |c| Ok(vec![c.x(0)?.f_exp().map_err(e)?]));
    t.insert("Clip", |c| {
        let (lo, hi) = if c.opset < 11 {
            (Some(c.float("min", f32::MIN)?), Some(c.float("max", f32::MAX)?))
        } else {
            (c.scalar(1)?, c.scalar(2)?)
        };
        let x = c.x(0)?;
        Ok(vec![match (lo, hi) {
            // ReLU6 / ReLU kernels (one-pass backward, as PyTorch's modules) for the common bounds.
            (Some(a), Some(b)) if a == 0.0 && b == 6.0 && c.inplace => x.shallow_clone().f_relu6_(),
            (Some(a), Some(b)) if a == 0.0 && b == 6.0 => x.f_relu6(),
            (Some(a), None) if a == 0.0 && c.inplace => x.shallow_clone().f_relu_(),
            (Some(0.0), None) => x.f_relu(),
            (Some(a), Some(b)) => x.f_clamp(a, b),
            (Some(a), None) => x.f_clamp_min(a),
            (None, Some(b)) => x.f_clamp_max(b),
            (None, None) => Ok(x.shallow_clone()),
        }
        .map_err(e)?])
    });
    t.insert("Softmax", |c| softmax(c, false));
    t.insert("LogSoftmax", |c| softmax(c, true));
    t.insert("Add", |c| Ok(vec![c.x(0)?.f_add(c.x(1)?).map_err(e)?]));
    t.insert("Sub", |c| Ok(vec![c.x(0)?.f_sub(c.x(1)?).map_err(e)?]));
    t.insert("Mul", |c| Ok(vec![c.x(0)?.f_mul(c.x(1)?).map_err(e)?]));
    t.insert("Div", |c| {
        let (a, b) = (c.x(0)?, c.x(1)?);
        Ok(vec![if a.is_floating_point() { a.f_div(b) } else { a.f_div_tensor_mode(b, "trunc") }
            .map_err(e)?])
    });
    t.insert("Identity", |c| Ok(vec![c.x(0)?.shallow_clone()]));
    t.insert("Dropout", |c| Ok(vec![c.x(0)?.shallow_clone()]));
    t.insert("Shape", |c| {
        let s = c.x(0)?.size();
        let r = s.len() as i64;
        let clampi = |v: i64| (if v < 0 { v + r } else { v }).clamp(0, r) as usize;
        let start = clampi(c.int("start", 0)?);
        let end = match c.node.attr("end") {
            Some(Attr::Int(v)) => clampi(*v),
            _ => r as usize,
        };
        Ok(vec![Tensor::from_slice(&s[start..end.max(start)])])
    });
    t.insert("Cast", |c| Ok(vec![c.x(0)?.f_to_kind(kind_of(c.int("to", 1)?)?).map_err(e)?]));
    t.insert("Constant", |c| {
        let n = c.node;
        let t = match (
            n.attr("value"),
            n.attr("value_float"),
            n.attr("value_floats"),
            n.attr("value_int"),
            n.attr("value_ints"),
        ) {
            (Some(Attr::Tensor(t)), ..) => to_tch(t)?,
            (_, Some(Attr::Float(f)), ..) => Tensor::from(*f),
            (_, _, Some(Attr::Floats(v)), ..) => Tensor::from_slice(v),
            (_, _, _, Some(Attr::Int(i)), _) => Tensor::from(*i),
            (.., Some(Attr::Ints(v))) => Tensor::from_slice(v),
            _ => return Err("Constant without a supported value attribute".into()),
        };
        Ok(vec![t])
    });
    t.insert("ConstantOfShape", |c| {
        let shape = c.ints(0, "shape")?;
        let v = match c.node.attr("value") {
            Some(Attr::Tensor(t)) => to_tch(t)?.f_flatten(0, -1).map_err(e)?,
            _ => Tensor::from_slice(&[0f32]),
        };
        Ok(vec![v.f_expand(&shape, false).map_err(e)?.f_contiguous().map_err(e)?])
    });
    t.insert("Gather", |c| {
        let x = c.x(0)?;
        let axis = norm(c.int("axis", 0)?, rank(x))?;
        let idx = c.x(1)?.f_to_kind(Kind::Int64).map_err(e)?;
        let n = x.size()[axis as usize];
        let idx = idx.f_remainder(n).map_err(e)?; // negative indices count from the end
        let flat = x.f_index_select(axis, &idx.f_flatten(0, -1).map_err(e)?).map_err(e)?;
        let mut shape = x.size()[..axis as usize].to_vec();
        shape.extend(idx.size());
        shape.extend(&x.size()[axis as usize + 1..]);
        Ok(vec![flat.f_reshape(&shape).map_err(e)?])
    });
}

fn elu(x: &Tensor, a: f64) -> Result<Tensor, String> {
    let neg = (x.f_clamp_max(0.0).map_err(e)?.f_exp().map_err(e)? - 1.0) * a;
    Ok(x.f_clamp_min(0.0).map_err(e)? + neg)
}

fn softmax(c: &OpCx, log: bool) -> Result<Vec<Tensor>, String> {
    let x = c.x(0)?;
    let r = rank(x);
    let f = |t: &Tensor, d: i64| {
        if log {
            t.f_log_softmax(d, None::<Kind>)
        } else {
            t.f_softmax(d, None::<Kind>)
        }
    };
    if c.opset >= 13 {
        let axis = norm(c.int("axis", -1)?, r)?;
        return Ok(vec![f(x, axis).map_err(e)?]);
    }
    // Opset < 13: coerce to 2-D at `axis` (default 1), normalise the rows.
    let axis = if r == 0 { 0 } else { norm(c.int("axis", 1)?, r)? };
    let s = x.size();
    let outer: i64 = s[..axis as usize].iter().product();
    let y = f(&x.f_reshape([outer, -1]).map_err(e)?, 1).map_err(e)?;
    Ok(vec![y.f_reshape(&s).map_err(e)?])
}

#[cfg(test)]
mod tests {
    #[test]
    fn table_mirrors_the_ir_registry() {
        let exec = super::supported();
        let missing: Vec<_> =
            crate::ir::ops::supported().into_iter().filter(|op| !exec.contains(op)).collect();
        assert!(missing.is_empty(), "ops in the IR registry without a tch execution: {missing:?}");
    }
}
