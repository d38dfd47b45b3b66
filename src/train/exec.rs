//! rlal's libtorch engine: the [`Engine`] primitives that the ops' kernels
//! ([`crate::ir::ops::OpDef::run`], written beside each op's shape and channel
//! rules) compose, each one libtorch call on tensors held for one node's
//! execution ([`run_node`]).
//!
//! Semantics follow the ONNX spec (see the kernels); engine notes:
//! * batch normalisation in training mode updates the running statistics in place
//!   (`f_batch_norm` with PyTorch momentum 1 − m);
//! * mixed precision ([`TchEngine::low`]): convolutions and matrix products compute in
//!   bf16/fp16 from fp32 inputs and weights and return fp32 (autocast's policy).
use crate::ir::ops::kernel::{Act, Bin, BnArgs, ConvArgs, PadMode, PoolArgs};
use crate::ir::ops::{self, Engine, OpError, RunCx, H};
use crate::ir::{DType, Data, Graph};
use tch::{Kind, Tensor};

/// Per node, whether it may compute in place on its input 0: its op can
/// ([`ops::OpDef::in_place`]), and that value is computed by an op whose backward
/// does not read its output ([`ops::OpDef::output_overwritable`]), read by this node
/// only and not a graph output. Autograd would refuse anything else at backward,
/// never compute it wrongly.
pub fn inplace_nodes(g: &Graph) -> Vec<bool> {
    let (producers, consumers) = (g.producers(), g.consumers());
    g.nodes
        .iter()
        .map(|node| {
            let Some(Some(v)) = node.inputs.first().copied() else { return false };
            ops::is(node, |op| op.in_place())
                && producers[v].is_some_and(|p| ops::is(&g.nodes[p], |op| op.output_overwritable()))
                && consumers[v].len() == 1
                && !g.outputs.contains(&v)
                && g.values[v].init.is_none()
        })
        .collect()
}

fn e(err: tch::TchError) -> OpError {
    OpError::Engine(format!("libtorch: {err}"))
}

/// IR tensor → tch tensor (on CPU).
pub fn to_tch(t: &crate::ir::Tensor) -> Result<Tensor, OpError> {
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
            _ => Tensor::from_slice(&t.to_i64().ok_or_else(|| {
                OpError::Unsupported(format!("tensors of type {} are not supported", t.dtype))
            })?),
        },
    };
    out.f_reshape(&shape).map_err(e)
}

/// ONNX dtype number → tch kind.
pub fn kind_of(dt: i64) -> Result<Kind, OpError> {
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
        _ => return Err(OpError::Unsupported(format!("cast to ONNX type {dt} is not supported"))),
    })
}

/// The tensors of one node's execution, behind the kernels' handles.
pub struct TchEngine {
    tensors: Vec<Tensor>,
    /// Mixed-precision compute kind of convolutions and matrix products.
    low: Option<Kind>,
    device: tch::Device,
}

/// Runs `op`'s kernel on `inputs` (`None`: omitted optional input); `cx.inputs`
/// is filled here. Returns the node's outputs.
pub fn run_node(
    op: &dyn ops::OpDef,
    mut cx: RunCx,
    inputs: &[Option<&Tensor>],
    low: Option<Kind>,
) -> Result<Vec<Tensor>, OpError> {
    let device = inputs.iter().flatten().next().map_or(tch::Device::Cpu, |t| t.device());
    let mut eng = TchEngine { tensors: Vec::with_capacity(inputs.len() + 4), low, device };
    cx.inputs = inputs.iter().map(|t| t.map(|t| eng.put(t.shallow_clone()))).collect();
    let outs = op.run(&cx, &mut eng)?;
    Ok(outs.into_iter().map(|h| eng.get(h).shallow_clone()).collect())
}

impl TchEngine {
    fn put(&mut self, t: Tensor) -> H {
        self.tensors.push(t);
        H(self.tensors.len() - 1)
    }
    fn get(&self, h: H) -> &Tensor {
        &self.tensors[h.0]
    }
    /// One libtorch call on a held tensor, its result held.
    fn map(
        &mut self,
        x: H,
        f: impl FnOnce(&Tensor) -> Result<Tensor, tch::TchError>,
    ) -> Result<H, OpError> {
        let y = f(self.get(x)).map_err(e)?;
        Ok(self.put(y))
    }
    fn map2(
        &mut self,
        a: H,
        b: H,
        f: impl FnOnce(&Tensor, &Tensor) -> Result<Tensor, tch::TchError>,
    ) -> Result<H, OpError> {
        let y = f(self.get(a), self.get(b)).map_err(e)?;
        Ok(self.put(y))
    }
    fn dims(&self, x: H) -> Vec<i64> {
        self.get(x).size()
    }
}

