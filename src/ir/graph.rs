//! The graph IR: values, nodes, initializers, inputs/outputs, metadata.
//!
//! Lifecycle: `onnx::load` translates a `ModelProto` into a [`Graph`] (no
//! interpretation), the normalisation passes in [`crate::ir::passes`] rewrite
//! it, the analysis stage infers shapes / costs / channel groups, later stages
//! execute, prune and write it back with `onnx::save`. The IR owns no
//! framework types: tensors are plain vectors, ONNX-only extras that rlal never
//! interprets travel as opaque bytes.
use super::attr::{Attr, AttrError};
use super::tensor::{DType, Tensor};
use super::IrError;
use std::collections::HashMap;

pub type ValueId = usize;
pub type NodeId = usize;

/// A tensor dimension: a fixed size or a symbol (the batch dimension).
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub enum Dim {
    Fixed(usize),
    Sym(String),
}

impl Dim {
    pub fn fixed(&self) -> Option<usize> {
        match self {
            Dim::Fixed(n) => Some(*n),
            Dim::Sym(_) => None,
        }
    }
}

impl std::fmt::Display for Dim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Dim::Fixed(n) => write!(f, "{n}"),
            Dim::Sym(s) => f.write_str(s),
        }
    }
}

/// Render a shape like `[N,3,32,32]`.
pub fn fmt_shape(s: &[Dim]) -> String {
    let parts: Vec<String> = s.iter().map(|d| d.to_string()).collect();
    format!("[{}]", parts.join(","))
}

/// A value (edge) of the graph.
#[derive(Clone, Debug, Default)]
pub struct Value {
    pub name: String,
    /// Declared element type (from the ONNX value info), if any.
    pub dtype: Option<DType>,
    /// Declared shape (from the ONNX value info), if any.
    pub shape: Option<Vec<Dim>>,
    /// Constant data when the value is an initializer.
    pub init: Option<Tensor>,
    /// The value carried a `value_info` entry in the source model.
    pub has_value_info: bool,
    /// Doc string of its value info, kept for the round trip.
    pub doc: String,
}

/// An operator application.
#[derive(Clone, Debug, Default)]
pub struct Node {
    pub name: String,
    pub op_type: String,
    /// Operator domain; "" is the default ONNX domain.
    pub domain: String,
    /// Inputs; `None` for an omitted optional input (empty name in ONNX).
    pub inputs: Vec<Option<ValueId>>,
    /// Outputs; `None` for an omitted optional output.
    pub outputs: Vec<Option<ValueId>>,
    pub attrs: Vec<(String, Attr)>,
    pub doc: String,
    /// Fields of the NodeProto rlal does not model (overload, metadata,
    /// device configurations), encoded, so they round-trip.
    pub extra: Vec<u8>,
}

impl Node {
    pub fn attr(&self, name: &str) -> Option<&Attr> {
        self.attrs.iter().find(|(n, _)| n == name).map(|(_, a)| a)
    }
    pub fn set_attr(&mut self, name: &str, a: Attr) {
        match self.attrs.iter_mut().find(|(n, _)| n == name) {
            Some(slot) => slot.1 = a,
            None => self.attrs.push((name.to_string(), a)),
        }
    }
    pub fn attr_int(&self, name: &str, default: i64) -> Result<i64, AttrError> {
        match self.attr(name) {
            None => Ok(default),
            Some(Attr::Int(i)) => Ok(*i),
            Some(a) => Err(AttrError::new(name, "an int", a)),
        }
    }
    pub fn attr_float(&self, name: &str, default: f32) -> Result<f32, AttrError> {
        match self.attr(name) {
            None => Ok(default),
            Some(Attr::Float(f)) => Ok(*f),
            Some(Attr::Int(i)) => Ok(*i as f32),
            Some(a) => Err(AttrError::new(name, "a float", a)),
        }
    }
    pub fn attr_ints(&self, name: &str) -> Result<Option<Vec<i64>>, AttrError> {
        match self.attr(name) {
            None => Ok(None),
            Some(Attr::Ints(v)) => Ok(Some(v.clone())),
            Some(Attr::Int(i)) => Ok(Some(vec![*i])),
            Some(a) => Err(AttrError::new(name, "ints", a)),
        }
    }
    pub fn attr_str(&self, name: &str, default: &str) -> Result<String, AttrError> {
        match self.attr(name) {
            None => Ok(default.to_string()),
            Some(Attr::Str(s)) => Ok(String::from_utf8_lossy(s).into_owned()),
            Some(a) => Err(AttrError::new(name, "a string", a)),
        }
    }
    /// `name (OpType)`, the way errors and reports refer to a node.
    pub fn label(&self) -> String {
        format!("'{}' ({})", self.name, self.op_type)
    }
}

