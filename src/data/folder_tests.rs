//! Unit tests of the image-folder reader (included from `folder.rs`).

use super::*;
use crate::data::testutil::{rgb_image, save};
use crate::data::{open, open_both};

/// train/{cat,dog}, val/{cat,dog}: 6x4 PNGs in train, one JPEG in val/dog.
fn fixture() -> tempfile::TempDir {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    save(&d.join("train/dog/b.png"), &rgb_image(6, 4, 1));
    save(&d.join("train/dog/a.PNG"), &rgb_image(6, 4, 2));
    save(&d.join("train/cat/z.png"), &rgb_image(6, 4, 3));
    std::fs::write(d.join("train/cat/notes.txt"), "ignored").unwrap();
    std::fs::write(d.join("train/.DS_Store"), "ignored").unwrap();
    save(&d.join("val/dog/x.jpg"), &rgb_image(8, 8, 4));
    save(&d.join("val/cat/y.png"), &rgb_image(6, 4, 5));
    t
}

#[test]
fn lists_sorted_classes_and_files_lazily() {
    let t = fixture();
    let opts = OpenOptions { size: Some([4, 4]), ..Default::default() };
    let ds = FolderDataset::open(t.path(), Split::Train, &opts).unwrap();
    assert_eq!(ds.len(), 3);
    assert_eq!(ds.num_classes(), 2);
    assert_eq!(ds.class_names().unwrap(), &["cat".to_string(), "dog".to_string()]);
    assert_eq!(ds.labels(), &[0, 1, 1]);
    assert!(ds.path(1).ends_with("dog/a.PNG"));
    assert_eq!(ds.shape(), [3, 4, 4]);
    assert_eq!(ds.format(), Format::ImageFolder);
}

#[test]
fn center_crop_without_scaling_takes_middle_columns() {
    let t = fixture();
    let opts = OpenOptions { size: Some([4, 4]), ..Default::default() };
    let ds = FolderDataset::open(t.path(), Split::Train, &opts).unwrap();
    let s = ds.get(0).unwrap(); // cat/z.png, seed 3, 6x4 → central 4x4 = columns 1..5
    let img = rgb_image(6, 4, 3);
    assert_eq!(s.label, 0);
    assert_eq!(s.pixels.len(), 3 * 16);
    for y in 0..4 {
        for x in 0..4 {
            let p = img.get_pixel(x as u32 + 1, y as u32);
            for c in 0..3 {
                assert_eq!(s.pixels[c * 16 + y * 4 + x], p[c], "c{c} y{y} x{x}");
            }
        }
    }
}

#[test]
fn stretch_at_native_size_is_identity_and_luma_works() {
    let t = fixture();
    let opts =
        OpenOptions { size: Some([4, 6]), resize: ResizeMode::Stretch, ..Default::default() };
    let ds = FolderDataset::open(t.path(), Split::Train, &opts).unwrap();
    let s = ds.get(2).unwrap(); // dog/b.png
    let img = rgb_image(6, 4, 1);
    let plane = 24;
    for (i, p) in img.pixels().enumerate() {
        assert_eq!([s.pixels[i], s.pixels[plane + i], s.pixels[2 * plane + i]], p.0);
    }
    let luma = OpenOptions { channels: Some(1), ..opts };
    let ds = FolderDataset::open(t.path(), Split::Train, &luma).unwrap();
    assert_eq!(ds.shape(), [1, 4, 6]);
    let g = ds.get(2).unwrap().pixels;
    let want = image::DynamicImage::ImageRgb8(img).to_luma8();
    assert_eq!(g, want.into_raw());
}

#[test]
fn resizes_to_requested_size() {
    let t = fixture();
    for mode in [
        ResizeMode::Stretch,
        ResizeMode::CenterCrop { crop_fraction: 0.875 },
        ResizeMode::default(),
    ] {
        let opts = OpenOptions { size: Some([3, 5]), resize: mode, ..Default::default() };
        let p = open_both(t.path(), &opts).unwrap();
        assert_eq!(p.test.shape(), [3, 3, 5]);
        assert_eq!(p.test.labels(), &[0, 1]);
        for i in 0..2 {
            assert_eq!(p.test.get(i).unwrap().pixels.len(), 45);
        }
    }
}

#[test]
fn jpeg_decodes_close_to_original() {
    let t = fixture();
    let opts = OpenOptions { size: Some([8, 8]), ..Default::default() };
    let ds = FolderDataset::open(t.path(), Split::Test, &opts).unwrap();
    assert!(ds.split_dir().ends_with("val"));
    let s = ds.get(1).unwrap(); // val/dog/x.jpg
    assert_eq!(s.label, 1);
    let img = rgb_image(8, 8, 4);
    let mean_err: f64 = img
        .pixels()
        .enumerate()
        .map(|(i, p)| {
            (0..3).map(|c| (s.pixels[c * 64 + i] as f64 - p[c] as f64).abs()).sum::<f64>()
        })
        .sum::<f64>()
        / (3.0 * 64.0);
    assert!(mean_err < 20.0, "mean abs error {mean_err}");
}

