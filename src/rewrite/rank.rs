//! Ranking channels and choosing keep-sets.
//!
//! A group channel's score is the norm of its filters in the group's producer
//! weights (paper: the L1 filter norm criterion), summed over producers when
//! several convs feed the group; after a Flatten every index a channel owns
//! counts. BN scales are not included (in BN-kept graphs the score is the
//! conv filter's norm alone). Ties keep the lower index, so keep-sets are
//! deterministic.
use super::plan::KeepSets;
use crate::analysis::{Analysis, Group};
use crate::ir::Graph;

/// Filter-norm criterion.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Default,
    clap::ValueEnum,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Criterion {
    /// Sum of absolute weights of each filter.
    #[default]
    L1,
    /// Euclidean norm of each filter.
    L2,
}

/// Score of every channel of `gr` (higher = more important).
pub fn channel_scores(g: &Graph, gr: &Group, c: Criterion) -> Vec<f64> {
    let mut s = vec![0.0f64; gr.channels];
    for p in &gr.params {
        let node = &g.nodes[p.node];
        let is_weight = node.inputs.get(1).copied().flatten() == Some(p.value);
        if !gr.producers.contains(&p.node) || !is_weight || !node.outputs.contains(&Some(p.follows))
        {
            continue;
        }
        let Some(t) = g.values[p.value].init.as_ref() else { continue };
        let Some(w) = t.to_f32() else { continue };
        let n = t.shape[p.axis];
        let inner: usize = t.shape[p.axis + 1..].iter().product();
        let outer: usize = t.shape[..p.axis].iter().product();
        let mut per = vec![0.0f64; n];
        for o in 0..outer {
            for (i, acc) in per.iter_mut().enumerate() {
                let base = (o * n + i) * inner;
                *acc += w[base..base + inner]
                    .iter()
                    .map(|&x| {
                        if c == Criterion::L1 {
                            (x as f64).abs()
                        } else {
                            (x as f64) * (x as f64)
                        }
                    })
                    .sum::<f64>();
            }
        }
        let Some((_, members)) = gr.members.iter().find(|(v, _)| *v == p.follows) else { continue };
        for (k, idx) in members.iter().enumerate() {
            let sum: f64 = idx.iter().map(|&i| per[i]).sum();
            s[k] += if c == Criterion::L2 { sum.sqrt() } else { sum };
        }
    }
    s
}

/// Channels to keep when removing `floor(ratio × channels)`, at least one kept.
pub fn kept_count(channels: usize, ratio: f64) -> usize {
    let removed = (ratio.clamp(0.0, 1.0) * channels as f64).floor() as usize;
    channels.saturating_sub(removed).max(1)
}

/// [`kept_count`] rounded up to a multiple of `align` (capped at `channels`):
/// runtimes' blocked conv kernels (ONNX Runtime's NCHWc, 8 or 16 channels)
/// run much faster on aligned widths.
pub fn kept_count_aligned(channels: usize, ratio: f64, align: usize) -> usize {
    let n = kept_count(channels, ratio);
    if align <= 1 {
        return n;
    }
    n.div_ceil(align).saturating_mul(align).min(channels)
}

/// The `n` best channels by score (ties: lower index), sorted by index.
pub fn top(scores: &[f64], n: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    idx.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
    let mut keep: Vec<usize> = idx.into_iter().take(n).collect();
    keep.sort_unstable();
    keep
}

/// Keep-sets from a ratio per prunable layer (`ratios[i]` for `a.layers[i]`).
pub fn keep_sets(g: &Graph, a: &Analysis, ratios: &[f64], c: Criterion) -> KeepSets {
    keep_sets_aligned(g, a, ratios, c, 1)
}

/// [`keep_sets`] with kept counts rounded up to multiples of `align`.
pub fn keep_sets_aligned(
    g: &Graph,
    a: &Analysis,
    ratios: &[f64],
    c: Criterion,
    align: usize,
) -> KeepSets {
    let mut out = KeepSets::new();
    for (layer, &r) in a.layers.iter().zip(ratios) {
        let gr = &a.groups[layer.group];
        let n = kept_count_aligned(gr.channels, r, align);
        if n < gr.channels {
            out.insert(gr.id, top(&channel_scores(g, gr, c), n));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kept_counts_floor_and_keep_one() {
        assert_eq!(kept_count(16, 0.5), 8);
        assert_eq!(kept_count(16, 0.3), 12); // floor(4.8) = 4 removed
        assert_eq!(kept_count(3, 0.99), 1);
        assert_eq!(kept_count(1, 0.9), 1);
        assert_eq!(kept_count(10, 0.0), 10);
    }

    #[test]
    fn aligned_counts_round_up() {
        assert_eq!(kept_count_aligned(144, 0.47, 8), 80); // 77 -> 80
        assert_eq!(kept_count_aligned(144, 0.47, 1), 77);
        assert_eq!(kept_count_aligned(20, 0.1, 16), 20); // capped
        assert_eq!(kept_count_aligned(32, 0.5, 16), 16);
    }

    #[test]
    fn top_breaks_ties_by_index() {
        assert_eq!(top(&[1.0, 3.0, 3.0, 0.5, 3.0], 2), vec![1, 2]);
        assert_eq!(top(&[2.0, 1.0, 2.0], 3), vec![0, 1, 2]);
    }
}