/// Model-level facts preserved across a round trip.
#[derive(Clone, Debug, Default)]
pub struct ModelMeta {
    pub ir_version: i64,
    /// Operator set per domain ("" = ai.onnx).
    pub opsets: Vec<(String, i64)>,
    pub graph_name: String,
    pub graph_doc: String,
    /// The encoded `ModelProto` minus the graph's nodes/values and the model's
    /// `metadata_props` (functions, producer, training info, ...), re-used verbatim on save.
    pub passthrough: Vec<u8>,
    /// The model's `metadata_props` (key, value) in file order; rlal's own keys
    /// (`rlal.*`, e.g. the input preprocessing: `data::Preprocess`) live here too.
    pub props: Vec<(String, String)>,
    /// Layout of the image input (the first graph input), set at import
    /// ([`crate::ir::inputs`]); what data is fed in, and what a pruned model keeps.
    pub input_layout: super::Layout,
}

impl ModelMeta {
    /// Opset version of the default domain.
    pub fn opset(&self) -> i64 {
        self.opsets
            .iter()
            .find(|(d, _)| d.is_empty() || d == "ai.onnx")
            .map(|(_, v)| *v)
            .unwrap_or(1)
    }

    /// The value of metadata key `key`.
    pub fn prop(&self, key: &str) -> Option<&str> {
        self.props.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    /// Sets the metadata keys of `props`, replacing the values already under them.
    pub fn set_props(&mut self, props: impl IntoIterator<Item = (String, String)>) {
        for (k, v) in props {
            match self.props.iter_mut().find(|(key, _)| *key == k) {
                Some(e) => e.1 = v,
                None => self.props.push((k, v)),
            }
        }
    }
}

/// A computation graph in topological order.
#[derive(Clone, Debug, Default)]
pub struct Graph {
    pub values: Vec<Value>,
    pub nodes: Vec<Node>,
    /// Graph inputs that are not initializers, in declaration order.
    pub inputs: Vec<ValueId>,
    pub outputs: Vec<ValueId>,
    pub meta: ModelMeta,
}

impl Graph {
    pub fn value(&self, id: ValueId) -> &Value {
        &self.values[id]
    }
    pub fn value_id(&self, name: &str) -> Option<ValueId> {
        self.values.iter().position(|v| v.name == name)
    }
    pub fn add_value(&mut self, v: Value) -> ValueId {
        self.values.push(v);
        self.values.len() - 1
    }
    /// Constant data of a value, if it is an initializer.
    pub fn init(&self, id: ValueId) -> Option<&Tensor> {
        self.values[id].init.as_ref()
    }
    /// Node producing each value (`None` for inputs and initializers).
    pub fn producers(&self) -> Vec<Option<NodeId>> {
        let mut p = vec![None; self.values.len()];
        for (n, node) in self.nodes.iter().enumerate() {
            for o in node.outputs.iter().flatten() {
                p[*o] = Some(n);
            }
        }
        p
    }
    /// Nodes consuming each value, with the input slot.
    pub fn consumers(&self) -> Vec<Vec<(NodeId, usize)>> {
        let mut c = vec![Vec::new(); self.values.len()];
        for (n, node) in self.nodes.iter().enumerate() {
            for (slot, i) in node.inputs.iter().enumerate() {
                if let Some(i) = i {
                    c[*i].push((n, slot));
                }
            }
        }
        c
    }
    /// Names every node without one (`<op>_<index>`), unique in the graph.
    pub fn name_anonymous_nodes(&mut self) {
        let mut used: std::collections::HashSet<String> =
            self.nodes.iter().map(|n| n.name.clone()).collect();
        for i in 0..self.nodes.len() {
            if self.nodes[i].name.is_empty() {
                let mut k = i;
                let name = loop {
                    let cand = format!("{}_{}", self.nodes[i].op_type, k);
                    if !used.contains(&cand) {
                        break cand;
                    }
                    k += 1;
                };
                used.insert(name.clone());
                self.nodes[i].name = name;
            }
        }
    }

