//! Models: byte-level and structural mutations of the reference graphs, through the
//! library calls of `rlal import`, `rlal export` and the model loading of `rlal eval`.
use super::{cases, guarded, root, seed, verbose, Failures, Outcome, DEFAULT_CASES, LIMIT};
use prost::Message;
use rlal::onnx::pb;
use rlal::rng::Rng;
use std::path::Path;
use std::time::Instant;

/// How far a model got through the pipeline, or where it was rejected.
#[derive(Debug)]
struct Run {
    /// `rlal import` (decode, normalise, analyse, report).
    import: Result<(), String>,
    /// `rlal export --uniform --dry-run` (keep sets and the surgery plan), after a good import.
    plan: Option<Result<(), String>>,
}

/// The library calls of `rlal import`, `rlal export` and `rlal eval`'s model loading.
fn model_pipeline(bytes: &[u8], path: &Path) -> Run {
    use rlal::rewrite::{rank, Criterion, Plan};
    let (g, an) = match rlal::analysis::import_bytes(bytes, path, &Default::default()) {
        Ok(x) => x,
        Err(e) => return Run { import: Err(e.to_string()), plan: None },
    };
    let r = rlal::analysis::report::build(&path.display().to_string(), &g, &an);
    let _ = rlal::analysis::report::text(&r);
    let _ = serde_json::to_string(&r);
    let mut plan = Ok(());
    let mut keep = Default::default();
    for (ratio, align) in [(0.9, 8), (0.5, 1)] {
        keep =
            rank::keep_sets_aligned(&g, &an, &vec![ratio; an.layers.len()], Criterion::L1, align);
        match Plan::build(&g, &an, &keep) {
            Ok(p) => {
                let _ = (p.to_string(), an.cost.macs(&p.kept), an.cost.params(&p.kept));
            }
            Err(e) => plan = Err(e.to_string()),
        }
    }
    if plan.is_ok() {
        // `rlal export` without --dry-run: surgery, BN folding, the written model read back.
        if let Ok(p) = rlal::rewrite::surgery::prune(&g, &an, &keep, None) {
            let mut out = p.graph.clone();
            rlal::ir::bn::fold_bn(&mut out);
            if rlal::rewrite::check::check(&out, None).is_ok() {
                let _ = rlal::analysis::import_bytes(
                    &rlal::onnx::to_bytes(&out),
                    path,
                    &Default::default(),
                );
            }
        }
    }
    // `rlal eval`'s and `rlal prune`'s model loading: the input, the network, the budget.
    if rlal::train::setup::model_input(&g, &an).is_ok() {
        let _ = rlal::train::Net::new(&g, &an, tch::Device::Cpu);
    }
    if let Ok(mut b) = rlal::agent::Budget::new(an.cost.clone(), an.layers.clone(), 0.5, 0.9) {
        if b.set_multiple(4).is_ok() {
            let mut kept = Vec::new();
            for l in 0..b.layers.len() {
                kept.push(b.apply(&kept, (l % 3) as f32 / 2.0));
            }
            let _ = b.fits(&kept);
        }
    }
    Run { import: Ok(()), plan: Some(plan) }
}

/// A reference graph, its bytes and its decoded form.
pub(super) struct Base {
    name: &'static str,
    bytes: Vec<u8>,
    pub(super) model: pb::ModelProto,
}

pub(super) fn bases(names: &[&'static str]) -> Vec<Base> {
    names
        .iter()
        .map(|&name| {
            let bytes = std::fs::read(root().join("graphs").join(name)).unwrap();
            let model = pb::ModelProto::decode(bytes.as_slice()).unwrap();
            Base { name, bytes, model }
        })
        .collect()
}

/// A value that breaks assumptions: negative, zero, huge.
fn absurd(rng: &mut Rng) -> i64 {
    const V: [i64; 10] = [-1, 0, 1, 2, -7, 1 << 40, i64::MAX, i64::MIN, 1 << 31, 3];
    V[rng.below_usize(V.len())]
}

pub(super) fn dims_of(
    v: &mut pb::ValueInfoProto,
) -> Option<&mut Vec<pb::tensor_shape_proto::Dimension>> {
    match v.r#type.as_mut()?.value.as_mut()? {
        pb::type_proto::Value::TensorType(t) => Some(&mut t.shape.as_mut()?.dim),
        _ => None,
    }
}

