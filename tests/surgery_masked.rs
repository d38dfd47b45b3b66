//! Pruned ≡ masked: for random keep-sets on every reference graph, ONNX
//! Runtime's output of the pruned graph equals the output of the original
//! graph with the removed channels zeroed, and the MACs/params re-counted on
//! the pruned graph equal the cost model's prediction; tract loads the
//! pruned graph and agrees with ONNX Runtime.
use rlal::analysis::{import, Analysis, ImportOptions};
use rlal::ir::Graph;
use rlal::rewrite::{rank, surgery, KeepSets};
use rlal::rng::Rng;
use rlal::validate::ort::OrtModel;
use rlal::validate::tract::TractModel;
use std::path::PathBuf;

fn graphs() -> Vec<PathBuf> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("graphs");
    let mut v: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "onnx"))
        .collect();
    v.sort();
    v
}

/// Random keep-sets: a ratio in [0, 0.9] per layer, then a random subset.
fn random_keep(a: &Analysis, rng: &mut Rng) -> KeepSets {
    let mut out = KeepSets::new();
    for l in &a.layers {
        let c = a.groups[l.group].channels;
        let n = rank::kept_count(c, rng.range_f64(0.0, 0.9));
        let mut idx: Vec<usize> = (0..c).collect();
        rng.shuffle(&mut idx);
        let mut keep: Vec<usize> = idx.into_iter().take(n).collect();
        keep.sort_unstable();
        out.insert(l.group, keep);
    }
    out
}

fn input_of(g: &Graph, a: &Analysis, batch: usize, seed: u64) -> (Vec<usize>, Vec<f32>) {
    let f = a.facts[g.inputs[0]].as_ref().unwrap();
    let shape = f.concrete(batch);
    let mut rng = Rng::new(seed);
    let data = (0..shape.iter().product::<usize>()).map(|_| rng.normal_f32()).collect();
    (shape, data)
}

fn run(g: &Graph, shape: &[usize], data: &[f32]) -> Vec<f32> {
    let mut m = OrtModel::from_bytes(&rlal::onnx::to_bytes(g), 1)
        .unwrap_or_else(|e| panic!("ORT load: {e}"));
    m.run(shape, data.to_vec()).unwrap().remove(0).1
}

#[test]
fn pruned_equals_masked_on_every_graph() {
    let files = graphs();
    assert!(files.len() >= 10, "reference graphs missing");
    for path in files {
        let (g, a) = import(&path, &ImportOptions::default()).unwrap();
        assert!(!a.layers.is_empty(), "{}: no prunable layer", path.display());
        for seed in 0..2u64 {
            let mut rng = Rng::new(0x5eed ^ seed ^ (path.to_string_lossy().len() as u64) << 8);
            let keep = random_keep(&a, &mut rng);
            let p = surgery::prune(&g, &a, &keep, None)
                .unwrap_or_else(|e| panic!("{} seed {seed}: {e}", path.display()));
            assert!(p.macs_after < p.macs_before, "{}: nothing pruned", path.display());
            let masked = surgery::mask(&g, &a, &p.plan);
            let (shape, data) = input_of(&g, &a, 2, seed);
            let want = run(&masked, &shape, &data);
            let got = run(&p.graph, &shape, &data);
            assert_eq!(want.len(), got.len());
            // f32::max ignores NaN: a NaN would pass the comparison below unseen.
            assert!(
                want.iter().chain(&got).all(|x| x.is_finite()),
                "{} seed {seed}: non-finite outputs (masked or pruned)",
                path.display()
            );
            let scale = want.iter().fold(1.0f32, |m, x| m.max(x.abs()));
            let diff = want.iter().zip(&got).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
            assert!(
                diff <= 1e-4 * scale,
                "{} seed {seed}: max diff {diff} (scale {scale})",
                path.display()
            );
            // The pruned graph loads and agrees in tract too.
            if seed == 0 {
                let mut t = TractModel::from_bytes(&rlal::onnx::to_bytes(&p.graph))
                    .unwrap_or_else(|e| panic!("{}: tract load: {e}", path.display()));
                let tr = t.run(&shape, data.clone()).unwrap().remove(0).1;
                let d = tr.iter().zip(&got).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
                assert!(d <= 1e-4 * scale, "{}: ort vs tract {d}", path.display());
            }
            // Masking changed the output (the test is not vacuous).
            let orig = run(&g, &shape, &data);
            let moved = orig.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
            assert!(moved > 0.0, "{}: masking changed nothing", path.display());
        }
    }
}

