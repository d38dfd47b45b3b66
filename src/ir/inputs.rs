//! The graph's inputs: the one that carries the images and its layout (channels
//! first, NCHW, as PyTorch exports; or channels last, NHWC, as tf2onnx keeps
//! TensorFlow's), and inputs that are not data, bound to constant values.
//!
//! * [`detect`]: a channels-last input reaches the first convolution through a
//!   `Transpose` with `perm = [0, 3, 1, 2]` (directly, or after ops such as Keras'
//!   `Rescaling`/`Normalization` that run in NHWC); anything else is NCHW.
//! * [`bind`]: `--bind NAME=v1,v2,…` / `bind:` in a recipe makes a graph input an
//!   initializer of its declared shape (e.g. a Keras `Normalization` layer's mean and
//!   variance that tf2onnx left as inputs).
//! * [`check_unbound`]: every graph input but the images must have a value.
use super::{fmt_shape, DType, Data, Dim, Graph, IrError, Tensor, ValueId};
use std::collections::{BTreeMap, HashSet};

/// Memory order of the image input's dims after the batch dim.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    serde::Serialize,
    serde::Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum Layout {
    /// Channels first: `[N, C, H, W]`.
    #[default]
    Nchw,
    /// Channels last: `[N, H, W, C]` (TensorFlow / Keras).
    Nhwc,
}

impl Layout {
    pub fn name(self) -> &'static str {
        match self {
            Layout::Nchw => "NCHW",
            Layout::Nhwc => "NHWC",
        }
    }
    /// C, H, W of the images a model with non-batch input dims `dims` takes.
    pub fn chw(self, dims: [usize; 3]) -> [usize; 3] {
        match self {
            Layout::Nchw => dims,
            Layout::Nhwc => [dims[2], dims[0], dims[1]],
        }
    }
    /// The non-batch input dims of C x H x W images in this layout.
    pub fn dims(self, chw: [usize; 3]) -> [usize; 3] {
        match self {
            Layout::Nchw => chw,
            Layout::Nhwc => [chw[1], chw[2], chw[0]],
        }
    }
}

impl std::fmt::Display for Layout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The layout a recipe or flag asks for: `auto` ([`detect`]) or a fixed one.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    serde::Serialize,
    serde::Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum InputLayout {
    #[default]
    Auto,
    Nchw,
    Nhwc,
}

impl InputLayout {
    /// The layout of `g`'s image input: the fixed one, or the detected one.
    pub fn resolve(self, g: &Graph) -> Layout {
        match self {
            InputLayout::Auto => detect(g),
            InputLayout::Nchw => Layout::Nchw,
            InputLayout::Nhwc => Layout::Nhwc,
        }
    }
}

/// The layout of the first graph input: NHWC when, following the values computed
/// from it in graph order, a `Transpose` with `perm = [0, 3, 1, 2]` comes before any
/// convolution, pooling or normalisation; NCHW otherwise.
pub fn detect(g: &Graph) -> Layout {
    walk(g).0
}

/// The values laid out as the images are fed (channels on the last axis in an NHWC
/// model, [`crate::ir::ModelMeta::input_layout`]): the first graph input and the
/// values computed from it before the model's own transpose to NCHW. Empty in an
/// NCHW model, whose values all have their channels on axis 1.
pub fn channels_last(g: &Graph) -> HashSet<ValueId> {
    match g.meta.input_layout {
        Layout::Nhwc => walk(g).1,
        Layout::Nchw => HashSet::new(),
    }
}

/// Follows the values computed from the first graph input in graph order up to the
/// first layout `Transpose` or channels-first op ([`detect`]): the layout it finds
/// and the values reached before that op.
fn walk(g: &Graph) -> (Layout, HashSet<ValueId>) {
    let Some(&input) = g.inputs.first() else { return (Layout::Nchw, HashSet::new()) };
    let mut reached: HashSet<ValueId> = HashSet::from([input]);
    for n in &g.nodes {
        if !n.inputs.iter().flatten().any(|v| reached.contains(v)) {
            continue;
        }
        match n.op_type.as_str() {
            "Transpose" => {
                let perm = n.attr_ints("perm").ok().flatten();
                if perm.as_deref() == Some(&[0, 3, 1, 2][..]) {
                    return (Layout::Nhwc, reached);
                }
                return (Layout::Nchw, reached);
            }
            _ if super::ops::is(n, |d| d.channels_first()) => return (Layout::Nchw, reached),
            _ => reached.extend(n.outputs.iter().flatten()),
        }
    }
    (Layout::Nchw, reached)
}