/// One structural mutation of `m` (the name says which, for the report).
fn mutate_model(m: &mut pb::ModelProto, rng: &mut Rng) -> &'static str {
    use pb::tensor_shape_proto::{dimension::Value as D, Dimension};
    let g = m.graph.get_or_insert_with(Default::default);
    let nn = g.node.len().max(1);
    let ni = g.initializer.len().max(1);
    let pick_node = |rng: &mut Rng| rng.below_usize(nn);
    match rng.below_usize(22) {
        0 if !g.initializer.is_empty() => {
            g.initializer.remove(rng.below_usize(ni));
            "dropped initializer"
        }
        1 if !g.node.is_empty() => {
            let n = &mut g.node[pick_node(rng)];
            if !n.input.is_empty() {
                let k = rng.below_usize(n.input.len());
                n.input[k] = "dangling".into();
            }
            "dangling input"
        }
        2 if g.node.len() > 1 => {
            // A node reads the output of a later one: a cycle.
            let a = rng.below_usize(g.node.len() - 1);
            let b = a + 1 + rng.below_usize(g.node.len() - a - 1);
            if let (Some(o), false) =
                (g.node[b].output.first().cloned(), g.node[a].input.is_empty())
            {
                g.node[a].input[0] = o;
            }
            "cycle"
        }
        3 if !g.node.is_empty() => {
            g.node[pick_node(rng)].op_type = Some(
                ["FuzzOp", "", "Conv", "Gemm", "Add", "Reshape", "Concat", "BatchNormalization"]
                    [rng.below_usize(8)]
                .into(),
            );
            "op type changed"
        }
        4 if !g.node.is_empty() => {
            g.node[pick_node(rng)].domain =
                Some(["com.fuzz", "ai.onnx.ml", "ai.onnx"][rng.below_usize(3)].into());
            "domain"
        }
        5 if !g.node.is_empty() => {
            let n = &mut g.node[pick_node(rng)];
            if n.attribute.is_empty() {
                n.attribute.push(pb::AttributeProto {
                    name: Some(
                        ["group", "kernel_shape", "strides", "pads", "axis", "dilations"]
                            [rng.below_usize(6)]
                        .into(),
                    ),
                    r#type: Some(2),
                    i: Some(absurd(rng)),
                    ..Default::default()
                });
            }
            let k = rng.below_usize(n.attribute.len());
            let a = &mut n.attribute[k];
            match rng.below_usize(5) {
                0 => a.i = Some(absurd(rng)),
                1 => a.ints = (0..rng.below_usize(6)).map(|_| absurd(rng)).collect(),
                2 => a.f = Some([f32::NAN, f32::INFINITY, -1.0, 0.0, 1e30][rng.below_usize(5)]),
                3 => a.r#type = Some(rng.below_usize(16) as i32),
                _ => {
                    a.ints.clear();
                    a.i = None;
                    a.floats.clear();
                }
            }
            "absurd attribute"
        }
        6 => {
            let d = absurd(rng);
            if let Some(dims) = g.input.first_mut().and_then(dims_of) {
                if !dims.is_empty() {
                    let k = rng.below_usize(dims.len());
                    dims[k] = Dimension { value: Some(D::DimValue(d)), denotation: None };
                }
            }
            "absurd input dim"
        }
        7 if !g.initializer.is_empty() => {
            let t = &mut g.initializer[rng.below_usize(ni)];
            if !t.dims.is_empty() {
                let k = rng.below_usize(t.dims.len());
                t.dims[k] = absurd(rng);
            }
            "absurd initializer dim"
        }
        8 if !g.initializer.is_empty() => {
            // Same elements, another rank.
            let t = &mut g.initializer[rng.below_usize(ni)];
            let n: i64 = t.dims.iter().product();
            t.dims = match rng.below_usize(3) {
                0 => vec![n],
                1 => vec![1, n],
                _ => t.dims.iter().copied().chain([1]).collect(),
            };
            "wrong-rank weights"
        }
        9 if !g.initializer.is_empty() => {
            let t = &mut g.initializer[rng.below_usize(ni)];
            if let Some(r) = t.raw_data.as_mut() {
                r.truncate(r.len() / 2);
            }
            t.float_data.truncate(t.float_data.len() / 2);
            t.int64_data.truncate(t.int64_data.len() / 2);
            "half-length weights"
        }
        10 if g.node.len() > 1 => {
            let (a, b) = (pick_node(rng), pick_node(rng));
            if let Some(o) = g.node[a].output.first().cloned() {
                if let Some(x) = g.node[b].output.first_mut() {
                    *x = o;
                }
            }
            "duplicate output name"
        }
        11 => {
            let conv: Vec<usize> = (0..g.node.len())
                .filter(|&i| g.node[i].op_type.as_deref() == Some("Conv"))
                .collect();
            if !conv.is_empty() {
                let n = &mut g.node[conv[rng.below_usize(conv.len())]];
                n.attribute.retain(|a| a.name.as_deref() != Some("group"));
                let v = [2, 3, 1000, 1 << 40, 0, -2][rng.below_usize(6)];
                n.attribute.push(pb::AttributeProto {
                    name: Some("group".into()),
                    r#type: Some(2),
                    i: Some(v),
                    ..Default::default()
                });
            }
            "conv group"
        }
        12 => {
            if let Some(d) = g.input.first_mut().and_then(dims_of) {
                d.clear();
            }
            "scalar graph input"
        }
        13 => {
            g.input.clear();
            "no graph input"
        }
        14 => {
            if rng.bernoulli(0.5) {
                g.output.clear();
            } else if let Some(o) = g.output.first().cloned() {
                g.output.push(o);
            }
            "graph outputs"
        }
        15 if !g.node.is_empty() => {
            let n = &mut g.node[pick_node(rng)];
            match rng.below_usize(4) {
                0 => n.output.clear(),
                1 => n.input.clear(),
                2 => n.input.push(String::new()),
                _ => n.output.push("extra".into()),
            }
            "node arity"
        }
        16 => {
            if let Some(o) = m.opset_import.first_mut() {
                o.version = Some([0, 1, 6, 7, 23, 24, 1000, -1][rng.below_usize(8)]);
            } else {
                m.opset_import.clear();
            }
            "opset"
        }
        17 if !g.initializer.is_empty() => {
            let t = &mut g.initializer[rng.below_usize(ni)];
            t.data_type = Some([0, 2, 6, 7, 8, 10, 11, 16, 99][rng.below_usize(9)]);
            "initializer type"
        }
        18 if g.node.len() > 1 => {
            let a = pick_node(rng);
            let n = g.node.remove(a);
            let b = rng.below_usize(g.node.len() + 1);
            g.node.insert(b, n);
            "node order"
        }
        19 => {
            if let Some(d) = g.input.first_mut().and_then(dims_of) {
                match rng.below_usize(3) {
                    0 => {
                        d.pop();
                    }
                    1 => d.push(Dimension { value: Some(D::DimValue(2)), denotation: None }),
                    _ => {
                        for x in d.iter_mut() {
                            x.value = Some(D::DimParam("h".into()));
                        }
                    }
                }
            }
            "input rank"
        }
        20 if !g.initializer.is_empty() && !g.node.is_empty() => {
            // An initializer takes the name of a node's output (a value with two producers).
            let o = g.node[pick_node(rng)].output.first().cloned().unwrap_or_default();
            g.initializer[rng.below_usize(ni)].name = Some(o);
            "initializer shadows an output"
        }
        _ => {
            if let Some(n) = g.node.get_mut(pick_node(rng)) {
                n.attribute.clear();
            }
            "attributes dropped"
        }
    }
}

