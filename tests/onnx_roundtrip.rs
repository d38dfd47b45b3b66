//! Round trip: load → save of every graph in graphs/ is an equivalent model
//! whose ONNX Runtime outputs are bit-identical to the original's.
use rlal::validate::ort::OrtModel;
use std::path::PathBuf;

fn graphs() -> Vec<PathBuf> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("graphs");
    let mut v: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "onnx"))
        .collect();
    v.push(root.join("imagenet/mobilenetv2.onnx.gz"));
    v.sort();
    v
}

fn input(shape: &[usize], seed: u64) -> Vec<f32> {
    let mut r = rlal::rng::Rng::new(seed);
    (0..shape.iter().product::<usize>()).map(|_| r.normal_f32()).collect()
}

#[test]
fn save_of_load_is_bit_identical_in_onnx_runtime() {
    for p in graphs() {
        let raw = std::fs::read(&p).unwrap();
        let raw = if p.extension().is_some_and(|e| e == "gz") {
            use std::io::Read;
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(&raw[..]).read_to_end(&mut out).unwrap();
            out
        } else {
            raw
        };
        let g = rlal::onnx::load(&p).unwrap();
        let bytes = rlal::onnx::to_bytes(&g);
        // Structural round trip: a second pass changes nothing.
        let g2 = rlal::onnx::load_bytes(&bytes, &p).unwrap();
        assert_eq!(rlal::onnx::to_bytes(&g2), bytes, "{}: second round trip differs", p.display());
        assert_eq!(g2.nodes.len(), g.nodes.len());
        let x = g.values[g.inputs[0]].shape.clone().unwrap();
        let shape: Vec<usize> = x.iter().map(|d| d.fixed().unwrap_or(2)).collect();
        let data = input(&shape, 7);
        let a = OrtModel::from_bytes(&raw, 1).unwrap().run(&shape, data.clone()).unwrap();
        let b = OrtModel::from_bytes(&bytes, 1).unwrap().run(&shape, data).unwrap();
        assert_eq!(a.len(), b.len());
        for ((sa, da), (sb, db)) in a.iter().zip(&b) {
            assert_eq!(sa, sb);
            assert!(
                da.iter().zip(db).all(|(x, y)| x.to_bits() == y.to_bits()),
                "{}: outputs differ",
                p.display()
            );
        }
    }
}

#[test]
fn normalised_model_is_equivalent_in_onnx_runtime() {
    for name in ["resnet20_cifar.onnx", "mobilenetv2_cifar_dynamo.onnx", "mnist_cnn_bn.onnx"] {
        let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("graphs").join(name);
        let (g, _) = rlal::analysis::import(&p, &Default::default()).unwrap();
        let raw = std::fs::read(&p).unwrap();
        let x = g.values[g.inputs[0]].shape.clone().unwrap();
        let shape: Vec<usize> = x.iter().map(|d| d.fixed().unwrap_or(3)).collect();
        let data = input(&shape, 11);
        let a = OrtModel::from_bytes(&raw, 1).unwrap().run(&shape, data.clone()).unwrap();
        let b =
            OrtModel::from_bytes(&rlal::onnx::to_bytes(&g), 1).unwrap().run(&shape, data).unwrap();
        let scale = a[0].1.iter().fold(1f32, |m, v| m.max(v.abs()));
        let diff = a[0].1.iter().zip(&b[0].1).fold(0f32, |m, (x, y)| m.max((x - y).abs()));
        assert!(diff <= 1e-5 * scale, "{name}: normalised model differs by {diff}");
    }
}
