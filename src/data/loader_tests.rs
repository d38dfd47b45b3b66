//! Unit tests of the loader (included from `loader.rs`).

use super::*;
use crate::data::testutil::{mem, Flaky};
use crate::data::Normalize;

fn cfg(bs: usize, workers: usize) -> LoaderConfig {
    LoaderConfig {
        batch_size: bs,
        shuffle: true,
        drop_last: false,
        seed: 1234,
        workers,
        prefetch: 2,
    }
}

fn collect(l: &Loader, epoch: u64) -> Vec<Batch> {
    l.epoch(epoch).collect::<Result<Vec<_>, _>>().unwrap()
}

#[test]
fn same_seed_same_batches_with_or_without_prefetch() {
    let ds = mem(37, 3, 6, 5);
    let tf = Transform::train(Normalize::cifar10(), 2, true);
    let idx: Vec<usize> = (0..37).filter(|i| i % 5 != 0).collect();
    let sync = Loader::new(ds.clone(), idx.clone(), tf.clone(), cfg(8, 0)).unwrap();
    let want = collect(&sync, 3);
    assert_eq!(want.len(), 4);
    assert_eq!(want.iter().map(|b| b.shape[0]).collect::<Vec<_>>(), vec![8, 8, 8, 5]);
    for workers in [1, 2, 3, 7] {
        let l = Loader::new(ds.clone(), idx.clone(), tf.clone(), cfg(8, workers)).unwrap();
        assert_eq!(collect(&l, 3), want, "workers={workers}");
    }
    let again = Loader::new(ds.clone(), idx.clone(), tf.clone(), cfg(8, 0)).unwrap();
    assert_eq!(collect(&again, 3), want);
    assert_ne!(collect(&again, 4), want, "another epoch reshuffles");
    let mut c = cfg(8, 0);
    c.seed = 99;
    assert_ne!(collect(&Loader::new(ds, idx, tf, c).unwrap(), 3), want, "another seed");
}

#[test]
fn epoch_visits_each_index_once() {
    let ds = mem(20, 1, 2, 2);
    let idx = vec![3, 5, 7, 11, 13, 17, 19];
    let l = Loader::new(ds, idx.clone(), Transform::eval(Normalize::default()), cfg(3, 1)).unwrap();
    let mut seen: Vec<usize> = collect(&l, 0).into_iter().flat_map(|b| b.indices).collect();
    assert_eq!(seen, l.order(0));
    seen.sort();
    assert_eq!(seen, idx);
    assert_ne!(l.order(0), l.order(1));
}

#[test]
fn collation_layout_and_labels() {
    let ds = mem(5, 2, 2, 3);
    let mut c = cfg(2, 0);
    c.shuffle = false;
    let l = Loader::all(ds.clone(), Transform::eval(Normalize::default()), c).unwrap();
    let bs = collect(&l, 0);
    assert_eq!(bs.len(), 3);
    assert_eq!(bs[0].shape, [2, 2, 2, 3]);
    assert_eq!(bs[2].shape, [1, 2, 2, 3]);
    assert_eq!(bs[1].indices, vec![2, 3]);
    assert_eq!(bs[1].labels, vec![2, 3]);
    let s3 = ds.get(3).unwrap();
    let want: Vec<f32> = s3.pixels.iter().map(|&p| p as f32 / 255.0).collect();
    assert_eq!(want.len(), 12);
    for (a, b) in bs[1].data[12..24].iter().zip(&want) {
        assert!((a - b).abs() < 1e-6, "{a} vs {b}");
    }
}

#[test]
fn drop_last_and_resume() {
    let ds = mem(10, 1, 2, 2);
    let mut c = cfg(4, 2);
    c.drop_last = true;
    let tf = Transform::train(Normalize::default(), 1, true);
    let l = Loader::all(ds.clone(), tf.clone(), c.clone()).unwrap();
    assert_eq!(l.num_batches(), 2);
    let all = collect(&l, 5);
    assert_eq!(all.len(), 2);
    assert!(all.iter().all(|b| b.shape[0] == 4));
    let tail: Vec<Batch> = l.epoch_from(5, 1).collect::<Result<_, _>>().unwrap();
    assert_eq!(tail, all[1..].to_vec());
    assert_eq!(l.batch(5, 1).unwrap(), all[1]);
    assert_eq!(l.epoch_from(5, 9).count(), 0);
    c.drop_last = false;
    assert_eq!(Loader::all(ds, tf, c).unwrap().num_batches(), 3);
}

#[test]
fn early_drop_does_not_hang() {
    let ds = mem(200, 1, 4, 4);
    let l = Loader::all(ds, Transform::eval(Normalize::default()), cfg(2, 3)).unwrap();
    for _ in 0..5 {
        let mut it = l.epoch(0);
        assert!(it.next().unwrap().is_ok());
        assert_eq!(it.position(), 1);
        assert_eq!(it.size_hint(), (99, Some(99)));
    }
}

#[test]
fn errors_surface_once_then_stop() {
    for workers in [0, 1, 2] {
        let ds: Arc<dyn Dataset> = Arc::new(Flaky { labels: vec![0; 10], bad: 5 });
        let mut c = cfg(2, workers);
        c.shuffle = false;
        let l = Loader::all(ds, Transform::eval(Normalize::default()), c).unwrap();
        let rs: Vec<_> = l.epoch(0).collect();
        assert_eq!(rs.len(), 3, "workers={workers}");
        assert!(rs[0].is_ok() && rs[1].is_ok());
        let e = rs[2].as_ref().unwrap_err().to_string();
        assert!(e.contains("flaky-folder/5.png"), "{e}");
    }
}

#[test]
fn config_errors_name_dataset() {
    let ds = mem(4, 3, 2, 2);
    let tf = Transform::eval(Normalize::default());
    let e = Loader::all(ds.clone(), tf.clone(), cfg(0, 0)).unwrap_err().to_string();
    assert!(e.contains("mem") && e.contains("batch size"), "{e}");
    let e = Loader::new(ds.clone(), vec![0, 4], tf.clone(), cfg(2, 0)).unwrap_err();
    assert!(matches!(e, DataError::IndexOutOfRange { index: 4, len: 4, .. }));
    assert!(Loader::new(ds.clone(), vec![], tf, cfg(2, 0)).is_err());
    let e = Loader::all(ds, Transform::eval(Normalize::imagenet()), cfg(2, 0)).map(|_| ());
    assert!(e.is_ok());
    let ds1 = mem(4, 1, 2, 2);
    let e = Loader::all(ds1, Transform::eval(Normalize::imagenet()), cfg(2, 0))
        .unwrap_err()
        .to_string();
    assert!(e.contains("3 values for 1 channels"), "{e}");
}