/// Offsets of the byte ranges worth flipping: the nodes (first) and the graph's inputs,
/// outputs and opsets (last), not just the weights in between.
fn regions(b: &Base) -> (usize, usize) {
    let g = b.model.graph.as_ref().unwrap();
    let head: usize = g.node.iter().map(|n| n.encoded_len() + 4).sum::<usize>() + 32;
    let tail: usize = g
        .input
        .iter()
        .chain(&g.output)
        .chain(&g.value_info)
        .map(|v| v.encoded_len() + 4)
        .sum::<usize>()
        + b.model.opset_import.iter().map(|o| o.encoded_len() + 4).sum::<usize>()
        + 64;
    (head.min(b.bytes.len()), tail.min(b.bytes.len()))
}

/// One byte-level mutation of `bytes`.
fn mutate_bytes(
    bytes: &mut Vec<u8>,
    head: usize,
    tail: usize,
    other: &[u8],
    rng: &mut Rng,
) -> &'static str {
    let len = bytes.len().max(1);
    let pos = |rng: &mut Rng| match rng.below_usize(5) {
        0 | 1 => rng.below_usize(head.max(1)),
        2 => len - 1 - rng.below_usize(tail.max(1)).min(len - 1),
        _ => rng.below_usize(len),
    };
    match rng.below_usize(6) {
        0 => {
            let p = pos(rng);
            bytes.truncate(p);
            "truncated"
        }
        1 => {
            for _ in 0..1 + rng.below_usize(8) {
                let p = pos(rng).min(bytes.len().saturating_sub(1));
                if let Some(b) = bytes.get_mut(p) {
                    *b ^= 1 << rng.below_usize(8);
                }
            }
            "bit flips"
        }
        2 => {
            // A huge varint (a length or a dim of 2^63 and more) where a field was.
            let p = pos(rng).min(bytes.len());
            let v: &[u8] = [
                &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01][..],
                &[0x80; 11][..],
                &[0xff, 0xff, 0xff, 0xff, 0x0f][..],
            ][rng.below_usize(3)];
            if rng.bernoulli(0.5) {
                let end = (p + v.len()).min(bytes.len());
                bytes.splice(p..end, v.iter().copied());
            } else {
                bytes.splice(p..p, v.iter().copied());
            }
            "huge varint"
        }
        3 => {
            let p = pos(rng).min(bytes.len());
            let n = 1 + rng.below_usize(64);
            let junk: Vec<u8> = (0..n).map(|_| rng.next_u32() as u8).collect();
            let end = (p + n * rng.below_usize(2)).min(bytes.len());
            bytes.splice(p..end, junk);
            "spliced garbage"
        }
        4 => {
            // A piece of another model spliced in.
            let p = pos(rng).min(bytes.len());
            let a = rng.below_usize(other.len().max(1));
            let piece = &other[a..(a + 1 + rng.below_usize(256)).min(other.len())];
            bytes.splice(p..p, piece.iter().copied());
            "spliced model"
        }
        _ => {
            let (p, q) = (pos(rng).min(bytes.len()), pos(rng).min(bytes.len()));
            let (a, b) = (p.min(q), p.max(q));
            bytes.drain(a..b.min(a + 4096));
            "cut"
        }
    }
}

