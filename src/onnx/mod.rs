//! ONNX protobuf I/O: `ModelProto` bytes <-> [`crate::ir::Graph`].
//!
//! Import only translates; meaning lives in the IR's op registry. Whatever
//! rlal does not model (functions, training info, metadata, node overloads,
//! opaque attributes) is carried as encoded bytes and written back verbatim,
//! so `save(load(m))` is an equivalent model. Files may be gzip-compressed
//! (`.onnx.gz`); initializers may live in external data files.
mod attr;
mod stream;
#[allow(clippy::all)]
pub mod pb;
mod tensor;

use crate::ir::{Dim, Graph, ModelMeta, Node, Value, ValueId};
use prost::Message;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Errors of the ONNX I/O layer; each names the file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OnnxError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: not a readable ONNX model ({msg})")]
    Decode { path: PathBuf, msg: String },
    #[error("{path}: initializer '{tensor}': {msg}")]
    Tensor { path: PathBuf, tensor: String, msg: String },
    #[error("{path}: {msg}")]
    Invalid { path: PathBuf, msg: String },
}

/// Reads an ONNX model file (plain or gzip) into the IR.
pub fn load(path: &Path) -> Result<Graph, OnnxError> {
    use std::io::BufRead;
    let io = |source| OnnxError::Io { path: path.to_path_buf(), source };
    let f = std::fs::File::open(path).map_err(io)?;
    let mut r = std::io::BufReader::with_capacity(1 << 20, f);
    let head = r.fill_buf().map_err(io)?;
    if head.is_empty() {
        return Err(OnnxError::Decode { path: path.to_path_buf(), msg: "the file is empty".into() });
    }
    if head.starts_with(&[0x1f, 0x8b]) {
        decode_from(std::io::BufReader::with_capacity(1 << 20, flate2::read::GzDecoder::new(r)), path)
    } else {
        decode_from(r, path)
    }
}

/// Decodes model bytes; `path` names the source in errors and locates external data.
pub fn load_bytes(bytes: &[u8], path: &Path) -> Result<Graph, OnnxError> {
    if bytes.is_empty() {
        return Err(OnnxError::Decode { path: path.to_path_buf(), msg: "the file is empty".into() });
    }
    if bytes.starts_with(&[0x1f, 0x8b]) {
        decode_from(std::io::BufReader::new(flate2::read::GzDecoder::new(bytes)), path)
    } else {
        decode_from(bytes, path)
    }
}

/// Decoding error inside the stream: a message (→ Decode) or a tensor error.
enum Dec {
    Msg(String),
    Onnx(OnnxError),
}
impl From<String> for Dec {
    fn from(s: String) -> Dec {
        Dec::Msg(s)
    }
}

fn decode_from(r: impl std::io::Read, path: &Path) -> Result<Graph, OnnxError> {
    let dir = path.parent().map(|d| if d.as_os_str().is_empty() { Path::new(".") } else { d });
    let mut inits = Vec::new();
    let model = stream::decode(r, |t: pb::TensorProto| {
        let name = t.name.clone().unwrap_or_default();
        let data = tensor::from_proto(&t, dir, path).map_err(Dec::Onnx)?;
        inits.push((name, data));
        Ok::<(), Dec>(())
    })
    .map_err(|e| match e {
        Dec::Msg(msg) => OnnxError::Decode { path: path.to_path_buf(), msg: format!("protobuf: {msg}") },
        Dec::Onnx(e) => e,
    })?;
    from_model(model, inits, path)
}

fn invalid(path: &Path, msg: String) -> OnnxError {
    OnnxError::Invalid { path: path.to_path_buf(), msg }
}

fn value_from_info(vi: &pb::ValueInfoProto) -> Value {
    let mut v = Value { name: vi.name.clone().unwrap_or_default(), doc: vi.doc_string.clone().unwrap_or_default(), ..Default::default() };
    if let Some(pb::type_proto::Value::TensorType(tt)) = vi.r#type.as_ref().and_then(|t| t.value.as_ref()) {
        v.dtype = tt.elem_type.map(crate::ir::DType);
        if let Some(s) = &tt.shape {
            v.shape = Some(
                s.dim
                    .iter()
                    .map(|d| match &d.value {
                        Some(pb::tensor_shape_proto::dimension::Value::DimValue(n)) if *n >= 0 => Dim::Fixed(*n as usize),
                        Some(pb::tensor_shape_proto::dimension::Value::DimParam(p)) => Dim::Sym(p.clone()),
                        _ => Dim::Sym("?".into()),
                    })
                    .collect(),
            );
        }
    }
    v
}

