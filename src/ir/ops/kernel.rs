//! Kernels: how an op computes, written once in its op file ([`super::OpDef::run`])
//! against [`Engine`], the tensor primitives an executing engine provides.
//!
//! Why here and not in `train`: an op's shape, cost, channel ties, fix-up and
//! kernel belong together (adding an op is one file), yet `ir` is upstream of
//! `train` and names no libtorch type. So a kernel reads its node (attributes,
//! constants) and composes engine primitives on opaque handles ([`H`]); the
//! engine (rlal's libtorch executor, `train::exec`) owns the tensors behind the
//! handles and maps each primitive to one libtorch call. A new op whose arithmetic
//! the primitives express needs no engine change.
use super::OpError;
use crate::ir::{Node, Tensor};

/// A tensor held by the engine during one node's execution.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct H(pub usize);

/// Element-wise functions of one tensor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Act {
    Relu,
    Relu6,
    Sigmoid,
    HardSwish,
    Tanh,
    Softplus,
    Mish,
    /// GELU; `true`: the tanh approximation.
    Gelu(bool),
    Erf,
    Sqrt,
    Neg,
    Abs,
    Exp,
}

/// Element-wise arithmetic of two tensors (numpy broadcasting).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bin {
    Add,
    Sub,
    Mul,
    /// True division for floats, truncating for integers.
    Div,
}

/// A convolution's geometry (pads symmetric, one per spatial axis).
#[derive(Clone, Debug, PartialEq)]
pub struct ConvArgs {
    pub strides: Vec<i64>,
    pub pads: Vec<i64>,
    pub dilations: Vec<i64>,
    pub transposed: bool,
    pub output_padding: Vec<i64>,
    pub group: i64,
}

/// A 2-D pooling window (pads symmetric).
#[derive(Clone, Debug, PartialEq)]
pub struct PoolArgs {
    pub kernel: Vec<i64>,
    pub strides: Vec<i64>,
    pub pads: Vec<i64>,
    pub dilations: Vec<i64>,
    pub ceil: bool,
    /// Average pooling only: padding counts in the divisor.
    pub count_include_pad: bool,
}

/// How `pad` fills.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum PadMode {
    Constant(f64),
    Reflect,
    Edge,
}

/// Batch normalisation's settings.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BnArgs {
    /// Batch statistics, updating the running ones in place.
    pub train: bool,
    /// ONNX momentum (running = m·running + (1−m)·batch).
    pub momentum: f64,
    pub eps: f64,
}

/// Engine primitives; each returns a new handle (errors are the engine's message).
pub trait Engine {
    /// Shape of `x`.
    fn shape(&self, x: H) -> Vec<i64>;
    /// The elements of an integer (or float, truncated) tensor.
    fn to_ints(&mut self, x: H) -> Result<Vec<i64>, OpError>;
    /// The first element as a float.
    fn to_scalar(&mut self, x: H) -> Result<f64, OpError>;
    /// An IR tensor on the engine's device.
    fn constant(&mut self, t: &Tensor) -> Result<H, OpError>;
    /// `x` in the compute kind of mixed precision (convolutions, matrix products).
    fn low(&mut self, x: H) -> Result<H, OpError>;
    /// A mixed-precision result back in fp32.
    fn full(&mut self, x: H) -> Result<H, OpError>;
    /// `act(x)`, overwriting `x` when `inplace` (Relu, Relu6 only).
    fn act(&mut self, act: Act, x: H, inplace: bool) -> Result<H, OpError>;
    fn clamp(&mut self, x: H, lo: Option<f64>, hi: Option<f64>) -> Result<H, OpError>;
    /// `x · a`.
    fn scale(&mut self, x: H, a: f64) -> Result<H, OpError>;
    /// `x + b`.
    fn shift(&mut self, x: H, b: f64) -> Result<H, OpError>;
    fn binary(&mut self, op: Bin, a: H, b: H) -> Result<H, OpError>;
    fn softmax(&mut self, x: H, axis: i64, log: bool) -> Result<H, OpError>;
    /// Cast to an ONNX data type number.
    fn cast(&mut self, x: H, onnx_type: i64) -> Result<H, OpError>;
    fn reshape(&mut self, x: H, shape: &[i64]) -> Result<H, OpError>;
    fn permute(&mut self, x: H, perm: &[i64]) -> Result<H, OpError>;
    fn unsqueeze(&mut self, x: H, axis: i64) -> Result<H, OpError>;
    /// Broadcast to `shape`, materialised.
    fn expand(&mut self, x: H, shape: &[i64]) -> Result<H, OpError>;
    /// ONNX Gather: `idx` of any shape, negative indices counting from the end.
    fn gather(&mut self, x: H, axis: i64, idx: H) -> Result<H, OpError>;
    fn conv(&mut self, x: H, w: H, b: Option<H>, a: &ConvArgs) -> Result<H, OpError>;
    fn batch_norm(&mut self, x: H, p: [H; 4], a: BnArgs) -> Result<H, OpError>;
    fn max_pool2d(&mut self, x: H, a: &PoolArgs) -> Result<H, OpError>;
    fn avg_pool2d(&mut self, x: H, a: &PoolArgs) -> Result<H, OpError>;
    /// Pads in torch order (last axis first: begin, end, ...).
    fn pad(&mut self, x: H, pads: &[i64], mode: PadMode) -> Result<H, OpError>;
    /// Mean (or max) over `axes`.
    fn reduce(&mut self, x: H, axes: &[i64], keep: bool, max: bool) -> Result<H, OpError>;
    fn matmul(&mut self, a: H, b: H) -> Result<H, OpError>;
    /// `bias + a·b` (2-D).
    fn addmm(&mut self, bias: H, a: H, b: H) -> Result<H, OpError>;
    /// Transpose of a 2-D tensor.
    fn t(&mut self, x: H) -> Result<H, OpError>;
    fn cat(&mut self, xs: &[H], axis: i64) -> Result<H, OpError>;
    fn split(&mut self, x: H, sizes: &[i64], axis: i64) -> Result<Vec<H>, OpError>;
    fn slice(&mut self, x: H, axis: i64, start: i64, end: i64, step: i64) -> Result<H, OpError>;
    /// The entries `idx` along `axis`.
    fn select(&mut self, x: H, axis: i64, idx: &[i64]) -> Result<H, OpError>;
}

