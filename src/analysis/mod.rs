//! Analysis of an imported graph: shapes (see [`crate::ir::infer`]), MACs and
//! parameters ([`cost`]), channel groups and prunability ([`channels`]), and the
//! per-layer features the pruning agent observes ([`Layer`]).
pub mod channels;
pub mod cost;
pub mod report;

use crate::ir::infer::Facts;
use crate::ir::inputs::{self, InputLayout};
use crate::ir::ops::{self, ChannelSpec, NodeCx, Window};
use crate::ir::passes::PassReport;
use crate::ir::{Graph, IrError, NodeId};
pub use channels::Group;
pub use cost::CostModel;
use std::collections::BTreeMap;
use std::path::Path;

/// Errors of the analysis layer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AnalysisError {
    #[error(transparent)]
    Onnx(#[from] crate::onnx::OnnxError),
    /// The message includes the IR error's, which is therefore no `source` (the CLI
    /// would print it twice, as a cause).
    #[error("{path}: {error}")]
    Ir { path: String, error: IrError },
}

/// A prunable group seen as one "layer" by the agent (paper Eq. 1).
#[derive(Clone, Debug, serde::Serialize)]
pub struct Layer {
    /// Index among prunable layers, in graph order.
    pub index: usize,
    /// Group id.
    pub group: usize,
    /// Name of the first producer node (the identifier across rlal's files).
    pub name: String,
    /// Its PyTorch module path when the exporter recorded one (dynamo exports'
    /// `pkg.torch.onnx.name_scopes`), e.g. `layer1.0.conv1`: what reports show.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub module: Option<String>,
    /// Input channels of the first producer (C_l).
    pub c_in: usize,
    /// Channels of the group (C_{l+1}, the prunable width).
    pub channels: usize,
    /// Largest stride among the convs (Conv, ConvTranspose) producing or passing the channels.
    pub stride: usize,
    /// Largest kernel size among the group's convs (Conv, ConvTranspose), readers included.
    pub kernel: usize,
    /// MACs that scale with this group's width (a conv between two prunable groups
    /// counts for both, so these overlap between layers).
    pub macs: u64,
    /// This group's part of the prunable MACs, every MAC counted once
    /// ([`CostModel::macs_shares`]: a conv between two groups gives each half): the
    /// layers' shares add up to the MACs that pruning can remove.
    pub macs_share: u64,
    pub producers: Vec<String>,
    pub consumers: Vec<String>,
}

impl Layer {
    /// What reports call the layer: its module path when known, else its node name.
    pub fn label(&self) -> &str {
        self.module.as_deref().unwrap_or(&self.name)
    }
}

/// Everything known about an imported model.
#[derive(Clone, Debug)]
pub struct Analysis {
    pub facts: Facts,
    pub specs: Vec<ChannelSpec>,
    pub groups: Vec<Group>,
    pub cost: CostModel,
    pub layers: Vec<Layer>,
    pub passes: Vec<PassReport>,
}

impl Analysis {
    /// Analyses a normalised graph.
    pub fn new(g: &Graph, facts: Facts, passes: Vec<PassReport>) -> Analysis {
        let specs = channels::specs(g, &facts);
        let groups = channels::groups(g, &facts, &specs);
        let cost = CostModel::build(g, &facts, &groups);
        let shares = cost.macs_shares();
        let mut layers = Vec::new();
        for gr in groups.iter().filter(|gr| gr.prunable) {
            // Kernel and stride: the largest among the convs that produce or pass the
            // channels (the layer's own); the kernel falls back to the convs reading them
            // when none has one (a Gemm producer). ConvTranspose weights are
            // C x M/group x k..., its `strides` its upsampling factor: read the same way.
            let conv = |n: &NodeId| window(g, &facts, *n);
            let own: Vec<Window> = gr.producers.iter().chain(&gr.passes).filter_map(conv).collect();
            let kernel = own.iter().filter_map(|w| w.kernel).max();
            let readers = gr.consumers.iter().filter_map(conv);
            let kernel = kernel.or_else(|| readers.filter_map(|w| w.kernel).max()).unwrap_or(1);
            let stride = own.iter().map(|w| w.stride).max().unwrap_or(1);
            let p0 = gr.producers[0];
            let c_in = g.nodes[p0].inputs[0]
                .and_then(|v| facts[v].as_ref())
                .and_then(|f| f.dim(1))
                .unwrap_or(0);
            layers.push(Layer {
                index: layers.len(),
                group: gr.id,
                name: g.nodes[p0].name.clone(),
                module: crate::onnx::module_path(&g.nodes[p0]),
                c_in,
                channels: gr.channels,
                stride,
                kernel,
                macs: cost.group_macs(gr.id),
                macs_share: shares[gr.id],
                producers: gr.producers.iter().map(|&n| g.nodes[n].name.clone()).collect(),
                consumers: gr.consumers.iter().map(|&n| g.nodes[n].name.clone()).collect(),
            });
        }
        Analysis { facts, specs, groups, cost, layers, passes }
    }
}