/// One fuzz case: mutated model bytes and what was done to them.
fn model_case(bases: &[Base], rare: &[Base], rng: &mut Rng) -> (Vec<u8>, String) {
    let base = if !rare.is_empty() && rng.below_usize(40) == 0 {
        &rare[rng.below_usize(rare.len())]
    } else {
        &bases[rng.below_usize(bases.len())]
    };
    let mut what = vec![base.name.to_string()];
    // Mostly one structural change, so that cases get past the decoder and the checks
    // that reject the first problem they see, into analysis, planning and surgery.
    let mut bytes = if rng.bernoulli(0.6) {
        let mut m = base.model.clone();
        for _ in 0..[1, 1, 1, 1, 1, 1, 1, 2, 2, 3][rng.below_usize(10)] {
            what.push(mutate_model(&mut m, rng).into());
        }
        m.encode_to_vec()
    } else {
        base.bytes.clone()
    };
    if what.len() == 1 || rng.below_usize(8) == 0 {
        let (head, tail) = regions(base);
        let other = &bases[rng.below_usize(bases.len())].bytes;
        for _ in 0..1 + rng.below_usize(2) {
            what.push(mutate_bytes(&mut bytes, head, tail, other, rng).into());
        }
    }
    (bytes, what.join(", "))
}

