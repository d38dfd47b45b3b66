//! The per-layer latency table behind latency budgets (`budget: {metric:
//! latency, ...}`; beyond the paper, in the spirit of NetAdapt's lookup tables).
//!
//! The model is what would be deployed: BatchNormalization folded. For each
//! uniform keep fraction f in [`FRACTIONS`] every agent layer keeps
//! `max(1, round(f·c))` channels (surgery on the real graph), and ONNX Runtime
//! (CPU EP, the recipe's threads, batch `budget.batch`) times
//! * every weighted op (conv, Gemm, MatMul) alone: a one-node model with that
//!   op's pruned weights and input shape;
//! * the whole pruned model.
//!
//! Each op's curve maps its MACs fraction to its measured time; the rest of
//! the network (whole model minus the ops) maps the model's MACs fraction to
//! the remainder. Where the ops timed alone add up to more than the whole
//! model (per-run overhead), they are scaled down to it, so the estimate of
//! every measured uniform width equals its measurement. A keep vector's estimate is the sum of the curves
//! ([`crate::agent::LatencyModel::eval`]); curves are made non-decreasing so the
//! budget's bounds (Eq. 12–13) stay exact for the estimate. The table is
//! written to the run directory (`latency_table.json`) and reused on
//! `--resume`, so a resumed run sees the same budget.
use crate::agent::{Curve, LatencyModel};
use crate::analysis::Analysis;
use crate::ir::infer::Facts;
use crate::ir::{Dim, Graph, Value};
use crate::rewrite::KeepSets;
use anyhow::{anyhow, Context};
use std::collections::HashMap;

/// Uniform keep fractions measured (1.0 first: the unpruned model).
pub const FRACTIONS: [f64; 5] = [1.0, 0.75, 0.5, 0.35, 0.2];

/// Timing effort per model: warm-up runs, timed runs (median).
#[derive(Clone, Copy, Debug)]
pub struct Effort {
    pub warmup: usize,
    pub runs: usize,
}

impl Default for Effort {
    fn default() -> Self {
        Effort { warmup: 3, runs: 15 }
    }
}

/// A one-node model: node `nid` of `g` with its constant inputs, its data
/// input as the graph input (batch `batch`) and its first output.
fn single_node(
    g: &Graph,
    facts: &Facts,
    nid: usize,
    batch: usize,
) -> anyhow::Result<(Graph, Vec<usize>)> {
    let node = &g.nodes[nid];
    let mut sub = Graph { meta: g.meta.clone(), ..Default::default() };
    let mut map: HashMap<usize, usize> = HashMap::new();
    let mut shape = None;
    for v in node.inputs.iter().flatten() {
        if map.contains_key(v) {
            continue;
        }
        let src = &g.values[*v];
        let id = if src.init.is_some() {
            sub.add_value(src.clone())
        } else {
            if shape.is_some() {
                anyhow::bail!("node {} has more than one computed input", node.label());
            }
            let f = facts[*v]
                .as_ref()
                .ok_or_else(|| anyhow!("node {}: unknown input shape", node.label()))?;
            let mut dims: Vec<usize> = f.shape.iter().map(|d| d.fixed().unwrap_or(batch)).collect();
            if let Some(d) = dims.first_mut() {
                *d = batch;
            }
            let id = sub.add_value(Value {
                name: src.name.clone(),
                dtype: Some(f.dtype),
                shape: Some(dims.iter().map(|&d| Dim::Fixed(d)).collect()),
                ..Default::default()
            });
            sub.inputs.push(id);
            shape = Some(dims);
            id
        };
        map.insert(*v, id);
    }
    let shape = shape.ok_or_else(|| anyhow!("node {} has no computed input", node.label()))?;
    let mut n = node.clone();
    n.inputs = node.inputs.iter().map(|i| i.map(|v| map[&v])).collect();
    let out = node
        .outputs
        .first()
        .copied()
        .flatten()
        .ok_or_else(|| anyhow!("node {} has no output", node.label()))?;
    let oid = sub.add_value(Value {
        name: g.values[out].name.clone(),
        dtype: g.values[out].dtype,
        ..Default::default()
    });
    n.outputs = vec![Some(oid)];
    sub.nodes.push(n);
    sub.outputs.push(oid);
    Ok((sub, shape))
}