#[test]
fn l1_uniform_prune_reaches_predicted_macs_and_round_trips() {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("graphs/mobilenetv2_cifar_dynamo.onnx");
    let (g, a) = import(&path, &ImportOptions::default()).unwrap();
    for c in [rank::Criterion::L1, rank::Criterion::L2] {
        let keep = rank::keep_sets(&g, &a, &vec![0.5; a.layers.len()], c);
        let p = surgery::prune(&g, &a, &keep, None).unwrap();
        let kept: Vec<usize> = p.plan.kept.clone();
        assert_eq!(p.macs_after, a.cost.macs(&kept));
        // The written bytes re-import to the same figures.
        let back = rlal::onnx::load_bytes(&rlal::onnx::to_bytes(&p.graph), &path).unwrap();
        rlal::rewrite::check::check(&back, None).unwrap();
        let facts = rlal::ir::infer::infer(&back, None).unwrap();
        assert_eq!(Analysis::new(&back, facts, vec![]).cost.full_macs(), p.macs_after);
    }
}

/// The initializer shape of input `slot` of the first `op` node.
fn init_shape(g: &Graph, op: &str, slot: usize) -> Vec<usize> {
    let n = g.nodes.iter().find(|n| n.op_type == op).unwrap_or_else(|| panic!("no {op}"));
    g.values[n.inputs[slot].unwrap()].init.as_ref().unwrap().shape.clone()
}

#[test]
fn ops_cnn_half_width_prune_slices_every_op_and_equals_the_mask() {
    for f in ["ops_cnn.onnx", "ops_cnn_bn.onnx", "ops_cnn_dynamo.onnx"] {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("graphs").join(f);
        let (g, a) = import(&path, &ImportOptions::default()).unwrap();
        let keep = rank::keep_sets(&g, &a, &[0.5; 4], rank::Criterion::L2);
        let p = surgery::prune(&g, &a, &keep, None).unwrap();
        // By hand, widths 4 | 8 (split 4 + 4) | 2 | 8 on 1x16x16: conv1 16*16*4 * 9, conv2
        // 8*8*8 * 4*9, ConvTranspose (8*8*4) * 2*2*2, down 8*8*4 * 2*9, conv3 8*8*8 * 4*9,
        // MatMul 10 * 8.
        let want = 16 * 16 * 4 * 9 + 8 * 8 * 8 * 36 + 8 * 8 * 4 * 8 + 8 * 8 * 4 * 18;
        assert_eq!(p.macs_after, want + 8 * 8 * 8 * 36 + 80, "{f}");
        let pg = &p.graph;
        assert_eq!(init_shape(pg, "ConvTranspose", 1), [4, 2, 2, 2], "{f}");
        assert_eq!(init_shape(pg, "ConvTranspose", 2), [2], "{f}");
        assert_eq!(init_shape(pg, "MatMul", 1), [8, 10], "{f}");
        for op in ["Sub", "Div"] {
            assert_eq!(init_shape(pg, op, 1), [1, 4, 1, 1], "{f}: {op}");
        }
        let split = pg.nodes.iter().find(|n| n.op_type == "Split").unwrap();
        let sizes = pg.values[split.inputs[1].unwrap()].init.as_ref().unwrap();
        assert_eq!(sizes.to_i64().unwrap(), [4, 4], "{f}");
        // The split input keeps the same channels in both halves.
        let change = p.plan.changes.iter().find(|c| c.group == a.layers[1].group).unwrap();
        let split_in = g.nodes.iter().find(|n| n.op_type == "Split").unwrap().inputs[0].unwrap();
        let both: Vec<usize> =
            change.keep.iter().copied().chain(change.keep.iter().map(|k| k + 8)).collect();
        assert_eq!(p.plan.kept_idx[&split_in], both, "{f}");
        let masked = surgery::mask(&g, &a, &p.plan);
        let (shape, data) = input_of(&g, &a, 3, 1);
        let (want, got) = (run(&masked, &shape, &data), run(&p.graph, &shape, &data));
        assert!(want.iter().chain(&got).all(|x| x.is_finite()), "{f}: non-finite outputs");
        let diff = want.iter().zip(&got).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
        assert!(diff <= 1e-5, "{f}: pruned vs masked {diff}");
        let orig = run(&g, &shape, &data);
        assert!(orig.iter().zip(&want).any(|(a, b)| a != b), "{f}: masking changed nothing");
    }
}
