//! [`Net`]: an imported ONNX graph as a trainable libtorch network.
//!
//! Lifecycle: [`Net::new`] resolves every node's execution function (an
//! unsupported op fails here, naming the node), turns the parameter
//! initializers that the IR registry declares (`OpDef::params`: conv/Gemm
//! weights and biases, BN scale and bias) into trainable variables of a
//! [`VarStore`] and BN running statistics into non-trainable ones, both named
//! after the ONNX initializers (see [`Net::var_name`]); other initializers
//! (shape tensors, pads, clip bounds) are plain constants. [`Net::forward_t`]
//! runs the nodes in order; [`Net::export`] writes the current weights back
//! into a copy of the graph.
use super::exec;
use super::masks::MaskState;
use super::TrainError;
use crate::analysis::Analysis;
use crate::ir::ops::{self, NodeCx, OpDef, RunCx};
use crate::ir::{DType, Graph, Tensor as IrTensor, ValueId};
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

/// One initializer held in the VarStore.
#[derive(Clone, Debug)]
pub struct ParamEntry {
    pub value: ValueId,
    /// ONNX initializer name.
    pub onnx_name: String,
    /// Name in the VarStore (dots are not allowed there).
    pub var_name: String,
    pub trainable: bool,
}

pub struct Net {
    pub(super) graph: Graph,
    pub(super) vs: VarStore,
    /// Persistent tensors per value: variables and constants.
    pub(super) base: Vec<Option<Tensor>>,
    pub(super) params: Vec<ParamEntry>,
    /// Each node's op (its kernel runs the node).
    ops: Vec<&'static dyn OpDef>,
    /// For each node, the values whose last use it is.
    frees: Vec<Vec<ValueId>>,
    /// Per node: its activation may run in place ([`super::exec::inplace_nodes`]).
    inplace: Vec<bool>,
    input: ValueId,
    pub(super) masks: MaskState,
    device: Device,
    /// Mixed-precision compute kind of conv/Gemm/MatMul (see [`Net::set_compute`]).
    low: Option<Kind>,
    channels_last: bool,
    /// BatchNormalization momentum override (see [`Net::set_bn_momentum`]).
    bn_momentum: Option<f64>,
}

/// The same NCHW tensor with NHWC strides (PyTorch's channels-last memory format).
pub fn to_channels_last(t: &Tensor) -> Tensor {
    t.permute([0, 2, 3, 1]).contiguous().permute([0, 3, 1, 2])
}

/// `layer1.0.conv1.weight` → `layer1_0_conv1_weight` (unique within the store).
fn sanitise(name: &str, used: &mut std::collections::HashSet<String>) -> String {
    let base: String = name.chars().map(|c| if c == '.' || c == '/' { '_' } else { c }).collect();
    let base = if base.is_empty() { "param".to_string() } else { base };
    let mut cand = base.clone();
    let mut k = 1;
    while used.contains(&cand) {
        cand = format!("{base}__{k}");
        k += 1;
    }
    used.insert(cand.clone());
    cand
}

impl Net {
    /// Builds the network from a normalised graph and its analysis.
    pub fn new(g: &Graph, a: &Analysis, device: Device) -> Result<Net, TrainError> {
        let graph = g.clone();
        let ops: Vec<&'static dyn OpDef> = g
            .nodes
            .iter()
            .map(|node| {
                ops::lookup(node).ok_or_else(|| TrainError::Unsupported {
                    node: node.label(),
                    op: node.op_type.clone(),
                })
            })
            .collect::<Result<_, _>>()?;
        let &input =
            g.inputs.first().ok_or_else(|| TrainError::Graph("the graph has no input".into()))?;
        // Which initializers are trainable (registry-declared parameter slots) or buffers.
        let mut role = vec![0u8; g.values.len()]; // 1 trainable, 2 buffer
        for (node, op) in g.nodes.iter().zip(&ops) {
            for s in op.params(&NodeCx::new(node, &a.facts)) {
                if let Some(Some(v)) = node.inputs.get(s) {
                    role[*v] = 1;
                }
            }
            for s in op.buffers() {
                if let Some(Some(v)) = node.inputs.get(s) {
                    role[*v] = role[*v].max(2);
                }
            }
        }
        let vs = VarStore::new(device);
        let mut base: Vec<Option<Tensor>> = (0..g.values.len()).map(|_| None).collect();
        let mut params = Vec::new();
        let mut used = std::collections::HashSet::new();
        for (i, v) in g.values.iter().enumerate() {
            let Some(t) = &v.init else { continue };
            let ctx = |m: ops::OpError| TrainError::Graph(format!("initializer '{}': {m}", v.name));
            let tt = exec::to_tch(t).map_err(ctx)?.to_device(device);
            if role[i] > 0 && t.dtype.is_float() {
                let var_name = sanitise(&v.name, &mut used);
                let tt = tt.to_kind(Kind::Float);
                let var = vs.root().add(&var_name, tt, role[i] == 1);
                params.push(ParamEntry {
                    value: i,
                    onnx_name: v.name.clone(),
                    var_name,
                    trainable: role[i] == 1,
                });
                base[i] = Some(var);
            } else {
                base[i] = Some(tt);
            }
        }
        // Last use of each computed value, to free activations early.
        let mut last = vec![usize::MAX; g.values.len()];
        for (n, node) in g.nodes.iter().enumerate() {
            for &i in node.inputs.iter().flatten() {
                last[i] = n;
            }
        }
        let mut frees = vec![Vec::new(); g.nodes.len()];
        for (v, &n) in last.iter().enumerate() {
            if n != usize::MAX && base[v].is_none() && !g.outputs.contains(&v) {
                frees[n].push(v);
            }
        }
        let inplace = exec::inplace_nodes(g);
        let masks = MaskState::build(g, a)?;
        Ok(Net {
            graph,
            vs,
            base,
            params,
            ops,
            frees,
            inplace,
            input,
            masks,
            device,
            low: None,
            channels_last: false,
            bn_momentum: None,
        })
    }