fn time_ms(g: &Graph, shape: &[usize], threads: usize, e: Effort) -> anyhow::Result<f64> {
    let bytes = crate::onnx::to_bytes(g);
    Ok(crate::validate::latency::ort_median_ms(&bytes, shape, threads, e.warmup, e.runs)?)
}

/// Measures the table for the (BN-inserted, training) graph `g` analysed as
/// `an`, its agent layers pruned uniformly. `progress`: one line per fraction
/// on stderr.
pub fn measure(
    g: &Graph,
    an: &Analysis,
    input_shape: Option<&[usize]>,
    batch: usize,
    threads: usize,
    effort: Effort,
    progress: bool,
) -> anyhow::Result<LatencyModel> {
    let batch = batch.max(1);
    let term_names: Vec<String> =
        an.cost.terms.iter().map(|t| g.nodes[t.node].name.clone()).collect();
    let mut term_pts: Vec<Vec<(f64, f64)>> = vec![Vec::new(); term_names.len()];
    let mut rest_pts = Vec::new();
    let mut measured = Vec::new();
    for &f in &FRACTIONS {
        let mut keep = KeepSets::new();
        let mut kv = an.cost.full.clone();
        for l in &an.layers {
            let n = ((f * l.channels as f64).round() as usize).clamp(1, l.channels);
            kv[l.group] = n;
            if n < l.channels {
                keep.insert(l.group, (0..n).collect());
            }
        }
        let mut pg = if keep.is_empty() {
            g.clone()
        } else {
            crate::rewrite::surgery::prune(g, an, &keep, input_shape)
                .with_context(|| format!("latency table: pruning every layer to {f}"))?
                .graph
        };
        crate::ir::bn::fold_bn(&mut pg);
        let facts = crate::ir::infer::infer(&pg, input_shape)
            .map_err(|e| anyhow!("latency table: shape inference: {e}"))?;
        let by_name: HashMap<&str, usize> =
            pg.nodes.iter().enumerate().map(|(i, n)| (n.name.as_str(), i)).collect();
        let inp = *pg.inputs.first().ok_or_else(|| anyhow!("the model has no input"))?;
        let mut ishape: Vec<usize> = facts[inp]
            .as_ref()
            .ok_or_else(|| anyhow!("unknown input shape"))?
            .shape
            .iter()
            .map(|d| d.fixed().unwrap_or(batch))
            .collect();
        ishape[0] = batch;
        let whole = time_ms(&pg, &ishape, threads, effort)
            .context("latency table: timing the whole model")?;
        let mut ops_ms = 0.0;
        let mut this: Vec<(usize, f64, f64)> = Vec::new();
        let mut cache: HashMap<String, f64> = HashMap::new();
        for (i, (t, name)) in an.cost.terms.iter().zip(&term_names).enumerate() {
            let nid = *by_name
                .get(name.as_str())
                .ok_or_else(|| anyhow!("latency table: node '{name}' is missing after surgery"))?;
            let (sub, shape) = single_node(&pg, &facts, nid, batch)?;
            // Ops with the same type, attributes, input and weight shapes time alike: measure once.
            let n = &sub.nodes[0];
            let key = format!(
                "{}|{:?}|{:?}|{:?}",
                n.op_type,
                n.attrs,
                shape,
                n.inputs
                    .iter()
                    .flatten()
                    .map(|&v| sub.values[v].init.as_ref().map(|x| x.shape.clone()))
                    .collect::<Vec<_>>()
            );
            let ms = match cache.get(&key) {
                Some(&ms) => ms,
                None => {
                    let ms = time_ms(&sub, &shape, threads, effort)
                        .with_context(|| format!("latency table: timing node {}", n.label()))?;
                    cache.insert(key, ms);
                    ms
                }
            };
            ops_ms += ms;
            let full = t.weight.numel(&an.cost.full).max(1) as f64;
            this.push((i, t.weight.numel(&kv) as f64 / full, ms));
        }
        // Ops timed alone can add up to more than the whole model (per-run overhead, no
        // overlap): scale them so that the estimate at this width equals the measurement.
        let scale = if ops_ms > whole && ops_ms > 0.0 { whole / ops_ms } else { 1.0 };
        for (i, x, ms) in this.drain(..) {
            term_pts[i].push((x, ms * scale * 1e6));
        }
        let x = an.cost.macs(&kv) as f64 / an.cost.full_macs().max(1) as f64;
        rest_pts.push((x, (whole - ops_ms * scale).max(0.0) * 1e6));
        measured.push((f, whole * 1e6));
        if progress {
            eprintln!("latency table: keep {:>4.0}% of every layer: {:.3} ms per batch of {batch} ({:.3} ms in {} weighted ops, {} distinct)", 100.0 * f, whole, ops_ms, term_names.len(), cache.len());
        }
    }
    Ok(LatencyModel {
        batch,
        threads,
        nodes: term_names,
        terms: term_pts.into_iter().map(Curve::fit).collect(),
        rest: Curve::fit(rest_pts),
        measured,
    })
}

