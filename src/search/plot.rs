//! SVG plots of a run (plotters, no font files needed): `rewards.svg` (best
//! and mean episode reward per epoch, like the paper's Fig. 2),
//! `accuracy.svg` (train/test accuracy of the joint phase and of fine-tuning)
//! and `layers.svg` (kept-channel ratio per layer of the best policy).
//! Written atomically (temporary file, then rename). Tick labels carry the
//! decimals the axis needs (no two alike); series are named as the docs name
//! the methods (RLAL, w/o EE, random, uniform).
use super::report::{EpochRow, LayerChoice};
use anyhow::{anyhow, Context};
use plotters::prelude::*;
use std::path::Path;

const W: u32 = 720;
const H: u32 = 400;

pub(crate) type Series = (String, RGBColor, Vec<(f64, f64)>);

fn finish(path: &Path, svg: String) -> anyhow::Result<()> {
    crate::util::write_atomic(path, svg.as_bytes())
        .with_context(|| format!("writing {}", path.display()))
}

/// Tick labels plotters draws at most (its default for each axis).
const Y_LABELS: usize = 10;

/// The fewest decimals (of `scale * v`) that tell the tick values of `lo..hi` with at
/// most `n` ticks apart: no two labels alike, however narrow the range.
pub(crate) fn tick_decimals(lo: f64, hi: f64, n: usize, scale: f64) -> usize {
    use plotters::coord::ranged1d::Ranged;
    let ticks = plotters::coord::types::RangedCoordf64::from(lo..hi).key_points(n);
    (0..8)
        .find(|&d| {
            let mut l: Vec<String> = ticks.iter().map(|v| format!("{:.d$}", scale * v)).collect();
            l.dedup();
            l.len() == ticks.len()
        })
        .unwrap_or(8)
}

pub(crate) fn lines(
    path: &Path,
    title: &str,
    xlabel: &str,
    ylabel: &str,
    series: &[Series],
) -> anyhow::Result<()> {
    let pts = series.iter().flat_map(|s| s.2.iter());
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for &(x, y) in pts {
        x0 = x0.min(x);
        x1 = x1.max(x);
        y0 = y0.min(y);
        y1 = y1.max(y);
    }
    if x0 > x1 {
        return Ok(()); // nothing to draw yet
    }
    if x1 - x0 < 1.0 {
        x1 = x0 + 1.0;
    }
    let pad = ((y1 - y0) * 0.08).max(0.005);
    let (y0, y1) = ((y0 - pad).max(0.0), (y1 + pad).min(1.0).max(y0 + 2.0 * pad));
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (W, H)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| anyhow!("{e}"))?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(52)
            .build_cartesian_2d(x0..x1, y0..y1)
            .map_err(|e| anyhow!("{e}"))?;
        // The x axes count epochs: whole numbers, at most one label per epoch.
        let x_labels = ((x1 - x0).round() as usize + 1).min(12);
        let (xd, yd) =
            (tick_decimals(x0, x1, x_labels, 1.0), tick_decimals(y0, y1, Y_LABELS, 100.0));
        chart
            .configure_mesh()
            .x_desc(xlabel)
            .y_desc(ylabel)
            .x_labels(x_labels)
            .y_labels(Y_LABELS)
            .x_label_formatter(&|v| format!("{v:.xd$}"))
            .y_label_formatter(&|v| format!("{:.yd$}%", 100.0 * v))
            .draw()
            .map_err(|e| anyhow!("{e}"))?;
        for (name, color, data) in series {
            let c = *color;
            chart
                .draw_series(LineSeries::new(data.iter().copied(), c.stroke_width(2)).point_size(2))
                .map_err(|e| anyhow!("{e}"))?
                .label(name.as_str())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], c.stroke_width(2))
                });
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .position(SeriesLabelPosition::LowerRight)
            .draw()
            .map_err(|e| anyhow!("{e}"))?;
        root.present().map_err(|e| anyhow!("{e}"))?;
    }
    finish(path, svg)
}

/// `rewards.svg`: best and mean reward of the episodes of each epoch.
pub fn write_search(dir: &Path, rows: &[EpochRow]) -> anyhow::Result<()> {
    let best: Vec<(f64, f64)> =
        rows.iter().filter_map(|r| r.best_reward.map(|b| (r.epoch as f64, b))).collect();
    let mean: Vec<(f64, f64)> =
        rows.iter().filter_map(|r| r.mean_reward.map(|m| (r.epoch as f64, m))).collect();
    if best.is_empty() {
        return Ok(());
    }
    lines(
        &dir.join("rewards.svg"),
        "Episode rewards (reward-subset accuracy)",
        "epoch",
        "reward",
        &[("best so far".into(), RED, best), ("mean of the epoch".into(), BLUE, mean)],
    )
}

