use super::*;
use std::path::Path;

/// The budget of a graph in `graphs/` at `ratio` of its MACs, widths in multiples of `multiple`.
pub(crate) fn budget(file: &str, ratio: f64, multiple: usize) -> Budget {
    let (_, a) = crate::analysis::import(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("graphs").join(file),
        &Default::default(),
    )
    .unwrap();
    let mut b = Budget::new(a.cost, a.layers, ratio, 0.9).unwrap();
    b.set_multiple(multiple).unwrap();
    b
}

/// Exhaustive search over every allowed width vector (small graphs only).
fn brute(b: &Budget, s: &Surface, t: usize) -> f64 {
    let widths: Vec<Vec<usize>> = (0..b.layers.len()).map(|l| b.allowed(l).collect()).collect();
    let mut best = f64::NEG_INFINITY;
    let mut idx = vec![0usize; widths.len()];
    loop {
        let k: Vec<usize> = idx.iter().zip(&widths).map(|(&i, w)| w[i]).collect();
        if b.fits(&k) {
            best = best.max(s.value(t, &k));
        }
        let mut l = 0;
        while l < idx.len() {
            idx[l] += 1;
            if idx[l] < widths[l].len() {
                break;
            }
            idx[l] = 0;
            l += 1;
        }
        if l == idx.len() {
            return best;
        }
    }
}

fn cfg(family: Family) -> SurfaceConfig {
    SurfaceConfig { family, ..Default::default() }
}

#[test]
fn dp_optimum_equals_exhaustive_search() {
    // ResNet-20 (9 separable layers) in multiples of 8: 2 x 4 x 8 widths per stage, enumerable.
    let cases = [
        (0.5, 0, 1, Family::Separable),
        (0.4, 2, 2, Family::Separable),
        (0.6, 3, 3, Family::Separable),
    ];
    let more = [(0.5, 2, 4, Family::Features), (0.4, 2, 5, Family::Cliff)];
    for (ratio, pairs, seed, family) in cases.into_iter().chain(more) {
        let b = budget("resnet20_mnist.onnx", ratio, 8);
        let s = Surface::new(&b, 10, &SurfaceConfig { pairs, ..cfg(family) }, seed);
        let o = optimum(&b, &s, 9).unwrap();
        assert!(b.fits(&o.kept) && o.exact && o.source == "dp", "{family:?}: {o:?}");
        assert!((o.value - s.value(9, &o.kept)).abs() < 1e-9);
        let want = brute(&b, &s, 9);
        assert!((o.value - want).abs() < 1e-9, "{family:?}: DP {} vs exhaustive {want}", o.value);
    }
    // A metric that is not a sum over layers (a conv between two prunable groups):
    // a feasible architecture, flagged as not exact.
    let b = budget("mnist_cnn.onnx", 0.5, 4);
    let s = Surface::new(&b, 10, &SurfaceConfig::default(), 1);
    let o = optimum(&b, &s, 9).unwrap();
    assert!(b.fits(&o.kept) && !o.exact && o.value <= brute(&b, &s, 9) + 1e-12);
}

#[test]
fn coupled_surfaces_pair_half_the_layers_and_the_reference_search_finds_their_optimum() {
    let b = budget("resnet20_mnist.onnx", 0.45, 8);
    for seed in [1, 2] {
        let s = Surface::new(&b, 10, &cfg(Family::Coupled), seed);
        let mut in_pairs: Vec<usize> = s.pairs.iter().flat_map(|p| [p.i, p.j]).collect();
        in_pairs.sort();
        in_pairs.dedup();
        assert!(2 * in_pairs.len() >= s.channels.len() && !s.chained(), "{:?}", s.pairs);
        assert!(s.pairs.iter().any(|p| p.j > p.i + 1), "{:?}", s.pairs);
        let o = optimum(&b, &s, 9).unwrap();
        assert!(!o.exact && o.source == "reference-search" && b.fits(&o.kept));
        let want = brute(&b, &s, 9);
        assert!((o.value - want).abs() < 1e-9, "reference {} vs exhaustive {want}", o.value);
    }
}

