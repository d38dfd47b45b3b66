//! Structural checks of a graph before it is written (the subset of the ONNX
//! checker's semantics that rlal relies on): every node input is defined
//! (graph input, initializer, or output of an earlier node), nodes are in
//! topological order, no value is produced twice, outputs are defined,
//! initializers agree with their declared shapes, and shape inference
//! succeeds with every declared fixed dim matching the inferred one.
use super::RewriteError;
use crate::ir::infer::Facts;
use crate::ir::{fmt_shape, Dim, Graph};

/// Checks `g`; `input_shape` overrides the input's non-batch dims as at import.
pub fn check(g: &Graph, input_shape: Option<&[usize]>) -> Result<(), RewriteError> {
    let facts = crate::ir::infer::infer(g, input_shape)?;
    check_with(g, &facts)
}

/// [`check`] against facts already inferred for `g`.
pub fn check_with(g: &Graph, facts: &Facts) -> Result<(), RewriteError> {
    let err = |m: String| Err(RewriteError::Check(m));
    let mut defined = vec![false; g.values.len()];
    for &i in &g.inputs {
        defined[i] = true;
    }
    for (i, v) in g.values.iter().enumerate() {
        if let Some(t) = &v.init {
            defined[i] = true;
            if let Some(s) = &v.shape {
                let fixed: Vec<Dim> = t.shape.iter().map(|&d| Dim::Fixed(d)).collect();
                if *s != fixed {
                    return err(format!(
                        "initializer '{}' holds {:?} but declares {}",
                        v.name,
                        t.shape,
                        fmt_shape(s)
                    ));
                }
            }
        }
    }
    for node in &g.nodes {
        for (slot, i) in node.inputs.iter().enumerate() {
            if let Some(i) = i {
                if !defined[*i] {
                    return err(format!(
                        "input {slot} '{}' of {} is not defined before the node",
                        g.values[*i].name,
                        node.label()
                    ));
                }
            }
        }
        for &o in node.outputs.iter().flatten() {
            if defined[o] {
                return err(format!(
                    "value '{}' is defined twice (second time by {})",
                    g.values[o].name,
                    node.label()
                ));
            }
            defined[o] = true;
        }
    }
    for &o in &g.outputs {
        if !defined[o] {
            return err(format!("graph output '{}' is never computed", g.values[o].name));
        }
    }
    for (v, f) in g.values.iter().zip(facts) {
        let (Some(s), Some(f)) = (&v.shape, f) else { continue };
        let bad = s.len() != f.rank()
            || s.iter()
                .zip(&f.shape)
                .any(|(a, b)| matches!((a, b), (Dim::Fixed(x), Dim::Fixed(y)) if x != y));
        if bad && v.init.is_none() {
            return err(format!(
                "value '{}' declares {} but computes {}",
                v.name,
                fmt_shape(s),
                fmt_shape(&f.shape)
            ));
        }
    }
    Ok(())
}
