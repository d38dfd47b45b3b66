//! rlal: prune convolutional networks given as ONNX with RLAL
//! (joint training and RL-guided channel pruning, CVPR 2024).
//!
//! The modules mirror the pipeline; nothing upstream knows about anything downstream:
//! [`onnx`] (protobuf I/O) → [`ir`] (graph, op registry, normalisation passes)
//! → [`analysis`] (shapes, MACs/params, channel groups, pruning cost model)
//! → [`data`] (datasets and loaders) → `cli`.
pub mod agent;
pub mod analysis;
pub mod data;
pub mod ir;
pub mod onnx;
pub mod rewrite;
pub mod rng;
pub mod search;
pub mod train;
pub mod util;
pub mod validate;
