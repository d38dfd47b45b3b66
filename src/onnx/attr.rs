//! AttributeProto <-> IR attributes.
use super::{pb, tensor, OnnxError};
use crate::ir::Attr;
use pb::attribute_proto::AttributeType as T;
use prost::Message;
use std::path::Path;

pub(crate) fn from_proto(
    a: &pb::AttributeProto,
    dir: Option<&Path>,
    file: &Path,
) -> Result<(String, Attr), OnnxError> {
    let name = a.name.clone().unwrap_or_default();
    let ty = a.r#type.and_then(|t| T::try_from(t).ok()).unwrap_or_else(|| {
        // IR < 0.0.2: infer the kind from the field in use.
        if a.f.is_some() {
            T::Float
        } else if a.i.is_some() {
            T::Int
        } else if a.s.is_some() {
            T::String
        } else if a.t.is_some() {
            T::Tensor
        } else if !a.ints.is_empty() {
            T::Ints
        } else if !a.floats.is_empty() {
            T::Floats
        } else if !a.strings.is_empty() {
            T::Strings
        } else {
            T::Undefined
        }
    });
    let plain = a.doc_string.is_none() && a.ref_attr_name.is_none();
    let v = match ty {
        T::Float if plain => Attr::Float(a.f.unwrap_or(0.0)),
        T::Int if plain => Attr::Int(a.i.unwrap_or(0)),
        T::String if plain => Attr::Str(a.s.clone().unwrap_or_default()),
        T::Ints if plain => Attr::Ints(a.ints.clone()),
        T::Floats if plain => Attr::Floats(a.floats.clone()),
        T::Strings if plain => Attr::Strs(a.strings.clone()),
        T::Tensor if plain && a.t.is_some() => {
            Attr::Tensor(tensor::from_proto(a.t.as_ref().expect("checked"), dir, file)?)
        }
        _ => Attr::Opaque(a.encode_to_vec()),
    };
    Ok((name, v))
}

pub(crate) fn to_proto(name: &str, a: &Attr) -> pb::AttributeProto {
    let mut p = pb::AttributeProto { name: Some(name.to_string()), ..Default::default() };
    let ty = match a {
        Attr::Float(f) => {
            p.f = Some(*f);
            T::Float
        }
        Attr::Int(i) => {
            p.i = Some(*i);
            T::Int
        }
        Attr::Str(s) => {
            p.s = Some(s.clone());
            T::String
        }
        Attr::Ints(v) => {
            p.ints = v.clone();
            T::Ints
        }
        Attr::Floats(v) => {
            p.floats = v.clone();
            T::Floats
        }
        Attr::Strs(v) => {
            p.strings = v.clone();
            T::Strings
        }
        Attr::Tensor(t) => {
            p.t = Some(tensor::to_proto("", t));
            T::Tensor
        }
        Attr::Opaque(b) => {
            let mut d = pb::AttributeProto::decode(&b[..]).unwrap_or_default();
            d.name = Some(name.to_string());
            return d;
        }
    };
    p.r#type = Some(ty as i32);
    p
}
