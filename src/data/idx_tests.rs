//! Unit tests of the IDX reader (included from `idx.rs`).

use super::*;
use crate::data::testutil::{small_images, write_idx_pair};
use crate::data::{open_both, Dataset, OpenOptions};

fn round_trip(gz: bool) {
    let t = tempfile::tempdir().unwrap();
    let px = small_images(6, 5, 4);
    let labels = [3u8, 0, 1, 2, 3, 1];
    write_idx_pair(t.path(), "train", 5, 4, &px, &labels, gz);
    let ds = open_idx(t.path(), Split::Train, None).unwrap();
    assert_eq!(ds.len(), 6);
    assert_eq!(ds.shape(), [1, 5, 4]);
    assert_eq!(ds.num_classes(), 4);
    assert_eq!(ds.labels(), &[3, 0, 1, 2, 3, 1]);
    for i in 0..6 {
        let s = ds.get(i).unwrap();
        assert_eq!(s.pixels, &px[i * 20..(i + 1) * 20]);
        assert_eq!(s.label, labels[i] as u32);
    }
    let e = ds.get(6).unwrap_err().to_string();
    assert!(e.contains("train-images-idx3-ubyte") && e.contains("index 6"), "{e}");
}

#[test]
fn round_trip_raw() {
    round_trip(false);
}

#[test]
fn round_trip_gz() {
    round_trip(true);
}

#[test]
fn raw_preferred_over_gz_and_gz_detected_by_magic() {
    let t = tempfile::tempdir().unwrap();
    write_idx_pair(t.path(), "train", 2, 2, &[1, 2, 3, 4], &[0], true);
    write_idx_pair(t.path(), "train", 2, 2, &[9, 9, 9, 9], &[1], false);
    let ds = open_idx(t.path(), Split::Train, None).unwrap();
    assert_eq!(ds.get(0).unwrap().pixels, vec![9, 9, 9, 9]);
    // A gzip stream under a raw name is still read.
    let g = t.path().join("g");
    write_idx_pair(&g, "t10k", 2, 2, &[5, 6, 7, 8], &[0], true);
    std::fs::rename(g.join("t10k-images-idx3-ubyte.gz"), g.join("t10k-images-idx3-ubyte")).unwrap();
    let ds = open_idx(&g, Split::Test, None).unwrap();
    assert_eq!(ds.get(0).unwrap().pixels, vec![5, 6, 7, 8]);
}

#[test]
fn wrong_magic_names_file() {
    let t = tempfile::tempdir().unwrap();
    write_idx_pair(t.path(), "train", 2, 2, &[0; 8], &[0, 1], false);
    // Swap: an image file where labels are expected.
    std::fs::copy(t.path().join(TRAIN_IMAGES), t.path().join(TRAIN_LABELS)).unwrap();
    let e = open_idx(t.path(), Split::Train, None).unwrap_err();
    assert!(matches!(e, DataError::BadMagic { found: 0x803, .. }), "{e:?}");
    let m = e.to_string();
    assert!(m.contains(TRAIN_LABELS) && m.contains("magic"), "{m}");
}

#[test]
fn truncated_names_file_and_sizes() {
    let t = tempfile::tempdir().unwrap();
    write_idx_pair(t.path(), "train", 3, 3, &[7; 18], &[0, 1], true);
    let p = t.path().join("train-images-idx3-ubyte.gz");
    let full = read_maybe_gz(&p).unwrap();
    let cut = &full[..full.len() - 5];
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(cut).unwrap();
    std::fs::write(&p, enc.finish().unwrap()).unwrap();
    let e = open_idx(t.path(), Split::Train, None).unwrap_err();
    assert!(matches!(e, DataError::Truncated { expected: 34, actual: 29, .. }), "{e:?}");
    let m = e.to_string();
    assert!(
        m.contains("train-images-idx3-ubyte.gz") && m.contains("34") && m.contains("29"),
        "{m}"
    );
    // Header itself cut short.
    std::fs::write(t.path().join(TRAIN_LABELS), [0, 0, 8, 1, 0]).unwrap();
    let e = read_labels(&t.path().join(TRAIN_LABELS)).unwrap_err();
    assert!(matches!(e, DataError::Truncated { expected: 8, actual: 5, .. }), "{e:?}");
    std::fs::write(t.path().join(TRAIN_LABELS), [0, 0]).unwrap();
    assert!(matches!(read_labels(&t.path().join(TRAIN_LABELS)), Err(DataError::Truncated { .. })));
    // Trailing garbage is an error too.
    let mut b = Vec::new();
    b.extend_from_slice(&LABELS_MAGIC.to_be_bytes());
    b.extend_from_slice(&1u32.to_be_bytes());
    b.extend_from_slice(&[0, 0]);
    std::fs::write(t.path().join(TRAIN_LABELS), b).unwrap();
    let e = read_labels(&t.path().join(TRAIN_LABELS)).unwrap_err().to_string();
    assert!(e.contains("trailing") && e.contains(TRAIN_LABELS), "{e}");
}