/// Reads a table written by [`save`].
pub fn load(path: &std::path::Path) -> anyhow::Result<LatencyModel> {
    let b = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_slice(&b).with_context(|| format!("{}: not a latency table", path.display()))
}

/// Writes the table atomically.
pub fn save(t: &LatencyModel, path: &std::path::Path) -> anyhow::Result<()> {
    crate::util::write_atomic(path, &serde_json::to_vec_pretty(t)?)
        .with_context(|| format!("writing {}", path.display()))
}

/// Median ONNX Runtime latency (ms) of a model at `batch`.
pub fn model_ms(
    g: &Graph,
    input: [usize; 3],
    batch: usize,
    threads: usize,
    effort: Effort,
) -> anyhow::Result<f64> {
    time_ms(g, &[batch.max(1), input[0], input[1], input[2]], threads, effort)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::{Budget, Metric};
    use std::path::Path;

    #[test]
    fn single_op_models_run_and_the_table_bounds_episodes() {
        let (g, an) = crate::analysis::import(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("graphs/mnist_cnn.onnx"),
            &Default::default(),
        )
        .unwrap();
        let t = measure(&g, &an, None, 2, 1, Effort { warmup: 1, runs: 3 }, false).unwrap();
        assert_eq!(t.terms.len(), an.cost.terms.len());
        assert_eq!(t.measured.len(), FRACTIONS.len());
        for c in t.terms.iter().chain([&t.rest]) {
            assert!(c.points.windows(2).all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1), "{c:?}");
        }
        // Every op was timed: the full model's estimate is positive and the ops' curves end at fraction 1.
        assert!(t
            .terms
            .iter()
            .all(|c| c.points.last().is_some_and(|p| (p.0 - 1.0).abs() < 1e-9 && p.1 > 0.0)));
        let b =
            Budget::with_latency(an.cost.clone(), an.layers.clone(), t.clone(), 0.8, 0.9).unwrap();
        assert_eq!(b.metric, Metric::Latency);
        assert_eq!(b.full(), t.eval(&an.cost, &an.cost.full));
        let mut rng = crate::rng::Rng::new(1);
        for _ in 0..20 {
            let mut kept = Vec::new();
            for _ in 0..b.layers.len() {
                kept.push(b.apply(&kept, rng.uniform_f32()));
            }
            assert!(b.fits(&kept), "{} > {}", b.measure(&kept), b.target);
        }
        // Round trip through the run directory's file.
        let dir = tempfile::tempdir().unwrap();
        save(&t, &dir.path().join("t.json")).unwrap();
        assert_eq!(load(&dir.path().join("t.json")).unwrap(), t);
        assert!(load(&dir.path().join("missing.json"))
            .unwrap_err()
            .to_string()
            .contains("missing.json"));
    }
}
