//! rlal: prune convolutional networks given as ONNX with RLAL
//! (joint training and RL-guided channel pruning, CVPR 2024).
//!
//! The modules mirror the pipeline; nothing upstream knows about anything downstream
//! (unit tests aside, which may load ONNX files):
//!
//! 1. [`ir`]: the graph IR, the op registry (shapes, MACs, channel ties), normalisation
//!    passes, BN insertion and folding;
//! 2. [`onnx`]: protobuf I/O into and out of the IR (prost messages, external data,
//!    atomic writes, the exporter's metadata);
//! 3. [`analysis`]: channel groups, prunability, the exact MACs/params cost model;
//! 4. [`data`]: datasets, transforms, deterministic loaders, the held-out reward split;
//! 5. [`train`]: the IR executed in libtorch (tch), masks, group lasso, SGD, checkpoints;
//! 6. [`agent`]: the RLAL agent (budget, state, bounds, SAC, environment model, replay);
//! 7. [`rewrite`]: channel surgery on the graph;
//! 8. [`validate`]: the runtime layer, owner of every engine: one [`validate::Runner`]
//!    over ONNX Runtime, tract and rlal's libtorch executor, the engine choice
//!    ([`validate::Engine`]) with its fallback, top-1 accuracy, latency, ONNX Runtime
//!    profiles, the reward scorer's and the latency table's sessions, and the one
//!    before/after validation of a pruned model ([`validate::compare`]); no other
//!    module names an engine's API;
//! 9. [`search`]: `rlal prune` (Alg. 1, selection, rewards, baselines, reports) and the
//!    agent benchmark, joining the stages above;
//! 10. `cli` (the binary): parses flags, calls the library, maps errors to exit codes.
//!
//! Errors: one `thiserror` enum per stage, whose variants name the file, node or field.
//! An error's message (`Display`) is complete, an inner error's message included, and
//! such an error returns no `source()`: the CLI prints the message and then each
//! `source()` as a `cause:` line, so an error that did both would be read twice. Only
//! `#[error(transparent)]` wrappers (and `anyhow` context) pass their inner error on as
//! `source()`. A variant wrapping another error therefore names its field `error` (not
//! `source`, which thiserror makes the source) and converts through
//! `util::from_inner!` rather than `#[from]`.
//!
//! [`rng`] and [`util`] are leaf helpers every stage may use; [`dist`] (MPI/NCCL
//! processes of a data-parallel job, loaded at run time) is infrastructure below
//! `train`, used by the training step and the search.
pub mod agent;
pub mod analysis;
pub mod data;
pub mod dist;
pub mod ir;
pub mod onnx;
pub mod rewrite;
pub mod rng;
pub mod search;
pub mod train;
pub mod util;
pub mod validate;