impl Engine for TchEngine {
    fn shape(&self, x: H) -> Vec<i64> {
        self.dims(x)
    }
    fn to_ints(&mut self, x: H) -> Result<Vec<i64>, OpError> {
        let t = self.get(x).f_to_kind(Kind::Int64).map_err(e)?.f_flatten(0, -1).map_err(e)?;
        Vec::<i64>::try_from(&t).map_err(e)
    }
    fn to_scalar(&mut self, x: H) -> Result<f64, OpError> {
        let t = self.get(x);
        t.f_double_value(&[])
            .or_else(|_| t.f_flatten(0, -1).and_then(|f| f.f_double_value(&[0])))
            .map_err(e)
    }
    /// On the CPU, as libtorch takes scalars and shape vectors.
    fn constant(&mut self, t: &crate::ir::Tensor) -> Result<H, OpError> {
        let t = to_tch(t)?;
        Ok(self.put(t))
    }
    fn low(&mut self, x: H) -> Result<H, OpError> {
        match self.low {
            Some(k) => self.map(x, |t| t.f_to_kind(k)),
            None => Ok(x),
        }
    }
    fn full(&mut self, x: H) -> Result<H, OpError> {
        match self.low {
            Some(_) => self.map(x, |t| t.f_to_kind(Kind::Float)),
            None => Ok(x),
        }
    }
    fn act(&mut self, act: Act, x: H, inplace: bool) -> Result<H, OpError> {
        self.map(x, |t| match act {
            Act::Relu if inplace => t.shallow_clone().f_relu_(),
            Act::Relu => t.f_relu(),
            Act::Relu6 if inplace => t.shallow_clone().f_relu6_(),
            Act::Relu6 => t.f_relu6(),
            Act::Sigmoid => t.f_sigmoid(),
            Act::HardSwish => t.f_hardswish(),
            Act::Tanh => t.f_tanh(),
            Act::Softplus => t.f_softplus(),
            Act::Mish => t.f_mish(),
            Act::Gelu(tanh) => t.f_gelu(if tanh { "tanh" } else { "none" }),
            Act::Erf => t.f_erf(),
            Act::Sqrt => t.f_sqrt(),
            Act::Neg => t.f_neg(),
            Act::Abs => t.f_abs(),
            Act::Exp => t.f_exp(),
        })
    }
    fn clamp(&mut self, x: H, lo: Option<f64>, hi: Option<f64>) -> Result<H, OpError> {
        match (lo, hi) {
            (Some(a), Some(b)) => self.map(x, |t| t.f_clamp(a, b)),
            (Some(a), None) => self.map(x, |t| t.f_clamp_min(a)),
            (None, Some(b)) => self.map(x, |t| t.f_clamp_max(b)),
            (None, None) => Ok(x),
        }
    }
    fn scale(&mut self, x: H, a: f64) -> Result<H, OpError> {
        self.map(x, |t| t.f_mul_scalar(a))
    }
    fn shift(&mut self, x: H, b: f64) -> Result<H, OpError> {
        self.map(x, |t| t.f_add_scalar(b))
    }
    fn binary(&mut self, op: Bin, a: H, b: H) -> Result<H, OpError> {
        self.map2(a, b, |a, b| match op {
            Bin::Add => a.f_add(b),
            Bin::Sub => a.f_sub(b),
            Bin::Mul => a.f_mul(b),
            Bin::Div if a.is_floating_point() => a.f_div(b),
            Bin::Div => a.f_div_tensor_mode(b, "trunc"),
        })
    }
    fn softmax(&mut self, x: H, axis: i64, log: bool) -> Result<H, OpError> {
        self.map(x, |t| {
            if log {
                t.f_log_softmax(axis, None::<Kind>)
            } else {
                t.f_softmax(axis, None::<Kind>)
            }
        })
    }
    fn cast(&mut self, x: H, onnx_type: i64) -> Result<H, OpError> {
        let k = kind_of(onnx_type)?;
        self.map(x, |t| t.f_to_kind(k))
    }
    fn reshape(&mut self, x: H, shape: &[i64]) -> Result<H, OpError> {
        self.map(x, |t| t.f_reshape(shape))
    }
    fn permute(&mut self, x: H, perm: &[i64]) -> Result<H, OpError> {
        self.map(x, |t| t.f_permute(perm))
    }
    fn unsqueeze(&mut self, x: H, axis: i64) -> Result<H, OpError> {
        self.map(x, |t| t.f_unsqueeze(axis))
    }
    fn expand(&mut self, x: H, shape: &[i64]) -> Result<H, OpError> {
        self.map(x, |t| t.f_expand(shape, false)?.f_contiguous())
    }
    fn gather(&mut self, x: H, axis: i64, idx: H) -> Result<H, OpError> {
        self.map2(x, idx, |x, idx| {
            let n = x.size()[axis as usize];
            // Negative indices count from the end.
            let idx = idx.f_to_kind(Kind::Int64)?.f_remainder(n)?;
            let flat = x.f_index_select(axis, &idx.f_flatten(0, -1)?)?;
            let mut shape = x.size()[..axis as usize].to_vec();
            shape.extend(idx.size());
            shape.extend(&x.size()[axis as usize + 1..]);
            flat.f_reshape(&shape)
        })
    }
    fn conv(&mut self, x: H, w: H, b: Option<H>, a: &ConvArgs) -> Result<H, OpError> {
        let bias = b.map(|b| self.get(b).shallow_clone());
        self.map2(x, w, |x, w| {
            x.f_convolution(
                w,
                bias.as_ref(),
                a.strides.as_slice(),
                a.pads.as_slice(),
                a.dilations.as_slice(),
                a.transposed,
                a.output_padding.as_slice(),
                a.group,
            )
        })
    }
    fn batch_norm(&mut self, x: H, p: [H; 4], a: BnArgs) -> Result<H, OpError> {
        let [scale, bias, mean, var] = p.map(|h| self.get(h).shallow_clone());
        self.map(x, |x| {
            x.f_batch_norm(
                Some(&scale),
                Some(&bias),
                Some(&mean),
                Some(&var),
                a.train,
                1.0 - a.momentum,
                a.eps,
                true,
            )
        })
    }
    fn max_pool2d(&mut self, x: H, a: &PoolArgs) -> Result<H, OpError> {
        self.map(x, |t| {
            t.f_max_pool2d(
                a.kernel.as_slice(),
                a.strides.as_slice(),
                a.pads.as_slice(),
                a.dilations.as_slice(),
                a.ceil,
            )
        })
    }
    fn avg_pool2d(&mut self, x: H, a: &PoolArgs) -> Result<H, OpError> {
        self.map(x, |t| {
            t.f_avg_pool2d(
                a.kernel.as_slice(),
                a.strides.as_slice(),
                a.pads.as_slice(),
                a.ceil,
                a.count_include_pad,
                None::<i64>,
            )
        })
    }
    fn pad(&mut self, x: H, pads: &[i64], mode: PadMode) -> Result<H, OpError> {
        self.map(x, |t| match mode {
            PadMode::Constant(v) => t.f_pad(pads, "constant", v),
            PadMode::Reflect => t.f_pad(pads, "reflect", None::<f64>),
            PadMode::Edge => t.f_pad(pads, "replicate", None::<f64>),
        })
    }
    fn reduce(&mut self, x: H, axes: &[i64], keep: bool, max: bool) -> Result<H, OpError> {
        self.map(
            x,
            |t| {
                if max {
                    t.f_amax(axes, keep)
                } else {
                    t.f_mean_dim(axes, keep, None::<Kind>)
                }
            },
        )
    }
    fn matmul(&mut self, a: H, b: H) -> Result<H, OpError> {
        self.map2(a, b, |a, b| a.f_matmul(b))
    }
    fn addmm(&mut self, bias: H, a: H, b: H) -> Result<H, OpError> {
        let b = self.get(b).shallow_clone();
        self.map2(bias, a, |bias, a| bias.f_addmm(a, &b))
    }
    fn t(&mut self, x: H) -> Result<H, OpError> {
        self.map(x, |t| t.f_tr())
    }
    fn cat(&mut self, xs: &[H], axis: i64) -> Result<H, OpError> {
        let ts: Vec<&Tensor> = xs.iter().map(|&h| self.get(h)).collect();
        let y = Tensor::f_cat(&ts, axis).map_err(e)?;
        Ok(self.put(y))
    }
    fn split(&mut self, x: H, sizes: &[i64], axis: i64) -> Result<Vec<H>, OpError> {
        let ys = self.get(x).f_split_with_sizes(sizes, axis).map_err(e)?;
        Ok(ys.into_iter().map(|y| self.put(y)).collect())
    }
    fn slice(&mut self, x: H, axis: i64, start: i64, end: i64, step: i64) -> Result<H, OpError> {
        self.map(x, |t| t.f_slice(axis, start, end, step))
    }
    fn select(&mut self, x: H, axis: i64, idx: &[i64]) -> Result<H, OpError> {
        let idx = Tensor::from_slice(idx).to_device(self.device);
        self.map(x, |t| t.f_index_select(axis, &idx))
    }
}