#[test]
fn corrupt_gzip_is_io_error_naming_file() {
    let t = tempfile::tempdir().unwrap();
    let p = t.path().join("x.gz");
    std::fs::write(&p, [0x1f, 0x8b, 8, 0, 1, 2, 3]).unwrap();
    let e = read_images(&p).unwrap_err();
    assert!(matches!(e, DataError::Io { .. }));
    assert!(e.to_string().contains("x.gz"));
}

#[test]
fn count_mismatch_names_both_files() {
    let t = tempfile::tempdir().unwrap();
    write_idx_pair(t.path(), "t10k", 2, 2, &[0; 12], &[0, 1, 2], false);
    write_labels(&t.path().join(TEST_LABELS), &[0, 1], false).unwrap();
    let e = open_idx(t.path(), Split::Test, None).unwrap_err();
    assert!(matches!(e, DataError::CountMismatch { n_images: 3, n_labels: 2, .. }), "{e:?}");
    let m = e.to_string();
    assert!(m.contains(TEST_IMAGES) && m.contains(TEST_LABELS), "{m}");
}

#[test]
fn label_out_of_range_names_label_file() {
    let t = tempfile::tempdir().unwrap();
    write_idx_pair(t.path(), "train", 1, 1, &[0, 0, 0], &[1, 12, 3], true);
    let e = open_idx(t.path(), Split::Train, Some(10)).unwrap_err();
    assert!(
        matches!(e, DataError::LabelOutOfRange { index: 1, label: 12, num_classes: 10, .. }),
        "{e:?}"
    );
    assert!(e.to_string().contains("train-labels-idx1-ubyte.gz"), "{e}");
    assert_eq!(open_idx(t.path(), Split::Train, None).unwrap().num_classes(), 13);
}

#[test]
fn missing_and_empty() {
    let t = tempfile::tempdir().unwrap();
    write_idx_pair(t.path(), "train", 2, 2, &[], &[], false);
    let e = open_idx(t.path(), Split::Test, None).unwrap_err();
    let m = e.to_string();
    assert!(matches!(e, DataError::Missing { .. }));
    assert!(m.contains("t10k-images-idx3-ubyte.gz") && m.contains("t10k-labels-idx1-ubyte"), "{m}");
    let e = open_idx(t.path(), Split::Train, None).unwrap_err();
    assert!(matches!(e, DataError::Empty { .. }), "{e:?}");
    assert!(e.to_string().contains(TRAIN_IMAGES));
}

#[test]
fn zero_size_and_overflowing_headers() {
    let t = tempfile::tempdir().unwrap();
    let p = t.path().join("i");
    let mut b = Vec::new();
    for v in [IMAGES_MAGIC, 1, 0, 5] {
        b.extend_from_slice(&v.to_be_bytes());
    }
    std::fs::write(&p, &b).unwrap();
    assert!(matches!(read_images(&p), Err(DataError::Malformed { .. })));
    b.clear();
    for v in [IMAGES_MAGIC, u32::MAX, u32::MAX, u32::MAX] {
        b.extend_from_slice(&v.to_be_bytes());
    }
    std::fs::write(&p, &b).unwrap();
    assert!(matches!(read_images(&p), Err(DataError::Malformed { .. })));
}

#[test]
fn pair_shares_class_count() {
    let t = tempfile::tempdir().unwrap();
    write_idx_pair(t.path(), "train", 2, 2, &[0; 8], &[0, 1], true);
    write_idx_pair(t.path(), "t10k", 2, 2, &[0; 8], &[4, 0], true);
    let p = open_both(t.path(), &OpenOptions::default()).unwrap();
    assert_eq!(p.train.num_classes(), 5);
    assert_eq!(p.test.num_classes(), 5);
    write_idx_pair(t.path(), "t10k", 3, 2, &[0; 12], &[4, 0], true);
    let e = open_both(t.path(), &OpenOptions::default()).unwrap_err().to_string();
    assert!(e.contains("t10k-images") && e.contains("3x2"), "{e}");
}