/// One node's execution.
pub struct RunCx<'a> {
    pub node: &'a Node,
    /// Handles of the inputs (`None`: omitted optional input).
    pub inputs: Vec<Option<H>>,
    /// IR constants of the inputs, when they are initializers.
    pub consts: Vec<Option<&'a Tensor>>,
    /// Training mode (BatchNormalization uses batch statistics).
    pub train: bool,
    pub opset: i64,
    /// Overrides the BatchNormalization momentum (0: a train-mode forward sets the
    /// running statistics to the batch's).
    pub bn_momentum: Option<f64>,
    /// Input 0 may be overwritten ([`super::OpDef::in_place`]).
    pub inplace: bool,
}

impl RunCx<'_> {
    /// Input `i`.
    pub fn x(&self, i: usize) -> Result<H, OpError> {
        self.opt(i).ok_or(OpError::MissingInput(i))
    }
    pub fn opt(&self, i: usize) -> Option<H> {
        self.inputs.get(i).copied().flatten()
    }
    /// Integer contents of input `i` (IR constant or run-time tensor).
    pub fn ints(&self, e: &mut dyn Engine, i: usize, what: &str) -> Result<Vec<i64>, OpError> {
        if let Some(Some(c)) = self.consts.get(i) {
            return c
                .to_i64()
                .or_else(|| c.to_f32().map(|v| v.into_iter().map(|x| x as i64).collect()))
                .ok_or_else(|| {
                    OpError::Invalid(format!("{what} (input {i}) must be an integer tensor"))
                });
        }
        e.to_ints(self.x(i)?)
    }
    /// A scalar float from input `i`, if present.
    pub fn scalar(&self, e: &mut dyn Engine, i: usize) -> Result<Option<f64>, OpError> {
        self.opt(i).map(|x| e.to_scalar(x)).transpose()
    }
    /// Axes from the attribute (opset < `since`) or from input `slot`.
    pub fn axes(
        &self,
        e: &mut dyn Engine,
        since: i64,
        slot: usize,
    ) -> Result<Option<Vec<i64>>, OpError> {
        if self.opset < since {
            return Ok(self.node.attr_ints("axes")?);
        }
        self.opt(slot).map(|_| self.ints(e, slot, "axes")).transpose()
    }
}

/// Normalises a possibly negative axis of a rank-`r` tensor.
pub fn axis(axis: i64, r: usize) -> Result<i64, OpError> {
    Ok(super::norm_axis(axis, r)? as i64)
}

/// torch's pad list (last axis first) from ONNX `[begins.., ends..]`.
pub fn torch_pad(p: &[i64]) -> Vec<i64> {
    let n = p.len() / 2;
    (0..n).rev().flat_map(|i| [p[i], p[n + i]]).collect()
}

/// Explicit ONNX pads `[begins.., ends..]` of a window over the spatial axes of
/// `x` (shape `size`), resolving `auto_pad`.
pub fn window_pads(
    node: &Node,
    size: &[i64],
    kernel: &[i64],
    strides: &[i64],
    dil: &[i64],
) -> Result<Vec<i64>, OpError> {
    let n = kernel.len();
    let auto = node.attr_str("auto_pad", "NOTSET")?;
    match auto.as_str() {
        "NOTSET" => {
            let p = node.attr_ints("pads")?.unwrap_or_else(|| vec![0; 2 * n]);
            if p.len() != 2 * n {
                return Err(OpError::Invalid(format!(
                    "'pads' has {} entries for {n} spatial dims",
                    p.len()
                )));
            }
            Ok(p)
        }
        "VALID" => Ok(vec![0; 2 * n]),
        "SAME_UPPER" | "SAME_LOWER" => {
            let mut p = vec![0; 2 * n];
            for i in 0..n {
                let inp = size[2 + i];
                let out = (inp + strides[i] - 1) / strides[i];
                let total = ((out - 1) * strides[i] + (kernel[i] - 1) * dil[i] + 1 - inp).max(0);
                let small = total / 2;
                let (b, en) = if auto == "SAME_UPPER" {
                    (small, total - small)
                } else {
                    (total - small, small)
                };
                p[i] = b;
                p[n + i] = en;
            }
            Ok(p)
        }
        other => Err(OpError::Unsupported(format!("auto_pad '{other}' is not supported"))),
    }
}

/// `x` and the symmetric pads torch takes, padding explicitly with `fill` first when
/// `p` is asymmetric (or over `limit`, half a pooling kernel).
pub fn sym_or_pad(
    e: &mut dyn Engine,
    x: H,
    p: &[i64],
    fill: f64,
    limit: Option<&[i64]>,
) -> Result<(H, Vec<i64>), OpError> {
    let n = p.len() / 2;
    let sym = (0..n).all(|i| p[i] == p[n + i] && limit.is_none_or(|k| p[i] <= k[i] / 2));
    if sym {
        return Ok((x, p[..n].to_vec()));
    }
    Ok((e.pad(x, &torch_pad(p), PadMode::Constant(fill))?, vec![0; n]))
}