fn from_model(mut model: pb::ModelProto, inits: Vec<(String, crate::ir::Tensor)>, path: &Path) -> Result<Graph, OnnxError> {
    let mut gp = model.graph.take().ok_or_else(|| invalid(path, "the model has no graph".into()))?;
    let dir = path.parent().map(|d| if d.as_os_str().is_empty() { Path::new(".") } else { d });
    let mut meta = ModelMeta {
        ir_version: model.ir_version.unwrap_or(0),
        opsets: model.opset_import.iter().map(|o| (o.domain.clone().unwrap_or_default(), o.version.unwrap_or(0))).collect(),
        graph_name: gp.name.clone().unwrap_or_default(),
        graph_doc: gp.doc_string.clone().unwrap_or_default(),
        passthrough: Vec::new(),
    };
    if meta.opsets.is_empty() {
        return Err(invalid(path, "the model declares no opset_import".into()));
    }
    let opset = meta.opset();
    if !(7..=23).contains(&opset) {
        return Err(invalid(path, format!("default-domain opset {opset} is outside the supported range 7..=23; convert the model with onnx.version_converter")));
    }
    // Keep what the IR does not model: the model minus the graph, plus the
    // graph's own leftovers (sparse initializers, quantization annotations, metadata).
    let nodes = std::mem::take(&mut gp.node);
    let graph_inputs = std::mem::take(&mut gp.input);
    let graph_outputs = std::mem::take(&mut gp.output);
    let value_info = std::mem::take(&mut gp.value_info);
    model.graph = Some(gp);
    meta.passthrough = model.encode_to_vec();

    let mut g = Graph { meta, ..Default::default() };
    let mut ids: HashMap<String, ValueId> = HashMap::new();
    for (name, data) in inits {
        if name.is_empty() {
            return Err(invalid(path, "an initializer has no name".into()));
        }
        if ids.contains_key(&name) {
            return Err(invalid(path, format!("initializer '{name}' is defined twice")));
        }
        let id = g.add_value(Value { name: name.clone(), dtype: Some(data.dtype), shape: Some(data.shape.iter().map(|&d| Dim::Fixed(d)).collect()), init: Some(data), ..Default::default() });
        ids.insert(name, id);
    }
    for vi in &graph_inputs {
        let v = value_from_info(vi);
        if let Some(&id) = ids.get(&v.name) {
            g.init_inputs.push(id);
            continue;
        }
        let id = g.add_value(v.clone());
        ids.insert(v.name, id);
        g.inputs.push(id);
    }
    // Node outputs (the file may list nodes out of order).
    for (k, n) in nodes.iter().enumerate() {
        for o in n.output.iter().filter(|o| !o.is_empty()) {
            if ids.contains_key(o) {
                let node = n.name.clone().unwrap_or_else(|| format!("#{k}"));
                return Err(invalid(path, format!("node '{node}' ({}) writes '{o}', which is already defined", n.op_type.clone().unwrap_or_default())));
            }
            let id = g.add_value(Value { name: o.clone(), ..Default::default() });
            ids.insert(o.clone(), id);
        }
    }
    for vi in &value_info {
        let v = value_from_info(vi);
        if let Some(&id) = ids.get(&v.name) {
            let slot = &mut g.values[id];
            if slot.init.is_none() {
                slot.dtype = v.dtype;
                slot.shape = v.shape;
                slot.doc = v.doc;
                slot.has_value_info = true;
            }
        }
    }
    let domains: Vec<&str> = g.meta.opsets.iter().map(|(d, _)| d.as_str()).collect();
    for (k, n) in nodes.iter().enumerate() {
        let name = n.name.clone().unwrap_or_default();
        let op_type = n.op_type.clone().unwrap_or_default();
        let label = if name.is_empty() { format!("#{k} ({op_type})") } else { format!("'{name}' ({op_type})") };
        if op_type.is_empty() {
            return Err(invalid(path, format!("node {label} has no op_type")));
        }
        let domain = n.domain.clone().unwrap_or_default();
        let dom_ok = domains.contains(&domain.as_str())
            || (domain == "ai.onnx" && domains.contains(&""))
            || (domain.is_empty() && domains.contains(&"ai.onnx"));
        if !dom_ok {
            return Err(invalid(path, format!("node {label} uses domain '{domain}', which the model does not import (opset_import has: {})", domains.iter().map(|d| if d.is_empty() { "ai.onnx" } else { d }).collect::<Vec<_>>().join(", "))));
        }
        let mut inputs = Vec::with_capacity(n.input.len());
        for i in &n.input {
            if i.is_empty() {
                inputs.push(None);
                continue;
            }
            match ids.get(i) {
                Some(&id) => inputs.push(Some(id)),
                None => {
                    return Err(invalid(path, format!("node {label} reads '{i}', which is not a graph input, an initializer or any node's output (missing initializer?)")))
                }
            }
        }
        let outputs = n.output.iter().map(|o| if o.is_empty() { None } else { Some(ids[o]) }).collect();
        let mut attrs = Vec::with_capacity(n.attribute.len());
        for a in &n.attribute {
            attrs.push(attr::from_proto(a, dir, path).map_err(|e| match e {
                OnnxError::Tensor { path, msg, .. } => invalid(&path, format!("node {label}: attribute tensor: {msg}")),
                e => e,
            })?);
        }
        let extra = pb::NodeProto {
            overload: n.overload.clone(),
            metadata_props: n.metadata_props.clone(),
            device_configurations: n.device_configurations.clone(),
            ..Default::default()
        };
        let extra = if extra == pb::NodeProto::default() { Vec::new() } else { extra.encode_to_vec() };
        g.nodes.push(Node { name, op_type, domain, inputs, outputs, attrs, doc: n.doc_string.clone().unwrap_or_default(), extra });
    }
    for vi in &graph_outputs {
        let v = value_from_info(vi);
        let id = match ids.get(&v.name) {
            Some(&id) => id,
            None => return Err(invalid(path, format!("graph output '{}' is not produced by any node", v.name))),
        };
        let slot = &mut g.values[id];
        if v.dtype.is_some() {
            slot.dtype = v.dtype;
        }
        if v.shape.is_some() {
            slot.shape = v.shape;
        }
        if !v.doc.is_empty() {
            slot.doc = v.doc;
        }
        g.outputs.push(id);
    }
    g.toposort().map_err(|e| invalid(path, e.to_string()))?;
    Ok(g)
}