    /// In-place activations (default on; see [`super::exec::inplace_nodes`]): off makes
    /// every Relu/Clip allocate its output (for comparisons).
    pub fn set_inplace_activations(&mut self, on: bool) {
        self.inplace =
            if on { exec::inplace_nodes(&self.graph) } else { vec![false; self.graph.nodes.len()] };
    }

    /// Number of activations that run in place.
    pub fn inplace_activations(&self) -> usize {
        self.inplace.iter().filter(|&&b| b).count()
    }

    /// Overrides every BatchNormalization's momentum (ONNX convention: running =
    /// m·running + (1-m)·batch); `Some(0.0)` makes one train-mode forward set the
    /// running statistics to that batch's (adaptive BN); `None` restores the graph's.
    pub fn set_bn_momentum(&mut self, m: Option<f64>) {
        self.bn_momentum = m;
    }

    /// The buffers of every node ([`OpDef::buffers`]: BatchNormalization's running mean
    /// and variance), in graph order (shared with the network: copy them to save,
    /// `copy_` into them to restore).
    pub fn bn_running_stats(&self) -> Vec<Tensor> {
        let mut v = Vec::new();
        for (n, op) in self.graph.nodes.iter().zip(&self.ops) {
            for i in op.buffers() {
                if let Some(Some(id)) = n.inputs.get(i) {
                    if let Some(Some(t)) = self.base.get(*id) {
                        v.push(t.shallow_clone());
                    }
                }
            }
        }
        v
    }

    /// Training arithmetic: `precision` (mixed bf16/fp16 for conv/Gemm/MatMul, fp32 master
    /// weights) and `channels_last` (NHWC strides for rank-4 inputs and conv weights, the
    /// layout of PyTorch's `memory_format=torch.channels_last`; same function, other kernels).
    pub fn set_compute(&mut self, precision: super::recipe::Precision, channels_last: bool) {
        self.low = precision.low_kind();
        if channels_last && !self.channels_last {
            tch::no_grad(|| {
                for p in &self.params {
                    if let Some(t) = self.base[p.value].as_mut() {
                        if t.dim() == 4 {
                            let nhwc = to_channels_last(t);
                            t.set_data(&nhwc);
                        }
                    }
                }
            });
        }
        self.channels_last = channels_last;
    }

    /// The mixed-precision compute kind (`None`: fp32).
    pub fn low_kind(&self) -> Option<Kind> {
        self.low
    }

    /// Whether rank-4 tensors run in channels-last layout.
    pub fn channels_last(&self) -> bool {
        self.channels_last
    }

    pub fn graph(&self) -> &Graph {
        &self.graph
    }
    pub fn var_store(&self) -> &VarStore {
        &self.vs
    }
    pub fn var_store_mut(&mut self) -> &mut VarStore {
        &mut self.vs
    }
    pub fn device(&self) -> Device {
        self.device
    }
    /// Initializers held in the VarStore, in graph order.
    pub fn params(&self) -> &[ParamEntry] {
        &self.params
    }
    /// VarStore name of an ONNX initializer.
    pub fn var_name(&self, onnx_name: &str) -> Option<&str> {
        self.params.iter().find(|p| p.onnx_name == onnx_name).map(|p| p.var_name.as_str())
    }
    /// The tensor of an initializer by ONNX name (shares storage with the VarStore).
    pub fn param(&self, onnx_name: &str) -> Option<Tensor> {
        self.params
            .iter()
            .find(|p| p.onnx_name == onnx_name)
            .and_then(|p| self.base[p.value].as_ref())
            .map(|t| t.shallow_clone())
    }
    /// Trainable tensors with their VarStore names, in graph order.
    pub fn trainable(&self) -> Vec<(String, Tensor)> {
        self.params
            .iter()
            .filter(|p| p.trainable)
            .filter_map(|p| {
                self.base[p.value].as_ref().map(|t| (p.var_name.clone(), t.shallow_clone()))
            })
            .collect()
    }
    /// The graph input value fed by `forward_t`.
    pub fn input_value(&self) -> ValueId {
        self.input
    }