#[test]
fn surface_is_calibrated_noisy_and_drifts() {
    let b = budget("resnet56_cifar.onnx", 0.5, 1);
    let s = Surface::new(&b, 50, &SurfaceConfig::default(), 4);
    let u = crate::search::reward::uniform_kept(&b);
    assert!((s.base(49) - s.value(49, &u) - 0.08).abs() < 1e-9);
    let o = optimum(&b, &s, 49).unwrap();
    assert!(o.exact && b.fits(&o.kept));
    assert!(
        o.value > s.value(49, &u) + 0.01,
        "the allocation must matter: optimum {} uniform {}",
        o.value,
        s.value(49, &u)
    );
    // The early optimum differs from the final one (the drift matters).
    assert_ne!(optimum(&b, &s, 0).unwrap().kept, o.kept);
    let mut rng = Rng::new(1);
    let xs: Vec<f64> = (0..400).map(|_| s.sample(49, &u, &mut rng)).collect();
    let mean = xs.iter().sum::<f64>() / 400.0;
    let sd = (xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / 399.0).sqrt();
    let v = s.value(49, &u);
    let want = (v * (1.0 - v) / 5000.0).sqrt();
    assert!(
        (mean - v).abs() < 4.0 * want / 20.0 && (sd / want - 1.0).abs() < 0.2,
        "mean {mean} sd {sd} vs {v} {want}"
    );
}

/// R² of the least-squares fit of `y` on `x` (with an intercept), by normal equations.
fn r_squared(x: &[Vec<f64>], y: &[f64]) -> f64 {
    let rows: Vec<Vec<f64>> =
        x.iter().map(|r| std::iter::once(1.0).chain(r.iter().copied()).collect()).collect();
    let k = rows[0].len();
    let mut a: Vec<Vec<f64>> = (0..k)
        .map(|i| {
            (0..=k)
                .map(|j| {
                    rows.iter().zip(y).map(|(r, yv)| r[i] * if j < k { r[j] } else { *yv }).sum()
                })
                .collect()
        })
        .collect();
    for i in 0..k {
        let p = (i..k).max_by(|&u, &v| a[u][i].abs().total_cmp(&a[v][i].abs())).unwrap();
        a.swap(i, p);
        if a[i][i].abs() < 1e-9 {
            continue; // a constant or collinear feature: no contribution
        }
        for r in 0..k {
            let f = if r != i { a[r][i] / a[i][i] } else { 0.0 };
            (0..=k).for_each(|c| a[r][c] -= f * a[i][c]);
        }
    }
    let coef: Vec<f64> =
        (0..k).map(|i| if a[i][i].abs() < 1e-9 { 0.0 } else { a[i][k] / a[i][i] }).collect();
    let mean = y.iter().sum::<f64>() / y.len() as f64;
    let fit = |r: &Vec<f64>| r.iter().zip(&coef).map(|(a, b)| a * b).sum::<f64>();
    let res: f64 = rows.iter().zip(y).map(|(r, yv)| (yv - fit(r)).powi(2)).sum();
    1.0 - res / y.iter().map(|v| (v - mean).powi(2)).sum::<f64>()
}

#[test]
fn feature_sensitivities_follow_the_state_features_up_to_the_idiosyncratic_share() {
    let b = budget("resnet56_cifar.onnx", 0.5, 1);
    let x: Vec<Vec<f64>> = families::layer_features(&b).iter().map(|f| f.to_vec()).collect();
    let r2 = |iota: f64, seed: u64| {
        let s = Surface::new(
            &b,
            10,
            &SurfaceConfig { idiosyncratic: iota, ..cfg(Family::Features) },
            seed,
        );
        r_squared(&x, &s.sens.iter().map(|v| v.ln()).collect::<Vec<_>>())
    };
    for seed in [1, 2, 3] {
        assert!(r2(0.0, seed) > 1.0 - 1e-9, "ι = 0: {}", r2(0.0, seed));
        let (a, b) = (r2(0.25, seed), r2(1.0, seed));
        assert!(a > 0.5 && a < 1.0 - 1e-6 && b < a, "ι = 0.25: R² {a}; ι = 1: {b}");
    }
}

