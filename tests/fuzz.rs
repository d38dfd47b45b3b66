//! Mutation fuzzing on stable Rust, as part of the test suite: malformed models,
//! recipes and datasets must give errors, never panics or hangs.
//!
//! * Models: the reference graphs in `graphs/`, mutated byte by byte (truncation,
//!   bit flips, huge varints, spliced garbage) and structurally through
//!   `rlal::onnx::pb` (dropped initializers, dangling inputs, cycles, unknown ops
//!   and domains, absurd attributes and dims, wrong-rank or half-length weights,
//!   duplicate outputs, conv groups larger than channels, scalar or missing graph
//!   inputs), go in process through what `rlal import`, `rlal export` (dry run and
//!   surgery) and `rlal eval`'s model loading call; a sample also goes through
//!   the real binary, which must exit 0 or 2 (naming the file), as in process.
//! * Recipes: random edits of `recipes/*.yaml` through both recipe parsers.
//! * Datasets: truncated or corrupted MNIST IDX and CIFAR binary files, image
//!   folders with garbage files, opened and read through `rlal::data`.
//!
//! Each case runs in its own thread under `catch_unwind` with a time limit.
//! `RLAL_FUZZ_CASES` (model cases; recipes and datasets scale with it) and
//! `RLAL_FUZZ_SEED` scale up or vary a run (`tools/fuzz.sh N`); a failing case
//! is written to `target/fuzz-failures/` to be replayed.
use prost::Message;
use rlal::onnx::pb;
use rlal::rng::Rng;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Model cases of a plain `cargo test` (recipes: twice as many, datasets: a fifth):
/// about a minute in the debug test profile on 2 cores.
const DEFAULT_CASES: usize = 4000;

/// Longest a case may run before it counts as a hang.
const LIMIT: Duration = Duration::from_secs(10);

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

/// Model cases of this run (`RLAL_FUZZ_CASES`, default `default`).
fn cases(default: usize) -> usize {
    env_u64("RLAL_FUZZ_CASES").map_or(default, |n| n as usize)
}

/// `RLAL_FUZZ_VERBOSE=1`: print every case and what became of it.
fn verbose() -> bool {
    std::env::var_os("RLAL_FUZZ_VERBOSE").is_some()
}

fn seed(stream: u64) -> Rng {
    Rng::new(env_u64("RLAL_FUZZ_SEED").unwrap_or(15) ^ stream.wrapping_mul(0x9e37_79b9_7f4a_7c15))
}

// ---------------------------------------------------------------- harness

enum Outcome<T> {
    Done(T),
    Panic(String),
    Hang,
}

thread_local! {
    /// Whether this thread runs a fuzz case (its panics are expected and recorded).
    static IN_CASE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    static WHERE: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
}

/// Silences the default panic output (a fuzz run panics on purpose) and keeps
/// the location of each thread's last panic.
fn quiet_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !IN_CASE.with(|c| c.get()) {
                return default(info);
            }
            let at = info.location().map(|l| format!("{}:{}", l.file(), l.line())).unwrap_or_default();
            WHERE.with(|w| *w.borrow_mut() = at);
        }))
    });
}

/// Runs `f` in its own thread: its value, its panic (message and location), or a hang.
fn guarded<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Outcome<T> {
    quiet_panics();
    let (tx, rx) = mpsc::channel();
    std::thread::Builder::new()
        .stack_size(64 << 20)
        .spawn(move || {
            IN_CASE.with(|c| c.set(true));
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).map_err(|p| {
                let msg = p.downcast_ref::<&str>().map(|s| s.to_string()).or_else(|| p.downcast_ref::<String>().cloned()).unwrap_or_default();
                format!("{msg} at {}", WHERE.with(|w| w.borrow().clone()))
            });
            let _ = tx.send(r);
        })
        .expect("spawning a fuzz case");
    match rx.recv_timeout(LIMIT) {
        Ok(Ok(v)) => Outcome::Done(v),
        Ok(Err(m)) => Outcome::Panic(m),
        Err(_) => Outcome::Hang,
    }
}

/// Failures of one fuzz target: printed, written for replay, and failed at the end.
struct Failures {
    target: &'static str,
    list: Vec<String>,
}

impl Failures {
    fn new(target: &'static str) -> Failures {
        Failures { target, list: Vec::new() }
    }