    /// Sorts nodes topologically (stable: keeps the file order where it is
    /// already valid). Errors on a cycle or a value produced twice.
    pub fn toposort(&mut self) -> Result<(), IrError> {
        let producers = {
            let mut p: Vec<Option<NodeId>> = vec![None; self.values.len()];
            for (n, node) in self.nodes.iter().enumerate() {
                for &o in node.outputs.iter().flatten() {
                    if let Some(prev) = p[o] {
                        return Err(IrError::Structure(format!(
                            "value '{}' is produced by two nodes, {} and {}",
                            self.values[o].name,
                            self.nodes[prev].label(),
                            node.label()
                        )));
                    }
                    p[o] = Some(n);
                }
            }
            p
        };
        let n = self.nodes.len();
        let mut indeg = vec![0usize; n];
        let mut succ: Vec<Vec<NodeId>> = vec![Vec::new(); n];
        for (i, node) in self.nodes.iter().enumerate() {
            for inp in node.inputs.iter().flatten() {
                if let Some(p) = producers[*inp] {
                    indeg[i] += 1;
                    succ[p].push(i);
                }
            }
        }
        // Kahn with a min-heap on the original index: stable order.
        let mut ready: std::collections::BinaryHeap<std::cmp::Reverse<usize>> =
            (0..n).filter(|&i| indeg[i] == 0).map(std::cmp::Reverse).collect();
        let mut order = Vec::with_capacity(n);
        while let Some(std::cmp::Reverse(i)) = ready.pop() {
            order.push(i);
            for &s in &succ[i] {
                indeg[s] -= 1;
                if indeg[s] == 0 {
                    ready.push(std::cmp::Reverse(s));
                }
            }
        }
        if order.len() != n {
            let stuck: Vec<String> =
                (0..n).filter(|&i| indeg[i] > 0).take(5).map(|i| self.nodes[i].label()).collect();
            return Err(IrError::Structure(format!(
                "the graph has a cycle through {} node(s), e.g. {}",
                n - order.len(),
                stuck.join(", ")
            )));
        }
        if order.iter().enumerate().any(|(k, &i)| k != i) {
            let mut old: Vec<Option<Node>> =
                std::mem::take(&mut self.nodes).into_iter().map(Some).collect();
            self.nodes =
                order.into_iter().map(|i| old[i].take().expect("each node once")).collect();
        }
        Ok(())
    }

    /// Drops nodes whose outputs reach no graph output, and values nobody uses
    /// (renumbering value ids). Graph inputs are kept.
    pub fn cleanup(&mut self) {
        let producers = self.producers();
        let mut live_v = vec![false; self.values.len()];
        let mut live_n = vec![false; self.nodes.len()];
        let mut stack: Vec<ValueId> = self.outputs.clone();
        while let Some(v) = stack.pop() {
            if live_v[v] {
                continue;
            }
            live_v[v] = true;
            if let Some(p) = producers[v] {
                if !live_n[p] {
                    live_n[p] = true;
                    stack.extend(self.nodes[p].inputs.iter().flatten().copied());
                    // All outputs of a live node stay (optional outputs may be unnamed).
                    for o in self.nodes[p].outputs.iter().flatten() {
                        live_v[*o] = true;
                    }
                }
            }
        }
        for &i in &self.inputs {
            live_v[i] = true;
        }
        let mut k = 0;
        self.nodes.retain(|_| {
            k += 1;
            live_n[k - 1]
        });
        // Initializers listed as inputs but unused are dropped too.
        let mut remap = vec![usize::MAX; self.values.len()];
        let mut values = Vec::new();
        for (i, v) in std::mem::take(&mut self.values).into_iter().enumerate() {
            if live_v[i] {
                remap[i] = values.len();
                values.push(v);
            }
        }
        self.values = values;
        for node in &mut self.nodes {
            for i in node.inputs.iter_mut().flatten() {
                *i = remap[*i];
            }
            for o in node.outputs.iter_mut().flatten() {
                *o = remap[*o];
            }
        }
        self.inputs = self.inputs.iter().map(|&i| remap[i]).collect();
        self.outputs = self.outputs.iter().map(|&i| remap[i]).collect();
    }

    /// Replaces every use of `from` (node inputs and graph outputs) by `to`.
    pub fn replace_uses(&mut self, from: ValueId, to: ValueId) {
        for node in &mut self.nodes {
            for i in node.inputs.iter_mut().flatten() {
                if *i == from {
                    *i = to;
                }
            }
        }
        for o in &mut self.outputs {
            if *o == from {
                *o = to;
            }
        }
    }

    /// A fresh value name derived from `base`, unused in the graph.
    pub fn fresh_name(&self, base: &str) -> String {
        let names: std::collections::HashSet<&str> =
            self.values.iter().map(|v| v.name.as_str()).collect();
        if !names.contains(base) {
            return base.to_string();
        }
        (1..)
            .map(|k| format!("{base}.{k}"))
            .find(|c| !names.contains(c.as_str()))
            .expect("infinite")
    }

    /// Map from value name to id.
    pub fn name_index(&self) -> HashMap<&str, ValueId> {
        self.values.iter().enumerate().map(|(i, v)| (v.name.as_str(), i)).collect()
    }
}