/// `accuracy.svg`: train and test accuracy per epoch; fine-tuning continues the epoch axis.
pub fn write_accuracy(
    dir: &Path,
    rows: &[EpochRow],
    finetune: &[serde_json::Value],
) -> anyhow::Result<()> {
    let n = rows.len() as f64;
    let train: Vec<(f64, f64)> = rows.iter().map(|r| (r.epoch as f64, r.train_acc)).collect();
    let test: Vec<(f64, f64)> =
        rows.iter().filter_map(|r| r.test_acc.map(|a| (r.epoch as f64, a))).collect();
    let f = |key: &str| -> Vec<(f64, f64)> {
        finetune
            .iter()
            .filter_map(|v| {
                let e = v["epoch"].as_f64()?;
                let a = match key {
                    "train" => v["train_acc"].as_f64(),
                    _ => v["test"]["accuracy"].as_f64(),
                }?;
                Some((n + e, a))
            })
            .collect()
    };
    let mut s: Vec<Series> =
        vec![("joint: train".into(), BLUE, train), ("joint: test".into(), RED, test)];
    if !finetune.is_empty() {
        s.push(("pruned fine-tuning: train".into(), CYAN, f("train")));
        s.push(("pruned fine-tuning: test".into(), MAGENTA, f("test")));
    }
    lines(
        &dir.join("accuracy.svg"),
        "Accuracy (joint training, then fine-tuning of the pruned net)",
        "epoch",
        "accuracy",
        &s,
    )
}

/// `layers.svg`: kept-channel ratio per layer of the chosen architecture.
pub fn write_layers(dir: &Path, layers: &[LayerChoice]) -> anyhow::Result<()> {
    if layers.is_empty() {
        return Ok(());
    }
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (W, H)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| anyhow!("{e}"))?;
        let n = layers.len() as u32;
        let mut chart = ChartBuilder::on(&root)
            .caption("Kept channels per layer (best policy)", ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(52)
            // Segments 0..=n-1: one slot per layer (0..n would add an empty slot for n).
            .build_cartesian_2d((0u32..n - 1).into_segmented(), 0f64..1.05)
            .map_err(|e| anyhow!("{e}"))?;
        chart
            .configure_mesh()
            .x_labels(layers.len().min(30))
            .x_desc("layer")
            .y_desc("kept / channels")
            .y_label_formatter(&|v| format!("{:.0}%", 100.0 * v))
            .draw()
            .map_err(|e| anyhow!("{e}"))?;
        chart
            .draw_series(
                Histogram::vertical(&chart)
                    .style(BLUE.mix(0.7).filled())
                    .margin(2)
                    .data(layers.iter().enumerate().map(|(i, l)| (i as u32, l.ratio))),
            )
            .map_err(|e| anyhow!("{e}"))?;
        root.present().map_err(|e| anyhow!("{e}"))?;
    }
    finish(&dir.join("layers.svg"), svg)
}

/// The text of every `<text>` element of an SVG rlal wrote (tick labels, axis
/// descriptions, title, legend), in document order.
pub fn svg_texts(svg: &str) -> Vec<String> {
    svg.split("<text")
        .skip(1)
        .filter_map(|t| t.split_once('>').and_then(|(_, rest)| rest.split_once("</text>")))
        .map(|(text, _)| {
            text.trim()
                .replace("&lt;", "<")
                .replace("&gt;", ">")
                .replace("&quot;", "\"")
                .replace("&amp;", "&")
        })
        .collect()
}

/// The y-axis tick labels of a [`lines`] plot (the texts that end in `%`).
pub fn percent_ticks(svg: &str) -> Vec<String> {
    svg_texts(svg).into_iter().filter(|t| t.ends_with('%')).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plot(ys: &[f64]) -> String {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("p.svg");
        let pts: Vec<(f64, f64)> =
            ys.iter().enumerate().map(|(i, &y)| ((i + 1) as f64, y)).collect();
        let shifted: Vec<(f64, f64)> = pts.iter().map(|&(x, y)| (x, y + 0.001)).collect();
        lines(
            &p,
            "t",
            "epoch",
            "regret",
            &[("RLAL".into(), RED, pts), ("w/o EE".into(), BLUE, shifted)],
        )
        .unwrap();
        std::fs::read_to_string(p).unwrap()
    }

    #[test]
    fn tick_labels_carry_the_precision_the_range_needs() {
        // A narrow range (4.3% to 5.2%) read "5% 5% 4% 4%" with whole percents.
        for ys in [&[0.043, 0.047, 0.052][..], &[0.5, 0.5004, 0.5011], &[0.1, 0.6, 0.9]] {
            let svg = plot(ys);
            let ticks = percent_ticks(&svg);
            assert!(ticks.len() >= 3, "{ys:?}: {ticks:?}");
            let mut uniq = ticks.clone();
            uniq.sort();
            uniq.dedup();
            assert_eq!(uniq.len(), ticks.len(), "{ys:?}: two equal labels in {ticks:?}");
            let texts = svg_texts(&svg);
            assert!(texts.iter().any(|t| t == "RLAL") && texts.iter().any(|t| t == "w/o EE"));
        }
        assert!(percent_ticks(&plot(&[0.1, 0.6, 0.9])).iter().all(|t| !t.contains('.')));
    }
}
