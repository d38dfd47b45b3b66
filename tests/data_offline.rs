//! The offline datasets prepared by `tools/setup.sh` (`data/mnist5k`, `data/digits`).
//! These tests FAIL (never skip) when `data/` is missing.

use std::path::PathBuf;

use rlal::data::{self, Dataset, Format, Loader, LoaderConfig, Normalize, OpenOptions, Transform};

fn data_dir(name: &str) -> PathBuf {
    let d = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("data").join(name);
    assert!(
        d.is_dir(),
        "offline dataset {} is missing: run tools/setup.sh first (it builds data/mnist5k and data/digits)",
        d.display()
    );
    d
}

fn check_set(name: &str, n_train: usize, n_test: usize, side: usize) {
    let dir = data_dir(name);
    assert_eq!(data::detect(&dir).unwrap(), Format::Idx);
    let pair = data::open_both(&dir, &OpenOptions::default()).unwrap();
    for (ds, n) in [(&pair.train, n_train), (&pair.test, n_test)] {
        let ds: &dyn Dataset = ds.as_ref();
        assert_eq!(ds.len(), n, "{}", ds.source().display());
        assert_eq!(ds.shape(), [1, side, side]);
        assert_eq!(ds.num_classes(), 10);
        data::check_model(ds, [1, side, side], 10).unwrap();
        let mut per_class = [0usize; 10];
        for &l in ds.labels() {
            per_class[l as usize] += 1;
        }
        assert!(per_class.iter().all(|&c| c > 0), "{name}: classes {per_class:?}");
        let (mut lo, mut hi, mut sum) = (u8::MAX, 0u8, 0u64);
        for i in 0..ds.len() {
            let s = ds.get(i).unwrap();
            assert_eq!(s.pixels.len(), side * side);
            lo = lo.min(*s.pixels.iter().min().unwrap());
            hi = hi.max(*s.pixels.iter().max().unwrap());
            sum += s.pixels.iter().map(|&p| p as u64).sum::<u64>();
        }
        assert_eq!((lo, hi), (0, 255), "{name}: pixel range {lo}..={hi}");
        let mean = sum as f64 / (ds.len() * side * side) as f64;
        assert!((10.0..128.0).contains(&mean), "{name}: mean pixel {mean}");
    }
    // The split rule of tools/prepare_data.py: every 5th image of a class is test.
    let count = |ds: &dyn Dataset| {
        let mut c = [0usize; 10];
        ds.labels().iter().for_each(|&l| c[l as usize] += 1);
        c
    };
    let (tr, te) = (count(pair.train.as_ref()), count(pair.test.as_ref()));
    for k in 0..10 {
        assert_eq!(te[k], (tr[k] + te[k]) / 5, "{name}: class {k}");
    }
}

#[test]
fn mnist5k_counts_shapes_classes_pixels() {
    check_set("mnist5k", 4000, 1000, 28);
}

#[test]
fn digits_counts_shapes_classes_pixels() {
    check_set("digits", 1442, 355, 8);
}

#[test]
fn mnist5k_holdout_and_loader() {
    let ds = data::open(&data_dir("mnist5k"), data::Split::Train, &OpenOptions::default()).unwrap();
    let (train, hold) = data::split_holdout(ds.as_ref(), 1000, 42).unwrap();
    assert_eq!((train.len(), hold.len()), (3000, 1000));
    let mut per_class = [0usize; 10];
    hold.iter().for_each(|&i| per_class[ds.labels()[i] as usize] += 1);
    assert_eq!(per_class, [100; 10]);
    let cfg = LoaderConfig { batch_size: 128, seed: 3, workers: 2, ..Default::default() };
    let loader =
        Loader::new(ds, train, Transform::train(Normalize::mnist(), 2, false), cfg).unwrap();
    let mut seen = 0;
    for b in loader.epoch(0) {
        let b = b.unwrap();
        assert_eq!(&b.shape[1..], &[1, 28, 28]);
        assert_eq!(b.data.len(), b.shape.iter().product::<usize>());
        assert!(b.data.iter().all(|v| v.is_finite()));
        seen += b.shape[0];
    }
    assert_eq!(seen, 3000);
}
