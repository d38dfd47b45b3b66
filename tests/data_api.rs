//! End-to-end use of the public `rlal::data` API on fixtures written to a tempdir.

use std::path::Path;

use rlal::data::{
    self, DataError, Loader, LoaderConfig, Normalize, OpenOptions, ResizeMode, Split, Transform,
};
use rlal::rng::Rng;

fn write_folder(root: &Path) {
    let mut rng = Rng::new(5);
    for (split, per_class) in [("train", 6), ("val", 2)] {
        for class in ["ant", "bee", "cow"] {
            let d = root.join(split).join(class);
            std::fs::create_dir_all(&d).unwrap();
            for i in 0..per_class {
                let (w, h) = (10 + rng.below(12) as u32, 10 + rng.below(12) as u32);
                let img = image::RgbImage::from_fn(w, h, |_, _| {
                    image::Rgb([rng.below(256) as u8, rng.below(256) as u8, rng.below(256) as u8])
                });
                let ext = if i % 2 == 0 { "png" } else { "jpg" };
                img.save(d.join(format!("{i:03}.{ext}"))).unwrap();
            }
        }
    }
}

#[test]
fn image_folder_pipeline_is_deterministic() {
    let t = tempfile::tempdir().unwrap();
    write_folder(t.path());
    assert_eq!(data::detect(t.path()).unwrap(), data::Format::ImageFolder);
    let opts =
        OpenOptions { size: Some([8, 8]), resize: ResizeMode::default(), ..Default::default() };
    let pair = data::open_both(t.path(), &opts).unwrap();
    assert_eq!((pair.train.len(), pair.test.len()), (18, 6));
    data::check_model(pair.train.as_ref(), [3, 8, 8], 3).unwrap();
    let e = data::check_input(pair.train.as_ref(), [1, 8, 8]).unwrap_err();
    assert!(matches!(e, DataError::ShapeMismatch { .. }));
    assert!(e.to_string().contains("train"), "{e}");

    let (train, hold) = data::split_holdout(pair.train.as_ref(), 3, 1).unwrap();
    assert_eq!((train.len(), hold.len()), (15, 3));
    let labels: Vec<u32> = hold.iter().map(|&i| pair.train.labels()[i]).collect();
    assert_eq!(labels, vec![0, 1, 2]);

    let tf = Transform::train(Normalize::imagenet(), 1, true);
    let run = |workers| {
        let cfg =
            LoaderConfig { batch_size: 4, seed: 11, workers, prefetch: 2, ..Default::default() };
        let l = Loader::new(pair.train.clone(), train.clone(), tf.clone(), cfg).unwrap();
        l.epoch(2).collect::<Result<Vec<_>, _>>().unwrap()
    };
    let a = run(0);
    assert_eq!(a.len(), 4);
    assert_eq!(a[3].shape, [3, 3, 8, 8]);
    assert_eq!(run(2), a);
    assert_eq!(run(3), a);

    // Data-parallel shards: the ranks' batches b, in rank order, are the one-process
    // batch b (same samples, same augmentation), for 2 and 3 ranks; 15 = 3x4 + 3,
    // so with 4 ranks the last global batch (3 images) is dropped.
    let cfg = LoaderConfig { batch_size: 4, seed: 11, workers: 1, ..Default::default() };
    let whole = Loader::new(pair.train.clone(), train.clone(), tf.clone(), cfg).unwrap();
    for world in [2, 3, 4] {
        let shards: Vec<Vec<_>> = (0..world)
            .map(|r| whole.sharded(r, world).epoch(2).collect::<Result<Vec<_>, _>>().unwrap())
            .collect();
        let nb = if world == 4 { 3 } else { 4 };
        for (b, one) in a.iter().enumerate().take(nb) {
            let data: Vec<f32> = shards.iter().flat_map(|s| s[b].data.clone()).collect();
            let labels: Vec<i64> = shards.iter().flat_map(|s| s[b].labels.clone()).collect();
            assert_eq!((&data, &labels), (&one.data, &one.labels), "{world} ranks, batch {b}");
            assert!(shards.iter().all(|s| s[b].global == one.labels.len()));
        }
        assert!(shards.iter().all(|s| s.len() == nb), "{world} ranks");
    }
}

#[test]
fn idx_written_with_public_writer_reads_back() {
    let t = tempfile::tempdir().unwrap();
    let px: Vec<u8> = (0..=255).cycle().take(4 * 9).collect();
    data::idx::write_images(&t.path().join("t10k-images-idx3-ubyte.gz"), 3, 3, &px, true).unwrap();
    data::idx::write_labels(&t.path().join("t10k-labels-idx1-ubyte.gz"), &[1, 0, 1, 0], true)
        .unwrap();
    let ds = data::open(t.path(), Split::Test, &OpenOptions::default()).unwrap();
    assert_eq!(ds.shape(), [1, 3, 3]);
    assert_eq!(ds.get(3).unwrap().pixels, px[27..36].to_vec());
    let e = data::open(t.path(), Split::Train, &OpenOptions::default()).unwrap_err();
    assert!(e.to_string().contains("train-images-idx3-ubyte"), "{e}");
}