#[test]
fn cliffs_collapse_below_a_hidden_width_under_uniform_pruning() {
    let b = budget("resnet56_cifar.onnx", 0.5, 1);
    let s = Surface::new(&b, 10, &cfg(Family::Cliff), 3);
    let u = crate::search::reward::uniform_kept(&b);
    let cliffs: Vec<usize> = (0..u.len()).filter(|&l| s.cliffs[l] > b.min_width(l)).collect();
    assert!(cliffs.len() >= u.len() / 3, "{:?}", s.cliffs);
    for &l in &cliffs {
        assert!(s.cliffs[l] <= u[l]);
        let mut k = u.clone();
        k[l] = s.cliffs[l];
        let at = s.value(9, &k);
        k[l] -= 1;
        assert!(at - s.value(9, &k) > 0.25, "layer {l}: {} -> {}", at, s.value(9, &k));
    }
    let o = optimum(&b, &s, 9).unwrap();
    assert!(o.exact && o.kept.iter().zip(&s.cliffs).all(|(k, c)| k >= c), "{o:?}");
    // Over every cliff at once the network has collapsed: accuracy 0, not below.
    let narrowest: Vec<usize> = (0..u.len()).map(|l| b.min_width(l)).collect();
    assert_eq!(s.value(9, &narrowest), 0.0);
}

#[test]
fn run_effects_correlate_the_noise_and_reward_the_alignment_target() {
    let b = budget("resnet20_mnist.onnx", 0.5, 1);
    let u = crate::search::reward::uniform_kept(&b);
    let mut other = u.clone();
    other[0] -= 2;
    let plain = Surface::new(&b, 40, &SurfaceConfig::default(), 2);
    // Independent noise, no feedback: the rewards of `Surface::sample`.
    let (mut r1, mut r2) = (Rng::new(5), Rng::new(5));
    let mut run = plain.run(2);
    run.begin_epoch(30);
    run.set_incumbent(&u);
    assert_eq!(run.reward(&u, &mut r1), plain.sample(30, &u, &mut r2));
    // Correlated: the same architecture in the same epoch gets the same reward,
    // and the epoch's offset moves every reward of the epoch together.
    let c = SurfaceConfig { noise: Noise::Correlated, epoch_sd: 0.02, ..Default::default() };
    let s = Surface::new(&b, 40, &c, 2);
    let mut run = s.run(2);
    let mut offsets = Vec::new();
    for t in 20..40 {
        run.begin_epoch(t);
        let (a, b2) = (run.reward(&u, &mut r1), run.reward(&other, &mut r1));
        assert_eq!(a, run.reward(&u, &mut r1));
        offsets.push(((a - s.value(t, &u)) + (b2 - s.value(t, &other))) / 2.0);
    }
    let sd = (offsets.iter().map(|x| x * x).sum::<f64>() / offsets.len() as f64).sqrt();
    assert!(sd > 0.01 && sd < 0.04, "epoch offsets {offsets:?}");
    // Feedback: the target's reward rises with the epochs it has been the target,
    // a neighbour's less, a far architecture's not at all.
    let f =
        Surface::new(&b, 40, &SurfaceConfig { alignment_feedback: true, ..Default::default() }, 2);
    let mut run = f.run(2);
    let far: Vec<usize> = b.layers.iter().enumerate().map(|(l, _)| b.min_width(l)).collect();
    let mut rises = Vec::new();
    for t in 0..20 {
        run.begin_epoch(t);
        run.set_incumbent(&u);
        rises.push((run.feedback(&u), run.feedback(&other), run.feedback(&far)));
    }
    assert!(rises.windows(2).all(|w| w[1].0 > w[0].0) && rises[19].0 > 0.8 * 0.02, "{rises:?}");
    assert!(rises.iter().all(|r| r.1 < r.0 && r.1 > 0.0 && r.2 < 0.01 * r.0), "{rises:?}");
    run.set_incumbent(&other);
    assert!(run.feedback(&other) < rises[1].0, "a new target starts from one epoch");
}