/// The window of node `n` when it is a conv ([`ops::OpDef::window`]).
fn window(g: &Graph, facts: &Facts, n: NodeId) -> Option<Window> {
    let node = &g.nodes[n];
    ops::lookup(node)?.window(&NodeCx::new(node, facts))
}

/// Options for [`import`].
#[derive(Clone, Debug, Default)]
pub struct ImportOptions {
    /// Fixed non-batch dims of the image input overriding the file's, in the model's
    /// order (C, H, W; or H, W, C for a channels-last model).
    pub input_shape: Option<Vec<usize>>,
    /// The image input's layout: detected (`auto`) or fixed.
    pub input_layout: InputLayout,
    /// Graph inputs other than the images, bound to constant values (name → values).
    pub bind: BTreeMap<String, Vec<f64>>,
}

/// Loads, normalises and analyses an ONNX file.
pub fn import(path: &Path, opts: &ImportOptions) -> Result<(Graph, Analysis), AnalysisError> {
    analyse(crate::onnx::load(path)?, path, opts)
}

/// [`import`] of model bytes already in memory (`path` names them in errors and
/// locates external data): the same decoding, normalisation and analysis.
pub fn import_bytes(
    bytes: &[u8],
    path: &Path,
    opts: &ImportOptions,
) -> Result<(Graph, Analysis), AnalysisError> {
    analyse(crate::onnx::load_bytes(bytes, path)?, path, opts)
}

fn analyse(
    mut g: Graph,
    path: &Path,
    opts: &ImportOptions,
) -> Result<(Graph, Analysis), AnalysisError> {
    let ir = |error| AnalysisError::Ir { path: path.display().to_string(), error };
    inputs::bind(&mut g, &opts.bind).map_err(ir)?;
    inputs::check_unbound(&g).map_err(ir)?;
    let (passes, facts) =
        crate::ir::passes::normalize(&mut g, opts.input_shape.as_deref()).map_err(ir)?;
    g.meta.input_layout = opts.input_layout.resolve(&g);
    let a = Analysis::new(&g, facts, passes);
    Ok((g, a))
}

/// The paper's search space (appendix A.1: the hidden channels of each block, block
/// inputs and outputs kept). In a network with depthwise convolutions (inverted
/// residuals, MobileNet) these are the prunable groups whose channels pass through a
/// depthwise conv (expansion conv -> depthwise conv -> projection conv); in one without
/// (ResNets, plain CNNs), every prunable group (residual Adds already fix the block
/// outputs).
pub fn block_layers(g: &Graph, an: &Analysis) -> Vec<Layer> {
    let depthwise = |n: &NodeId| window(g, &an.facts, *n).is_some_and(|w| w.group > 1);
    let inner: Vec<&Layer> =
        an.layers.iter().filter(|l| an.groups[l.group].passes.iter().any(depthwise)).collect();
    if inner.is_empty() {
        return an.layers.clone();
    }
    inner.into_iter().cloned().collect()
}

#[cfg(test)]
mod block_tests {
    use super::*;

    #[test]
    fn block_layers_are_the_papers_search_space() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("graphs");
        let (g, a) = import(&root.join("mobilenetv2_cifar.onnx"), &Default::default()).unwrap();
        let b = block_layers(&g, &a);
        // 20 prunable groups; the paper's 17 are the ones through a depthwise conv (block
        // hidden channels): the two untied block outputs and the 1280-channel head go.
        assert_eq!((a.layers.len(), b.len()), (20, 17));
        assert!(b.iter().all(|l| l.channels != 1280 && l.channels != 320 && l.channels != 16));
        let (g, a) = import(&root.join("resnet56_cifar.onnx"), &Default::default()).unwrap();
        assert_eq!(block_layers(&g, &a).len(), a.layers.len());
    }
}
