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