fn rlal_bin(args: &[&str]) -> (i32, String) {
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_rlal")).args(args).output().unwrap();
    (o.status.code().unwrap_or(-1), String::from_utf8_lossy(&o.stderr).into_owned())
}

/// The real binary on a case agrees with the library run: exit 0 when it passed, 2 naming the file when not.
fn check_binary(path: &Path, run: &Run, out: &Path) -> Result<(), String> {
    let name = path.file_name().unwrap().to_str().unwrap();
    let p = path.to_str().unwrap();
    let dry = run.import.is_ok() && matches!(run.plan, Some(Ok(())));
    for (args, ok) in [
        (vec!["import", p], run.import.is_ok()),
        (vec!["export", out.to_str().unwrap(), "--model", p, "--uniform", "0.5", "--dry-run"], dry),
    ] {
        let (code, err) = rlal_bin(&args);
        let want = if ok { 0 } else { 2 };
        if code != want || (code == 2 && !err.contains(name)) {
            return Err(format!(
                "`rlal {}`: exit {code} (want {want}): {}",
                args[0],
                err.lines().take(3).collect::<Vec<_>>().join(" | ")
            ));
        }
    }
    Ok(())
}

#[test]
fn fuzz_models() {
    let n = cases(DEFAULT_CASES);
    let bases = bases(&[
        "mnist_cnn.onnx",
        "resnet20_mnist.onnx",
        "resnet20_cifar_bn.onnx",
        "mnist_cnn_bn.onnx",
    ]);
    let rare = if n >= 1000 {
        self::bases(&["resnet56_cifar.onnx", "mobilenetv2_cifar.onnx"])
    } else {
        Vec::new()
    };
    let dir = tempfile::tempdir().unwrap();
    let mut rng = seed(1);
    let mut fails = Failures::new("model");
    let (mut imported, mut planned, mut via_binary) = (0, 0, 0);
    let t0 = Instant::now();
    // A spread-out sample goes through the real binary too (it loads libtorch: ~0.5 s each).
    let every = (n / 12).max(1);
    for case in 0..n {
        let (bytes, what) = model_case(&bases, &rare, &mut rng);
        let path = dir.path().join(format!("case{case}.onnx"));
        let (b, p) = (bytes.clone(), path.clone());
        match guarded(move || model_pipeline(&b, &p)) {
            Outcome::Done(run) => {
                if verbose() {
                    eprintln!("case {case} ({what}): {:?}", run);
                }
                imported += run.import.is_ok() as usize;
                planned += matches!(run.plan, Some(Ok(()))) as usize;
                if case % every == every / 2 {
                    std::fs::write(&path, &bytes).unwrap();
                    via_binary += 1;
                    if let Err(e) = check_binary(&path, &run, &dir.path().join("out.onnx")) {
                        fails.add(case, &what, e, Some(("onnx", &bytes)));
                    }
                    let _ = std::fs::remove_file(&path);
                }
            }
            Outcome::Panic(m) => {
                fails.add(case, &what, format!("panicked: {m}"), Some(("onnx", &bytes)))
            }
            Outcome::Hang => {
                fails.add(case, &what, format!("ran longer than {LIMIT:?}"), Some(("onnx", &bytes)))
            }
        }
    }
    eprintln!(
        "fuzz model: {imported} imported, {planned} planned, {via_binary} through the binary"
    );
    fails.check(n, t0);
}