/// Makes each named graph input an initializer holding `values` (its declared shape
/// and element type; the count must match). Errors name the input and, for an
/// unknown name, list the graph's inputs.
pub fn bind(g: &mut Graph, binds: &BTreeMap<String, Vec<f64>>) -> Result<(), IrError> {
    for (name, values) in binds {
        let err = |msg: String| IrError::Bind { input: name.clone(), msg };
        let Some(pos) = g.inputs.iter().position(|&i| g.values[i].name == *name) else {
            return Err(err(format!(
                "the model has no graph input '{name}' without a value; its inputs: {}",
                describe(g, &g.inputs)
            )));
        };
        let id = g.inputs[pos];
        let t = bound_tensor(g, id, values)?;
        g.values[id].init = Some(t);
        g.inputs.remove(pos);
        if g.inputs.is_empty() {
            return Err(err(
                "that was the model's only input, the one the images go to".to_string()
            ));
        }
    }
    Ok(())
}

/// The tensor of `values` in the declared shape and element type of input `id`.
fn bound_tensor(g: &Graph, id: ValueId, values: &[f64]) -> Result<Tensor, IrError> {
    let v = &g.values[id];
    let err = |msg: String| IrError::Bind { input: v.name.clone(), msg };
    let shape = v.shape.as_ref().ok_or_else(|| err("the input declares no shape".into()))?;
    let dims: Vec<usize> = shape
        .iter()
        .map(Dim::fixed)
        .collect::<Option<_>>()
        .ok_or_else(|| err(format!("its shape {} is not fixed", fmt_shape(shape))))?;
    let n: usize = dims.iter().product();
    if values.len() != n {
        let given = values.len();
        return Err(err(format!("{given} values given, the input {} holds {n}", fmt_shape(shape))));
    }
    let dtype = v.dtype.unwrap_or(DType::F32);
    let int = |what: &str| -> Result<Vec<i64>, IrError> {
        values
            .iter()
            .map(|&x| {
                (x.fract() == 0.0 && x.is_finite())
                    .then_some(x as i64)
                    .ok_or_else(|| err(format!("{x} is not an integer, the input is {what}")))
            })
            .collect()
    };
    let data = match dtype {
        DType::F32 => Data::F32(values.iter().map(|&x| x as f32).collect()),
        DType::F64 => Data::F64(values.to_vec()),
        DType::I64 => Data::I64(int("int64")?),
        DType::I32 => Data::I32(int("int32")?.into_iter().map(|x| x as i32).collect()),
        d => return Err(err(format!("inputs of type {d} cannot be bound"))),
    };
    Ok(Tensor { dtype, shape: dims, data })
}

/// `'name' [shape] type` of each value.
fn describe(g: &Graph, ids: &[ValueId]) -> String {
    let one = |&i: &ValueId| {
        let v = &g.values[i];
        let shape = v.shape.as_deref().map_or("(no shape)".into(), fmt_shape);
        format!("'{}' {shape} {}", v.name, v.dtype.map_or("", |d| d.name()))
    };
    ids.iter().map(one).collect::<Vec<_>>().join(", ")
}

