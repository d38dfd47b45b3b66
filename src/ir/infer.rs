//! Shape inference over the whole graph, driven by the op registry.
use super::ops::{self, Fact, InferCx};
use super::{fmt_shape, DType, Dim, Graph, IrError};

/// Per-value facts (`None`: unknown, downstream of an unsupported op).
pub type Facts = Vec<Option<Fact>>;

/// Most elements a tensor may hold (fixed dims; 2^40, 4 TiB of float32): sizes
/// beyond it are absurd, and the arithmetic on them (MACs, flattening) would overflow.
pub const MAX_ELEMENTS: u128 = 1 << 40;

/// Elements of the fixed dims of `shape`, when more than [`MAX_ELEMENTS`].
fn too_many(shape: &[Dim]) -> Option<u128> {
    let n = shape.iter().filter_map(Dim::fixed).fold(1u128, |a, d| a.saturating_mul(d as u128));
    (n > MAX_ELEMENTS).then_some(n)
}

/// Infers every value's fact. `input_shape` overrides the non-batch dims of
/// the (single) graph input, e.g. for models exported with dynamic H and W.
pub fn infer(g: &Graph, input_shape: Option<&[usize]>) -> Result<Facts, IrError> {
    let mut facts: Facts = vec![None; g.values.len()];
    for (i, v) in g.values.iter().enumerate() {
        if let Some(t) = &v.init {
            // Large float weights are only marked constant: shape arithmetic
            // never needs their data, and cloning them would double memory.
            facts[i] = Some(if t.len() <= 1 << 16 || !t.dtype.is_float() {
                Fact::konst(t.clone())
            } else {
                Fact::opaque_const(t.dtype, &t.shape)
            });
        }
    }
    for (k, &i) in g.inputs.iter().enumerate() {
        let v = &g.values[i];
        let mut shape = v.shape.clone().ok_or_else(|| {
            IrError::Structure(format!(
                "graph input '{}' declares no shape; pass --input-shape CxHxW",
                v.name
            ))
        })?;
        if k == 0 && shape.is_empty() {
            return Err(IrError::Structure(format!("graph input '{}' is a scalar; the first graph input must be a batch of images (rank 4: NxCxHxW)", v.name)));
        }
        if let Some(s) = input_shape {
            if k == 0 {
                if shape.len() != s.len() + 1 {
                    return Err(IrError::Structure(format!(
                        "--input-shape {} has {} dims but graph input '{}' {} has rank {}",
                        s.iter().map(|d| d.to_string()).collect::<Vec<_>>().join("x"),
                        s.len(),
                        v.name,
                        fmt_shape(&shape),
                        shape.len()
                    )));
                }
                for (d, &n) in shape[1..].iter_mut().zip(s) {
                    *d = Dim::Fixed(n);
                }
            }
        }
        if shape.contains(&Dim::Fixed(0)) {
            return Err(IrError::Structure(format!(
                "graph input '{}' has a zero-sized dim {}",
                v.name,
                fmt_shape(&shape)
            )));
        }
        if let Some(n) = too_many(&shape) {
            return Err(IrError::Structure(format!(
                "graph input '{}' {} holds {n} elements, more than the {MAX_ELEMENTS} rlal accepts",
                v.name,
                fmt_shape(&shape)
            )));
        }
        if let Some(Dim::Sym(s)) = shape.first() {
            if s == "?" {
                shape[0] = Dim::Sym("N".into());
            }
        }
        if shape.iter().skip(1).any(|d| d.fixed().is_none()) {
            return Err(IrError::Structure(format!(
                "graph input '{}' has dynamic non-batch dims {}; pass --input-shape with the fixed sizes (e.g. 3x224x224)",
                v.name,
                fmt_shape(&shape)
            )));
        }
        facts[i] = Some(Fact::new(v.dtype.unwrap_or(DType::F32), shape));
    }
    let opset = g.meta.opset();
    for node in &g.nodes {
        let inputs: Vec<Option<&Fact>> =
            node.inputs.iter().map(|i| i.and_then(|i| facts[i].as_ref())).collect();
        let unknown_input =
            node.inputs.iter().zip(&inputs).any(|(i, f)| i.is_some() && f.is_none());
        let out: Vec<Option<Fact>> = match ops::lookup(node) {
            Some(op) => match op.infer(&InferCx { node, inputs, opset }) {
                Ok(f) => {
                    if f.len() < node.outputs.iter().filter(|o| o.is_some()).count() {
                        return Err(IrError::Node {
                            node: node.label(),
                            msg: format!(
                                "produces {} outputs, the op defines {}",
                                node.outputs.len(),
                                f.len()
                            ),
                        });
                    }
                    f.into_iter().map(Some).collect()
                }
                Err(_) if unknown_input => declared(g, node),
                Err(error) => return Err(IrError::Op { node: node.label(), error }),
            },
            None => declared(g, node),
        };
        for (o, f) in node.outputs.iter().zip(out) {
            if let Some(o) = o {
                if let Some(f) = &f {
                    if f.shape.contains(&Dim::Fixed(0)) {
                        return Err(IrError::Node {
                            node: node.label(),
                            msg: format!(
                                "output '{}' has a zero-sized dim {}",
                                g.values[*o].name,
                                fmt_shape(&f.shape)
                            ),
                        });
                    }
                    if let Some(n) = too_many(&f.shape) {
                        return Err(IrError::Node { node: node.label(), msg: format!("output '{}' {} would hold {n} elements, more than the {MAX_ELEMENTS} rlal accepts", g.values[*o].name, fmt_shape(&f.shape)) });
                    }
                }
                facts[*o] = f;
            }
        }
    }
    Ok(facts)
}

/// Facts of an opaque node's outputs: the shapes declared in the file, if any.
fn declared(g: &Graph, node: &crate::ir::Node) -> Vec<Option<Fact>> {
    node.outputs
        .iter()
        .map(|o| {
            let v = &g.values[(*o)?];
            Some(Fact::new(v.dtype.unwrap_or(DType::F32), v.shape.clone()?))
        })
        .collect()
}