fn info_proto(v: &Value) -> pb::ValueInfoProto {
    use pb::tensor_shape_proto::{dimension, Dimension};
    let shape = v.shape.as_ref().map(|s| pb::TensorShapeProto {
        dim: s
            .iter()
            .map(|d| Dimension {
                value: Some(match d {
                    Dim::Fixed(n) => dimension::Value::DimValue(*n as i64),
                    Dim::Sym(p) if p == "?" => return Dimension::default(),
                    Dim::Sym(p) => dimension::Value::DimParam(p.clone()),
                }),
                denotation: None,
            })
            .collect(),
    });
    let tt = pb::type_proto::Tensor { elem_type: Some(v.dtype.map(|d| d.0).unwrap_or(1)), shape };
    pb::ValueInfoProto {
        name: Some(v.name.clone()),
        r#type: Some(pb::TypeProto { value: Some(pb::type_proto::Value::TensorType(tt)), denotation: None }),
        doc_string: if v.doc.is_empty() { None } else { Some(v.doc.clone()) },
        ..Default::default()
    }
}

/// Encodes the IR as a `ModelProto`.
pub fn to_model(g: &Graph) -> pb::ModelProto {
    let mut model = if g.meta.passthrough.is_empty() {
        pb::ModelProto::default()
    } else {
        pb::ModelProto::decode(&g.meta.passthrough[..]).unwrap_or_default()
    };
    model.ir_version = Some(g.meta.ir_version.max(3));
    model.opset_import = g
        .meta
        .opsets
        .iter()
        .map(|(d, v)| pb::OperatorSetIdProto { domain: Some(d.clone()), version: Some(*v) })
        .collect();
    let mut gp = model.graph.take().unwrap_or_default();
    gp.name = Some(g.meta.graph_name.clone());
    if !g.meta.graph_doc.is_empty() {
        gp.doc_string = Some(g.meta.graph_doc.clone());
    }
    let name = |id: &Option<ValueId>| id.map(|i| g.values[i].name.clone()).unwrap_or_default();
    gp.node = g
        .nodes
        .iter()
        .map(|n| {
            let mut p = if n.extra.is_empty() { pb::NodeProto::default() } else { pb::NodeProto::decode(&n.extra[..]).unwrap_or_default() };
            p.name = Some(n.name.clone());
            p.op_type = Some(n.op_type.clone());
            p.domain = if n.domain.is_empty() { None } else { Some(n.domain.clone()) };
            p.input = n.inputs.iter().map(name).collect();
            p.output = n.outputs.iter().map(name).collect();
            p.attribute = n.attrs.iter().map(|(k, a)| attr::to_proto(k, a)).collect();
            p.doc_string = if n.doc.is_empty() { None } else { Some(n.doc.clone()) };
            p
        })
        .collect();
    gp.initializer = g
        .values
        .iter()
        .filter_map(|v| v.init.as_ref().map(|t| tensor::to_proto(&v.name, t)))
        .collect();
    gp.input = g.inputs.iter().chain(g.init_inputs.iter()).map(|&i| info_proto(&g.values[i])).collect();
    gp.output = g.outputs.iter().map(|&i| info_proto(&g.values[i])).collect();
    let io: std::collections::HashSet<ValueId> = g.inputs.iter().chain(&g.outputs).copied().collect();
    gp.value_info = g
        .values
        .iter()
        .enumerate()
        .filter(|(i, v)| v.has_value_info && v.init.is_none() && !io.contains(i))
        .map(|(_, v)| info_proto(v))
        .collect();
    model.graph = Some(gp);
    model
}

/// Encoded model bytes.
pub fn to_bytes(g: &Graph) -> Vec<u8> {
    to_model(g).encode_to_vec()
}

/// Writes the model atomically (temp file in the same folder, then rename);
/// gzip-compressed when the name ends in `.gz`.
pub fn save(g: &Graph, path: &Path) -> Result<(), OnnxError> {
    let mut bytes = to_bytes(g);
    if path.extension().is_some_and(|e| e == "gz") {
        use std::io::Write;
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(&bytes).and_then(|_| enc.finish().map(|b| bytes = b)).map_err(|source| OnnxError::Io { path: path.to_path_buf(), source })?;
    }
    crate::util::write_atomic(path, &bytes).map_err(|source| OnnxError::Io { path: path.to_path_buf(), source })
}