    fn add(&mut self, case: usize, what: &str, msg: String, repro: Option<(&str, &[u8])>) {
        let mut line = format!("{} case {case} ({what}): {msg}", self.target);
        if let Some((ext, bytes)) = repro {
            let dir = root().join("target/fuzz-failures");
            let p = dir.join(format!("{}-{case}.{ext}", self.target));
            if std::fs::create_dir_all(&dir).and_then(|_| std::fs::write(&p, bytes)).is_ok() {
                line += &format!(" [{}]", p.display());
            }
        }
        eprintln!("{line}");
        self.list.push(line);
    }

    fn check(self, n: usize, t0: Instant) {
        eprintln!("fuzz {}: {n} cases in {:.1}s, {} failures", self.target, t0.elapsed().as_secs_f64(), self.list.len());
        assert!(self.list.is_empty(), "{} of {n} {} cases panicked or hung:\n{}", self.list.len(), self.target, self.list.join("\n"));
    }
}

// ---------------------------------------------------------------- models

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
        keep = rank::keep_sets_aligned(&g, &an, &vec![ratio; an.layers.len()], Criterion::L1, align);
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
            rlal::rewrite::bn::fold_bn(&mut out);
            if rlal::rewrite::check::check(&out, None).is_ok() {
                let _ = rlal::analysis::import_bytes(&rlal::onnx::to_bytes(&out), path, &Default::default());
            }
        }
    }
    // `rlal eval`'s and `rlal prune`'s model loading: the input, the network, the budget.
    if rlal::train::setup::input_dims(&g, &an).is_ok() {
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
struct Base {
    name: &'static str,
    bytes: Vec<u8>,
    model: pb::ModelProto,
}

fn bases(names: &[&'static str]) -> Vec<Base> {
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

fn dims_of(v: &mut pb::ValueInfoProto) -> Option<&mut Vec<pb::tensor_shape_proto::Dimension>> {
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
            if let (Some(o), false) = (g.node[b].output.first().cloned(), g.node[a].input.is_empty()) {
                g.node[a].input[0] = o;
            }
            "cycle"
        }
        3 if !g.node.is_empty() => {
            g.node[pick_node(rng)].op_type = Some(["FuzzOp", "", "Conv", "Gemm", "Add", "Reshape", "Concat", "BatchNormalization"][rng.below_usize(8)].into());
            "op type changed"
        }
        4 if !g.node.is_empty() => {
            g.node[pick_node(rng)].domain = Some(["com.fuzz", "ai.onnx.ml", "ai.onnx"][rng.below_usize(3)].into());
            "domain"
        }
        5 if !g.node.is_empty() => {
            let n = &mut g.node[pick_node(rng)];
            if n.attribute.is_empty() {
                n.attribute.push(pb::AttributeProto { name: Some(["group", "kernel_shape", "strides", "pads", "axis", "dilations"][rng.below_usize(6)].into()), r#type: Some(2), i: Some(absurd(rng)), ..Default::default() });
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
            let conv: Vec<usize> = (0..g.node.len()).filter(|&i| g.node[i].op_type.as_deref() == Some("Conv")).collect();
            if !conv.is_empty() {
                let n = &mut g.node[conv[rng.below_usize(conv.len())]];
                n.attribute.retain(|a| a.name.as_deref() != Some("group"));
                let v = [2, 3, 1000, 1 << 40, 0, -2][rng.below_usize(6)];
                n.attribute.push(pb::AttributeProto { name: Some("group".into()), r#type: Some(2), i: Some(v), ..Default::default() });
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
    let tail: usize = g.input.iter().chain(&g.output).chain(&g.value_info).map(|v| v.encoded_len() + 4).sum::<usize>() + b.model.opset_import.iter().map(|o| o.encoded_len() + 4).sum::<usize>() + 64;
    (head.min(b.bytes.len()), tail.min(b.bytes.len()))
}

/// One byte-level mutation of `bytes`.
fn mutate_bytes(bytes: &mut Vec<u8>, head: usize, tail: usize, other: &[u8], rng: &mut Rng) -> &'static str {
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
            let v: &[u8] = [&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01][..], &[0x80; 11][..], &[0xff, 0xff, 0xff, 0xff, 0x0f][..]][rng.below_usize(3)];
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
    let base = if !rare.is_empty() && rng.below_usize(40) == 0 { &rare[rng.below_usize(rare.len())] } else { &bases[rng.below_usize(bases.len())] };
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
    for (args, ok) in [(vec!["import", p], run.import.is_ok()), (vec!["export", out.to_str().unwrap(), "--model", p, "--uniform", "0.5", "--dry-run"], dry)] {
        let (code, err) = rlal_bin(&args);
        let want = if ok { 0 } else { 2 };
        if code != want || (code == 2 && !err.contains(name)) {
            return Err(format!("`rlal {}`: exit {code} (want {want}): {}", args[0], err.lines().take(3).collect::<Vec<_>>().join(" | ")));
        }
    }
    Ok(())
}

#[test]
fn fuzz_models() {
    let n = cases(DEFAULT_CASES);
    let bases = bases(&["mnist_cnn.onnx", "resnet20_mnist.onnx", "resnet20_cifar_bn.onnx", "mnist_cnn_bn.onnx"]);
    let rare = if n >= 1000 { self::bases(&["resnet56_cifar.onnx", "mobilenetv2_cifar.onnx"]) } else { Vec::new() };
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
            Outcome::Panic(m) => fails.add(case, &what, format!("panicked: {m}"), Some(("onnx", &bytes))),
            Outcome::Hang => fails.add(case, &what, format!("ran longer than {LIMIT:?}"), Some(("onnx", &bytes))),
        }
    }
    eprintln!("fuzz model: {imported} imported, {planned} planned, {via_binary} through the binary");
    fails.check(n, t0);
}

// ---------------------------------------------------------------- recipes

/// Values that break assumptions, as YAML.
const YAML_VALUES: [&str; 24] = [
    "-1", "0", "1e308", ".nan", ".inf", "-.inf", "\"\"", "[]", "{}", "18446744073709551616", "18446744073709551615", "-0.0", "1e-300", "abc", "3.5", "true", "null", "[0, -1, 1e9]", "[.nan]", "{a: 1}", "!!binary aGk=", "&a [*a]", "'\u{0}'", "999999999999",
];

/// One edit of a recipe's text.
fn mutate_recipe(text: &str, keys: &[String], rng: &mut Rng) -> String {
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    let n = lines.len().max(1);
    match rng.below_usize(8) {
        0..=2 => {
            // A field gets an absurd value.
            let k = rng.below_usize(n);
            if let Some(l) = lines.get_mut(k) {
                if let Some(i) = l.find(": ") {
                    l.truncate(i + 2);
                    l.push_str(YAML_VALUES[rng.below_usize(YAML_VALUES.len())]);
                }
            }
        }
        3 => {
            // A known field (perhaps nested, perhaps twice) with an absurd value.
            let key = &keys[rng.below_usize(keys.len())];
            let v = YAML_VALUES[rng.below_usize(YAML_VALUES.len())];
            lines.insert(rng.below_usize(lines.len() + 1), format!("{key}: {v}"));
        }
        4 => {
            if !lines.is_empty() {
                lines.remove(rng.below_usize(n));
            }
        }
        5 => {
            let (a, b) = (rng.below_usize(n), rng.below_usize(n));
            if a < lines.len() && b < lines.len() {
                lines.swap(a, b);
            }
        }
        6 => {
            let k = rng.below_usize(n);
            if let Some(l) = lines.get_mut(k) {
                *l = format!("{}{l}", ["  ", "- ", "\t", "? ", "agent:\n  "][rng.below_usize(5)]);
            }
        }
        _ => {
            // Bytes: a cut or a flipped byte (kept as UTF-8, lossily).
            let mut b = lines.join("\n").into_bytes();
            let p = rng.below_usize(b.len().max(1));
            if rng.bernoulli(0.5) {
                b.truncate(p);
            } else if let Some(x) = b.get_mut(p) {
                *x ^= 1 << rng.below_usize(8);
            }
            return String::from_utf8_lossy(&b).into_owned();
        }
    }
    lines.join("\n")
}

/// What `rlal prune` / `rlal train` do with a recipe before touching models or data.
fn recipe_pipeline(text: &str) {
    use rlal::train::schedule::Schedule;
    if let Ok(r) = rlal::search::recipe::Recipe::parse(text) {
        if r.check().is_ok() {
            let _ = (r.ratio(), r.metric(), r.agent.config(), serde_yaml::to_string(&r));
            let t = r.train_recipe(r.epochs);
            let _ = t.check();
            let spe = 10;
            let s = Schedule { base_lr: r.lr, min_lr: r.min_lr, warmup_steps: (r.lr_warmup_epochs * spe as f64).round() as usize, steps_per_epoch: spe, total_steps: r.epochs * spe, decay: t.decay() };
            for step in [0, 1, s.warmup_steps, s.total_steps / 2, s.total_steps.saturating_sub(1)] {
                let _ = s.lr(step);
            }
        }
    }
    if let Ok(t) = rlal::train::recipe::Recipe::parse(text) {
        let spe = 10;
        let s = Schedule { base_lr: t.lr, min_lr: t.min_lr, warmup_steps: (t.warmup_epochs * spe as f64).round() as usize, steps_per_epoch: spe, total_steps: t.epochs * spe, decay: t.decay() };
        for step in [0, 1, s.warmup_steps, s.total_steps / 2, s.total_steps.saturating_sub(1)] {
            let _ = s.lr(step);
        }
        let _ = serde_yaml::to_string(&t);
    }
}

#[test]
fn fuzz_recipes() {
    let n = cases(DEFAULT_CASES) * 2;
    let mut texts = Vec::new();
    let mut keys = Vec::new();
    for e in std::fs::read_dir(root().join("recipes")).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "yaml") {
            let t = std::fs::read_to_string(&p).unwrap();
            keys.extend(t.lines().filter_map(|l| l.split_once(':')).map(|(k, _)| k.trim().to_string()).filter(|k| !k.is_empty() && !k.starts_with('#')));
            texts.push(t);
        }
    }
    keys.sort();
    keys.dedup();
    let mut rng = seed(2);
    let mut fails = Failures::new("recipe");
    let t0 = Instant::now();
    for case in 0..n {
        let mut text = texts[rng.below_usize(texts.len())].clone();
        for _ in 0..1 + rng.below_usize(3) {
            text = mutate_recipe(&text, &keys, &mut rng);
        }
        let t = text.clone();
        match guarded(move || recipe_pipeline(&t)) {
            Outcome::Done(()) => {}
            Outcome::Panic(m) => fails.add(case, "recipe", format!("panicked: {m}"), Some(("yaml", text.as_bytes()))),
            Outcome::Hang => fails.add(case, "recipe", format!("ran longer than {LIMIT:?}"), Some(("yaml", text.as_bytes()))),
        }
    }
    fails.check(n, t0);
}

// ---------------------------------------------------------------- datasets

/// One byte-level mutation of a data file.
fn mutate_file(b: &mut Vec<u8>, rng: &mut Rng) -> &'static str {
    let len = b.len().max(1);
    // Headers matter most: the first 16 bytes half of the time.
    let p = if rng.bernoulli(0.5) { rng.below_usize(16.min(len)) } else { rng.below_usize(len) };
    match rng.below_usize(6) {
        0 => {
            b.truncate(p);
            "truncated"
        }
        1 => {
            b.truncate(len - 1);
            "one byte short"
        }
        2 => {
            if let Some(x) = b.get_mut(p) {
                *x ^= 1 << rng.below_usize(8);
            }
            "bit flip"
        }
        3 => {
            for x in b.iter_mut().skip(p & !3).take(4) {
                *x = 0xff;
            }
            "0xffffffff"
        }
        4 => {
            b.clear();
            "empty"
        }
        _ => {
            let junk: Vec<u8> = (0..1 + rng.below_usize(40)).map(|_| rng.next_u32() as u8).collect();
            b.splice(p.min(b.len())..p.min(b.len()), junk);
            "garbage"
        }
    }
}

/// A small valid dataset in `dir` (format 0: IDX, 1: CIFAR-10, 2: CIFAR-100, 3: image folder);
/// returns the files that may be corrupted.
fn write_dataset(dir: &Path, format: usize, rng: &mut Rng) -> Vec<PathBuf> {
    let n = 3 + rng.below_usize(5);
    let px = |len: usize, rng: &mut Rng| -> Vec<u8> { (0..len).map(|_| rng.next_u32() as u8).collect() };
    match format {
        0 => {
            let gz = rng.bernoulli(0.3);
            let ext = if gz { ".gz" } else { "" };
            for prefix in ["train", "t10k"] {
                let img = dir.join(format!("{prefix}-images-idx3-ubyte{ext}"));
                let lab = dir.join(format!("{prefix}-labels-idx1-ubyte{ext}"));
                rlal::data::idx::write_images(&img, 6, 5, &px(n * 30, rng), gz).unwrap();
                rlal::data::idx::write_labels(&lab, &(0..n).map(|i| (i % 3) as u8).collect::<Vec<_>>(), gz).unwrap();
            }
            std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect()
        }
        1 | 2 => {
            let (names, labels): (Vec<String>, usize) = if format == 1 { ((1..=5).map(|i| format!("data_batch_{i}.bin")).chain(["test_batch.bin".into()]).collect(), 1) } else { (vec!["train.bin".into(), "test.bin".into()], 2) };
            for name in &names {
                let mut b = Vec::new();
                for i in 0..n {
                    b.extend(std::iter::repeat_n((i % 3) as u8, labels));
                    b.extend(px(3072, rng));
                }
                std::fs::write(dir.join(name), b).unwrap();
            }
            names.iter().map(|f| dir.join(f)).collect()
        }
        _ => {
            let mut files = Vec::new();
            for split in ["train", "test"] {
                for class in ["a", "b"] {
                    let d = dir.join(split).join(class);
                    std::fs::create_dir_all(&d).unwrap();
                    for i in 0..2 {
                        let img = image::RgbImage::from_fn(4 + i, 4, |x, y| image::Rgb([x as u8 * 40, y as u8 * 40, i as u8 * 90]));
                        let p = d.join(format!("{i}.png"));
                        img.save(&p).unwrap();
                        files.push(p);
                    }
                }
            }
            // Garbage files that pose as images, and other clutter.
            let d = dir.join(["train", "test"][rng.below_usize(2)]).join(["a", "b", "c"][rng.below_usize(3)]);
            std::fs::create_dir_all(&d).unwrap();
            match rng.below_usize(5) {
                0 => std::fs::write(d.join("junk.png"), px(rng.below_usize(300), rng)).unwrap(),
                1 => std::fs::write(d.join("empty.jpg"), b"").unwrap(),
                2 => std::fs::write(d.join("notes.txt"), b"not an image").unwrap(),
                3 => std::fs::create_dir_all(d.join("folder.png")).unwrap(),
                _ => std::fs::write(d.join("huge.png"), huge_png()).unwrap(),
            }
            files
        }
    }
}

/// A PNG header that claims 100000 x 100000 pixels.
fn huge_png() -> Vec<u8> {
    let mut b = b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR".to_vec();
    b.extend(100_000u32.to_be_bytes());
    b.extend(100_000u32.to_be_bytes());
    b.extend([8, 2, 0, 0, 0]);
    let crc = crc32(&b[12..]);
    b.extend(crc.to_be_bytes());
    b
}

fn crc32(data: &[u8]) -> u32 {
    let mut c = !0u32;
    for &x in data {
        c ^= x as u32;
        for _ in 0..8 {
            c = if c & 1 != 0 { 0xedb8_8320 ^ (c >> 1) } else { c >> 1 };
        }
    }
    !c
}

/// What `rlal train` / `rlal eval` do with a dataset: open it and read every batch.
fn data_pipeline(dir: &Path) {
    use rlal::data::{self, Loader, LoaderConfig, Normalize, OpenOptions, Split, Transform};
    let _ = data::open_both(dir, &OpenOptions::default());
    for split in [Split::Train, Split::Test] {
        let Ok(ds) = data::open(dir, split, &OpenOptions::default()) else { continue };
        let norm = Normalize { scale: 1.0 / 255.0, mean: vec![0.0], std: vec![1.0] };
        let Ok(loader) = Loader::all(ds, Transform::eval(norm), LoaderConfig { batch_size: 3, shuffle: false, workers: 0, ..Default::default() }) else { continue };
        for b in loader.epoch(0) {
            let _ = b;
        }
    }
}

#[test]
fn fuzz_datasets() {
    let n = (cases(DEFAULT_CASES) / 5).max(20);
    let mut rng = seed(3);
    let mut fails = Failures::new("data");
    let t0 = Instant::now();
    for case in 0..n {
        let dir = tempfile::tempdir().unwrap();
        let format = rng.below_usize(4);
        let files = write_dataset(dir.path(), format, &mut rng);
        let mut what = vec![["idx", "cifar10", "cifar100", "folder"][format].to_string()];
        for _ in 0..rng.below_usize(3) + (format != 3) as usize {
            let f = &files[rng.below_usize(files.len())];
            let mut b = std::fs::read(f).unwrap();
            what.push(format!("{} {}", f.file_name().unwrap().to_string_lossy(), mutate_file(&mut b, &mut rng)));
            std::fs::write(f, b).unwrap();
        }
        let p = dir.path().to_path_buf();
        match guarded(move || data_pipeline(&p)) {
            Outcome::Done(()) => {}
            Outcome::Panic(m) => fails.add(case, &what.join(", "), format!("panicked: {m}"), None),
            Outcome::Hang => fails.add(case, &what.join(", "), format!("ran longer than {LIMIT:?}"), None),
        }
    }
    fails.check(n, t0);
}

// ---------------------------------------------------------------- regressions

/// Panics the fuzzer found, kept as plain cases.
#[test]
fn regressions() {
    quiet_panics();
    // Dims whose element count fits but whose byte count overflows (src/onnx/tensor.rs).
    let mut m = bases(&["mnist_cnn.onnx"]).remove(0).model;
    m.graph.as_mut().unwrap().initializer[0].dims = vec![1 << 62];
    let e = rlal::analysis::import_bytes(&m.encode_to_vec(), Path::new("big.onnx"), &Default::default()).unwrap_err().to_string();
    assert!(e.contains("big.onnx") && e.contains("overflow"), "{e}");
    // Input dims of i64::MAX: shape and MACs arithmetic overflowed (Flatten, Slice, the cost model).
    for (file, axis) in [("resnet20_cifar_bn.onnx", 2), ("mnist_cnn.onnx", 3), ("resnet20_mnist.onnx", 0)] {
        let mut m = bases(&[file]).remove(0).model;
        let dims = dims_of(&mut m.graph.as_mut().unwrap().input[0]).unwrap();
        dims[axis] = pb::tensor_shape_proto::Dimension { value: Some(pb::tensor_shape_proto::dimension::Value::DimValue(i64::MAX)), denotation: None };
        let e = rlal::analysis::import_bytes(&m.encode_to_vec(), Path::new(file), &Default::default()).unwrap_err().to_string();
        assert!(e.contains(file) && e.contains("elements, more than"), "{e}");
    }
    // A conv group near i64's limits overflowed the channel check (src/ir/ops/conv.rs).
    for group in [1 << 40, i64::MAX, -3] {
        let mut m = bases(&["resnet20_mnist.onnx"]).remove(0).model;
        let conv = m.graph.as_mut().unwrap().node.iter_mut().find(|n| n.op_type.as_deref() == Some("Conv")).unwrap();
        conv.attribute.retain(|a| a.name.as_deref() != Some("group"));
        conv.attribute.push(pb::AttributeProto { name: Some("group".into()), r#type: Some(2), i: Some(group), ..Default::default() });
        let e = rlal::analysis::import_bytes(&m.encode_to_vec(), Path::new("group.onnx"), &Default::default()).unwrap_err().to_string();
        assert!(e.contains("group.onnx") && e.contains("group must be in 1..="), "{e}");
    }
    // Epoch counts that overflow the step arithmetic (src/search/recipe.rs, the trainer).
    let base = std::fs::read_to_string(root().join("recipes/quickstart.yaml")).unwrap();
    for (extra, field) in [("warmup-epochs: 18446744073709551615\nbuffer-epochs: 1\n", "epochs"), ("epochs: 18446744073709551615\n", "epochs"), ("finetune-epochs: 18446744073709551615\n", "finetune-epochs")] {
        let text: String = base.lines().filter(|l| !l.starts_with(extra.split(':').next().unwrap())).map(|l| format!("{l}\n")).collect::<String>() + extra;
        let e = rlal::search::recipe::Recipe::parse(&text).and_then(|r| r.check()).unwrap_err();
        assert!(e.contains(field), "{extra}: {e}");
        recipe_pipeline(&text);
    }
    let e = rlal::train::recipe::Recipe::parse("epochs: 18446744073709551615\n").unwrap_err();
    assert!(e.contains("'epochs'"), "{e}");
}