    /// Runs the graph; returns every graph output. `train` selects BN batch statistics.
    pub fn forward_all(&self, x: &Tensor, train: bool) -> Result<Vec<Tensor>, TrainError> {
        Ok(self.forward_capture(x, train, &[])?.0)
    }

    /// Runs the graph; returns every graph output and the values `keep` names (in that
    /// order; `None` where a value was not computed).
    pub fn forward_capture(
        &self,
        x: &Tensor,
        train: bool,
        keep: &[ValueId],
    ) -> Result<(Vec<Tensor>, Vec<Option<Tensor>>), TrainError> {
        let g = &self.graph;
        let mut kept: Vec<Option<Tensor>> = keep.iter().map(|_| None).collect();
        let mut env: Vec<Option<Tensor>> =
            self.base.iter().map(|t| t.as_ref().map(|t| t.shallow_clone())).collect();
        let x = x.to_device(self.device);
        env[self.input] =
            Some(if self.channels_last && x.dim() == 4 { to_channels_last(&x) } else { x });
        let opset = g.meta.opset();
        for (n, node) in g.nodes.iter().enumerate() {
            let masked: Option<Tensor> = self.masks.input_mask(n).and_then(|(slot, m)| {
                node.inputs
                    .get(slot)
                    .copied()
                    .flatten()
                    .and_then(|v| env[v].as_ref())
                    .map(|t| t * m)
            });
            let outs = {
                let mut inputs: Vec<Option<&Tensor>> =
                    node.inputs.iter().map(|i| i.and_then(|i| env[i].as_ref())).collect();
                if let (Some(m), Some((slot, _))) = (&masked, self.masks.input_mask(n)) {
                    inputs[slot] = Some(m);
                }
                let consts =
                    node.inputs.iter().map(|i| i.and_then(|i| g.values[i].init.as_ref())).collect();
                for (s, (i, t)) in node.inputs.iter().zip(&inputs).enumerate() {
                    if i.is_some() && t.is_none() {
                        return Err(TrainError::node(
                            node,
                            format!("input {s} ('{}') was not computed", g.values[i.unwrap()].name),
                        ));
                    }
                }
                let cx = RunCx {
                    node,
                    inputs: Vec::new(),
                    consts,
                    train,
                    opset,
                    bn_momentum: self.bn_momentum,
                    inplace: self.inplace[n],
                };
                exec::run_node(self.ops[n], cx, &inputs, self.low)
                    .map_err(|error| TrainError::Op { node: node.label(), error })?
            };
            for (o, t) in node.outputs.iter().zip(outs) {
                if let Some(o) = o {
                    env[*o] = Some(t);
                }
            }
            for &v in &self.frees[n] {
                let t = env[v].take();
                if let Some(k) = keep.iter().position(|&w| w == v) {
                    kept[k] = t;
                }
            }
        }
        for (k, &v) in keep.iter().enumerate() {
            if kept[k].is_none() {
                kept[k] = env[v].as_ref().map(Tensor::shallow_clone);
            }
        }
        let outs = g
            .outputs
            .iter()
            .map(|&o| {
                env[o].take().ok_or_else(|| {
                    TrainError::Graph(format!("output '{}' was not computed", g.values[o].name))
                })
            })
            .collect::<Result<_, _>>()?;
        Ok((outs, kept))
    }

    /// The first graph output (the logits).
    pub fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor, TrainError> {
        Ok(self.forward_all(x, train)?.swap_remove(0))
    }

    /// A copy of the graph with the current weights and BN statistics in its initializers.
    pub fn export(&self) -> Result<Graph, TrainError> {
        let mut g = self.graph.clone();
        for p in &self.params {
            let t = self.base[p.value].as_ref().expect("params have tensors");
            let t = t.to_device(Device::Cpu).to_kind(Kind::Float).contiguous();
            let v = Vec::<f32>::try_from(&t.flatten(0, -1))
                .map_err(|e| TrainError::Graph(e.to_string()))?;
            let old = g.values[p.value].init.as_ref().expect("initializer");
            let shape = old.shape.clone();
            let mut new = IrTensor::f32(shape, v);
            if old.dtype != DType::F32 {
                new = new.cast(old.dtype).unwrap_or(new);
            }
            g.values[p.value].init = Some(new);
        }
        Ok(g)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::{self, ImportOptions};
    use crate::ir::Attr;

    #[test]
    fn a_kernel_error_names_the_node_and_its_op() {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("graphs/mnist_cnn_bn.onnx");
        let (mut g, a) = analysis::import(&path, &ImportOptions::default()).unwrap();
        let bn = g.nodes.iter().position(|n| n.op_type == "BatchNormalization").unwrap();
        g.nodes[bn].set_attr("epsilon", Attr::Str(b"small".to_vec()));
        let net = Net::new(&g, &a, Device::Cpu).unwrap();
        let x = Tensor::zeros([1, 1, 28, 28], (Kind::Float, Device::Cpu));
        let e = net.forward_t(&x, false).unwrap_err().to_string();
        let want = format!(
            "node {}: attribute 'epsilon' must be a float, found string",
            g.nodes[bn].label()
        );
        assert!(e.contains(&want), "{e}");
    }
}
