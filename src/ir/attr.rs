//! Node attributes with typed accessors (`node.attr_int("group", 1)`).
use super::tensor::Tensor;

/// An attribute value. Kinds the pipeline never interprets (graphs, sparse
/// tensors, type protos, ...) are kept as the encoded `AttributeProto` so they
/// round-trip unchanged.
#[derive(Clone, PartialEq, Debug)]
pub enum Attr {
    Int(i64),
    Float(f32),
    Ints(Vec<i64>),
    Floats(Vec<f32>),
    Str(Vec<u8>),
    Strs(Vec<Vec<u8>>),
    Tensor(Tensor),
    /// Encoded `AttributeProto` of a kind the IR does not model.
    Opaque(Vec<u8>),
}

impl Attr {
    pub fn kind(&self) -> &'static str {
        match self {
            Attr::Int(_) => "int",
            Attr::Float(_) => "float",
            Attr::Ints(_) => "ints",
            Attr::Floats(_) => "floats",
            Attr::Str(_) => "string",
            Attr::Strs(_) => "strings",
            Attr::Tensor(_) => "tensor",
            Attr::Opaque(_) => "opaque",
        }
    }
}

/// An attribute of another kind than its op reads (an [`super::ops::OpError`] once the
/// code visiting the node adds the node's name and op type).
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("attribute '{name}' must be {expected}, found {found}")]
pub struct AttrError {
    pub name: String,
    /// The kind the op reads ("an int", "ints", ...).
    pub expected: &'static str,
    /// The kind the node holds ([`Attr::kind`]).
    pub found: &'static str,
}

impl AttrError {
    pub fn new(name: &str, expected: &'static str, found: &Attr) -> AttrError {
        AttrError { name: name.to_string(), expected, found: found.kind() }
    }
}