#[test]
fn default_size_is_first_train_image() {
    let t = fixture();
    let p = open_both(t.path(), &OpenOptions::default()).unwrap();
    assert_eq!(p.train.shape(), [3, 4, 6]);
    assert_eq!(p.test.shape(), [3, 4, 6]);
    assert_eq!(p.test.get(1).unwrap().pixels.len(), 72);
    let test_only = open(t.path(), Split::Test, &OpenOptions::default()).unwrap();
    assert_eq!(test_only.shape(), [3, 4, 6]);
}

#[test]
fn corrupt_image_error_names_file() {
    let t = fixture();
    std::fs::write(t.path().join("train/dog/c.jpg"), b"\xff\xd8\xffnot really a jpeg").unwrap();
    let opts = OpenOptions { size: Some([4, 4]), ..Default::default() };
    let ds = FolderDataset::open(t.path(), Split::Train, &opts).unwrap();
    assert_eq!(ds.len(), 4);
    let e = ds.get(3).unwrap_err();
    assert!(matches!(e, DataError::Decode { .. }), "{e:?}");
    assert!(e.to_string().contains("c.jpg"), "{e}");
    std::fs::write(t.path().join("train/dog/d.png"), b"garbage").unwrap();
    let ds = FolderDataset::open(t.path(), Split::Train, &opts).unwrap();
    let e = ds.get(4).unwrap_err().to_string();
    assert!(e.contains("d.png"), "{e}");
    let e = ds.get(99).unwrap_err().to_string();
    assert!(e.contains("index 99"), "{e}");
}

#[test]
fn layout_errors() {
    let t = fixture();
    let opts = OpenOptions { size: Some([4, 4]), ..Default::default() };
    std::fs::create_dir_all(t.path().join("val/bird")).unwrap();
    save(&t.path().join("val/bird/q.png"), &rgb_image(2, 2, 0));
    let e = FolderDataset::open(t.path(), Split::Test, &opts).unwrap_err().to_string();
    assert!(e.contains("bird") && e.contains("not among"), "{e}");

    std::fs::create_dir_all(t.path().join("train/emu")).unwrap();
    let e = FolderDataset::open(t.path(), Split::Train, &opts).unwrap_err();
    assert!(matches!(e, DataError::Empty { .. }) && e.to_string().contains("emu"), "{e}");

    let u = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(u.path().join("train/a")).unwrap();
    let e = FolderDataset::open(u.path(), Split::Test, &opts).unwrap_err().to_string();
    assert!(e.contains("val/<class>") && e.contains("test/<class>"), "{e}");

    let bad = OpenOptions { channels: Some(4), ..opts.clone() };
    assert!(matches!(
        FolderDataset::open(t.path(), Split::Train, &bad),
        Err(DataError::Config { .. })
    ));
    let bad = OpenOptions { resize: ResizeMode::CenterCrop { crop_fraction: 0.0 }, ..opts };
    assert!(matches!(
        FolderDataset::open(t.path(), Split::Train, &bad),
        Err(DataError::Config { .. })
    ));
}

#[test]
fn random_resized_boxes_follow_torchvision_rules() {
    let mut rng = Rng::new(3);
    let (iw, ih) = (500u32, 375u32);
    let mut areas = Vec::new();
    for _ in 0..2000 {
        let [l, t, w, h] = random_resized_box(iw, ih, [0.08, 1.0], &mut rng);
        assert!(l >= 0.0 && t >= 0.0 && w >= 1.0 && h >= 1.0);
        assert!(l + w <= iw as f64 && t + h <= ih as f64, "{l} {t} {w} {h}");
        let frac = w * h / (iw * ih) as f64;
        let ratio = w / h;
        // Rounding to whole pixels moves area and ratio a little; the fallback is the whole image.
        if frac < 0.999 {
            assert!((0.075..=1.01).contains(&frac), "area fraction {frac}");
            assert!((0.74..=1.35).contains(&ratio), "aspect {ratio}");
        }
        areas.push(frac);
    }
    let mean = areas.iter().sum::<f64>() / areas.len() as f64;
    assert!(mean > 0.35 && mean < 0.65, "mean area fraction {mean} (uniform in [0.08, 1] is 0.54)");
    // Same seed, same boxes.
    let (mut a, mut b) = (Rng::new(9), Rng::new(9));
    assert_eq!(
        random_resized_box(iw, ih, [0.3, 0.5], &mut a),
        random_resized_box(iw, ih, [0.3, 0.5], &mut b)
    );
    // A very narrow image falls back to the central crop of ratio 3/4 .. 4/3 when no try fits.
    let [_, _, w, h] = random_resized_box(4, 400, [0.99, 1.0], &mut rng);
    assert!(w <= 4.0 && (h - (w / 0.75).round()).abs() <= 1.0, "{w}x{h}");
}

#[test]
fn random_crops_are_resized_to_the_dataset_size() {
    let t = fixture();
    let opts = OpenOptions { size: Some([5, 5]), ..Default::default() };
    let ds = FolderDataset::open(t.path(), Split::Train, &opts).unwrap();
    let (mut out, mut rng) = (Vec::new(), Rng::new(1));
    let label = ds.read_random_crop(1, [0.08, 1.0], &mut rng, &mut out).unwrap();
    assert_eq!((label, out.len()), (Some(1), 3 * 5 * 5));
    assert!(ds.read_random_crop(7, [0.08, 1.0], &mut rng, &mut out).is_err());
}