/// Refuses a graph with inputs other than the images that have no value (an input
/// with an initializer of its name is a constant and was never one of them): names
/// them with their shapes and says how to give them values.
pub fn check_unbound(g: &Graph) -> Result<(), IrError> {
    if g.inputs.len() <= 1 {
        return Ok(());
    }
    let rank4 = |&&i: &&ValueId| g.values[i].shape.as_ref().is_some_and(|s| s.len() == 4);
    let image = *g.inputs.iter().find(rank4).unwrap_or(&g.inputs[0]);
    let others: Vec<ValueId> = g.inputs.iter().copied().filter(|&i| i != image).collect();
    Err(IrError::Structure(format!(
        "the model has graph inputs besides the images ('{}') with no value: {}. rlal feeds \
         only images: re-export with the values frozen, or bind them: `--bind NAME=v1,v2,…` / \
         `bind:` in the recipe",
        g.values[image].name,
        describe(g, &others)
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::{Attr, Node, Value};

    fn input(g: &mut Graph, name: &str, shape: &[usize]) -> ValueId {
        let id = g.add_value(Value {
            name: name.into(),
            dtype: Some(DType::F32),
            shape: Some(shape.iter().map(|&d| Dim::Fixed(d)).collect()),
            ..Default::default()
        });
        g.inputs.push(id);
        id
    }

    fn node(g: &mut Graph, op: &str, ins: &[ValueId], attrs: Vec<(String, Attr)>) -> ValueId {
        let out =
            g.add_value(Value { name: format!("{op}{}", g.nodes.len()), ..Default::default() });
        g.nodes.push(Node {
            name: format!("n{}", g.nodes.len()),
            op_type: op.into(),
            inputs: ins.iter().map(|&i| Some(i)).collect(),
            outputs: vec![Some(out)],
            attrs,
            ..Default::default()
        });
        out
    }

    fn perm(p: &[i64]) -> Vec<(String, Attr)> {
        vec![("perm".into(), Attr::Ints(p.to_vec()))]
    }

    #[test]
    fn a_transpose_before_the_first_conv_means_channels_last() {
        let mut g = Graph::default();
        let x = input(&mut g, "x", &[1, 8, 8, 3]);
        let k = input(&mut g, "k", &[1]);
        let scaled = node(&mut g, "Mul", &[x, k], vec![]);
        let t = node(&mut g, "Transpose", &[scaled], perm(&[0, 3, 1, 2]));
        node(&mut g, "Conv", &[t], vec![]);
        assert_eq!(detect(&g), Layout::Nhwc);
        assert_eq!(InputLayout::Nchw.resolve(&g), Layout::Nchw);
        // The values before the transpose keep the images' layout (channels last).
        assert!(channels_last(&g).is_empty(), "the layout is not resolved yet");
        g.meta.input_layout = Layout::Nhwc;
        assert_eq!(channels_last(&g), HashSet::from([x, scaled]));
        g.nodes[1].attrs = perm(&[0, 2, 3, 1]);
        assert_eq!(detect(&g), Layout::Nchw);
        // A conv reached first: channels first, whatever comes later.
        let mut g = Graph::default();
        let x = input(&mut g, "x", &[1, 3, 8, 8]);
        let c = node(&mut g, "Conv", &[x], vec![]);
        node(&mut g, "Transpose", &[c], perm(&[0, 3, 1, 2]));
        assert_eq!(detect(&g), Layout::Nchw);
        assert_eq!(Layout::Nhwc.chw([28, 28, 1]), [1, 28, 28]);
        assert_eq!(Layout::Nhwc.dims([1, 28, 28]), [28, 28, 1]);
    }

    /// The ops that read their input channels first (and so decide NCHW when reached
    /// before a layout transpose) are the registry's convolutions, pools and norms.
    #[test]
    fn channels_first_ops_are_convs_pools_and_norms() {
        let first: Vec<&str> = crate::ir::ops::supported()
            .into_iter()
            .filter(|op| {
                let n = Node { op_type: op.to_string(), ..Default::default() };
                crate::ir::ops::is(&n, |d| d.channels_first())
            })
            .collect();
        let want = [
            "AveragePool",
            "BatchNormalization",
            "Conv",
            "ConvTranspose",
            "GlobalAveragePool",
            "GlobalMaxPool",
            "InstanceNormalization",
            "MaxPool",
        ];
        assert_eq!(first, want);
        for op in want {
            let mut g = Graph::default();
            let x = input(&mut g, "x", &[1, 8, 8, 3]);
            let y = node(&mut g, op, &[x], vec![]);
            node(&mut g, "Transpose", &[y], perm(&[0, 3, 1, 2]));
            assert_eq!(detect(&g), Layout::Nchw, "{op}");
        }
    }

    #[test]
    fn unbound_inputs_are_named_and_binding_makes_them_constants() {
        let mut g = Graph::default();
        input(&mut g, "image", &[1, 8, 8, 3]);
        input(&mut g, "mean", &[1, 1, 1, 3]);
        let e = check_unbound(&g).unwrap_err().to_string();
        assert!(e.contains("'mean' [1,1,1,3] float32") && e.contains("--bind NAME="), "{e}");
        let b = BTreeMap::from([("mean".to_string(), vec![0.5, 0.25])]);
        let e = bind(&mut g.clone(), &b).unwrap_err().to_string();
        assert!(e.contains("2 values given, the input [1,1,1,3] holds 3"), "{e}");
        let nope = BTreeMap::from([("nope".to_string(), vec![1.0])]);
        let e = bind(&mut g.clone(), &nope).unwrap_err().to_string();
        assert!(e.contains("no graph input 'nope'") && e.contains("'image'"), "{e}");
        let b = BTreeMap::from([("mean".to_string(), vec![0.5, 0.25, 1.0])]);
        bind(&mut g, &b).unwrap();
        check_unbound(&g).unwrap();
        let m = g.value_id("mean").unwrap();
        assert_eq!(g.values[m].init.as_ref().unwrap().as_f32(), Some(&[0.5f32, 0.25, 1.0][..]));
        let only = BTreeMap::from([("image".to_string(), vec![0.0; 192])]);
        assert!(bind(&mut g, &only).unwrap_err().to_string().contains("only input"));
    }
}
