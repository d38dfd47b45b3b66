//! The import report: a readable table and a JSON document for other tools.
use super::Analysis;
use crate::ir::{fmt_shape, ops, Graph};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write;

#[derive(Serialize)]
pub struct Totals {
    /// Multiply-accumulates per sample (paper convention).
    pub macs: u64,
    /// 2 × MACs.
    pub flops: u64,
    /// Trainable parameters: conv/Gemm/MatMul weights and biases, BN scale and bias.
    pub params: u64,
    /// Elements of all initializers (incl. BN statistics and constants).
    pub initializer_elements: u64,
    pub nodes: usize,
    pub prunable_groups: usize,
    /// MACs that pruning some prunable group removes, each counted once: the sum of
    /// the layers' `macs_share` (a conv between two prunable groups counts once, not
    /// for both as in the layers' `macs`).
    pub prunable_macs: u64,
}

#[derive(Serialize)]
pub struct GroupJson {
    pub id: usize,
    pub channels: usize,
    pub prunable: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub producers: Vec<String>,
    pub consumers: Vec<String>,
    pub values: Vec<String>,
    pub macs: u64,
}

#[derive(Serialize)]
pub struct IoJson {
    pub name: String,
    pub shape: String,
}

#[derive(Serialize)]
pub struct ReportJson<'a> {
    pub model: String,
    pub opset: i64,
    pub inputs: Vec<IoJson>,
    /// Layout of the image input (the first one): `nchw` or `nhwc`.
    pub input_layout: crate::ir::Layout,
    pub outputs: Vec<IoJson>,
    pub totals: Totals,
    pub layers: &'a [super::Layer],
    pub groups: Vec<GroupJson>,
    pub ops: BTreeMap<String, usize>,
    pub unsupported: Vec<String>,
    pub passes: &'a [crate::ir::passes::PassReport],
}

pub fn build<'a>(model: &str, g: &Graph, a: &'a Analysis) -> ReportJson<'a> {
    let names = |v: &[usize]| v.iter().map(|&n| g.nodes[n].name.clone()).collect::<Vec<_>>();
    let io = |ids: &[usize]| {
        ids.iter()
            .map(|&i| IoJson {
                name: g.values[i].name.clone(),
                shape: a.facts[i]
                    .as_ref()
                    .map(|f| fmt_shape(&f.shape))
                    .unwrap_or_else(|| "?".into()),
            })
            .collect()
    };
    let mut ops_count = BTreeMap::new();
    for n in &g.nodes {
        *ops_count.entry(n.op_type.clone()).or_insert(0) += 1;
    }
    let unsupported =
        g.nodes.iter().filter(|n| ops::lookup(n).is_none()).map(|n| n.label()).collect();
    let macs = a.cost.full_macs();
    ReportJson {
        model: model.to_string(),
        opset: g.meta.opset(),
        inputs: io(&g.inputs),
        input_layout: g.meta.input_layout,
        outputs: io(&g.outputs),
        totals: Totals {
            macs,
            flops: macs.saturating_mul(2),
            params: a.cost.full_params(),
            initializer_elements: g
                .values
                .iter()
                .filter_map(|v| v.init.as_ref())
                .map(|t| t.len() as u64)
                .sum(),
            nodes: g.nodes.len(),
            prunable_groups: a.layers.len(),
            prunable_macs: a.layers.iter().fold(0u64, |s, l| s.saturating_add(l.macs_share)),
        },
        layers: &a.layers,
        groups: a
            .groups
            .iter()
            .map(|gr| GroupJson {
                id: gr.id,
                channels: gr.channels,
                prunable: gr.prunable,
                reason: gr.reason.clone(),
                producers: names(&gr.producers),
                consumers: names(&gr.consumers),
                values: gr.members.iter().map(|(v, _)| g.values[*v].name.clone()).collect(),
                macs: a.cost.group_macs(gr.id),
            })
            .collect(),
        ops: ops_count,
        unsupported,
        passes: &a.passes,
    }
}

fn human(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

/// Short scaled figure: 125.49M.
pub fn short(n: u64) -> String {
    match n {
        n if n >= 1_000_000_000 => format!("{:.2}G", n as f64 / 1e9),
        n if n >= 1_000_000 => format!("{:.2}M", n as f64 / 1e6),
        n if n >= 1_000 => format!("{:.1}K", n as f64 / 1e3),
        n => n.to_string(),
    }
}

/// The human-readable report.
/// `name` in at most `w` characters: its tail after "…" when longer (by characters:
/// names may be non-ASCII).
fn fit_name(name: &str, w: usize) -> String {
    let chars = name.chars().count();
    if chars <= w || w == 0 {
        return name.to_string();
    }
    format!("…{}", name.chars().skip(chars - (w - 1)).collect::<String>())
}

pub fn text(r: &ReportJson) -> String {
    let mut s = String::new();
    let t = &r.totals;
    let _ = writeln!(s, "model   {}  (opset {}, {} nodes)", r.model, r.opset, t.nodes);
    for i in &r.inputs {
        let layout = match r.input_layout {
            crate::ir::Layout::Nchw => "NCHW, channels first",
            crate::ir::Layout::Nhwc => "NHWC, channels last: images are fed as N x H x W x C",
        };
        let _ = writeln!(s, "input   {} {} ({layout})", i.name, i.shape);
    }
    for o in &r.outputs {
        let _ = writeln!(s, "output  {} {}", o.name, o.shape);
    }
    let _ = writeln!(
        s,
        "MACs    {} per sample ({})   FLOPs (2 x MACs) {}",
        human(t.macs),
        short(t.macs),
        short(t.flops)
    );
    let _ = writeln!(s, "params  {} ({})", human(t.params), short(t.params));
    let _ = writeln!(s);
    let pct = |n: u64| 100.0 * n as f64 / t.macs.max(1) as f64;
    let _ = writeln!(
        s,
        "prunable layers: {} (MACs that scale with their widths: {}, {:.1}% of the model)",
        t.prunable_groups,
        short(t.prunable_macs),
        pct(t.prunable_macs)
    );
    if !r.layers.is_empty() {
        let w = r.layers.iter().map(|l| l.label().chars().count()).max().unwrap_or(4).clamp(4, 48);
        let _ = writeln!(
            s,
            "  {:>3}  {:<w$}  {:>5}  {:>8}  {:>6}  {:>6}  {:>10}  {:>6}  {:>10}",
            "#", "name", "c_in", "channels", "kernel", "stride", "MACs", "share", "scaling"
        );
        for l in r.layers {
            let name = fit_name(l.label(), w);
            let _ = writeln!(
                s,
                "  {:>3}  {:<w$}  {:>5}  {:>8}  {:>6}  {:>6}  {:>10}  {:>5.1}%  {:>10}",
                l.index,
                name,
                l.c_in,
                l.channels,
                l.kernel,
                l.stride,
                short(l.macs_share),
                pct(l.macs_share),
                short(l.macs)
            );
        }
        let _ = writeln!(
            s,
            "  MACs, share: each MAC counted once (a conv between two layers is split half and \
             half); they add up to the line above"
        );
        let _ = writeln!(
            s,
            "  scaling: all the MACs that shrink with the layer's width (a shared conv counts for both)"
        );
    }
    let fixed: Vec<&GroupJson> = r.groups.iter().filter(|g| !g.prunable).collect();
    if !fixed.is_empty() {
        let _ = writeln!(s);
        let _ = writeln!(s, "fixed channel groups: {}", fixed.len());
        let mut by_reason: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
        for g in &fixed {
            let e = by_reason.entry(g.reason.as_deref().unwrap_or("?")).or_default();
            e.0 += 1;
            e.1 += g.channels;
        }
        for (why, (n, c)) in by_reason {
            let _ = writeln!(s, "  {n:>3} group(s), {c:>5} channels: {why}");
        }
    }
    if !r.unsupported.is_empty() {
        let _ = writeln!(s);
        let _ = writeln!(
            s,
            "unsupported ops (imported as barriers; pruning and execution cannot cross them):"
        );
        for u in &r.unsupported {
            let _ = writeln!(s, "  {u}");
        }
    }
    s
}

#[cfg(test)]
mod tests {
    #[test]
    fn long_names_keep_their_tail_by_characters() {
        assert_eq!(super::fit_name("conv1", 8), "conv1");
        assert_eq!(super::fit_name("/layer1/0/conv2", 8), "…0/conv2");
        let n = super::fit_name("/block/überschwänglich_ß", 6);
        assert_eq!((n.chars().count(), n.as_str()), (6, "…ich_ß"));
    }
}
