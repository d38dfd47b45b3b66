//! Fixture writers shared by the unit tests of `data`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::data::{DataError, Dataset, Format, InMemoryDataset};

/// `n` deterministic single-channel images of `h x w` (distinct per image).
pub fn small_images(n: usize, h: usize, w: usize) -> Vec<u8> {
    (0..n * h * w).map(|i| ((i * 7 + i / (h * w) * 13) % 256) as u8).collect()
}

/// Writes `<prefix>-images-idx3-ubyte[.gz]` and `<prefix>-labels-idx1-ubyte[.gz]` in `dir`.
pub fn write_idx_pair(
    dir: &Path,
    prefix: &str,
    h: usize,
    w: usize,
    pixels: &[u8],
    labels: &[u8],
    gz: bool,
) {
    std::fs::create_dir_all(dir).unwrap();
    let ext = if gz { ".gz" } else { "" };
    crate::data::idx::write_images(
        &dir.join(format!("{prefix}-images-idx3-ubyte{ext}")),
        h,
        w,
        pixels,
        gz,
    )
    .unwrap();
    crate::data::idx::write_labels(
        &dir.join(format!("{prefix}-labels-idx1-ubyte{ext}")),
        labels,
        gz,
    )
    .unwrap();
}

/// An RGB test image whose pixel (x, y) is `(x*40+seed, y*40, seed*3)` (wrapping).
pub fn rgb_image(w: u32, h: u32, seed: u8) -> image::RgbImage {
    image::RgbImage::from_fn(w, h, |x, y| {
        image::Rgb([
            (x as u8).wrapping_mul(40).wrapping_add(seed),
            (y as u8).wrapping_mul(40),
            seed.wrapping_mul(3),
        ])
    })
}

/// Saves `img` at `path`, format from the extension (png / jpg), creating folders.
pub fn save(path: &Path, img: &image::RgbImage) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    img.save(path).unwrap();
}

/// An in-memory dataset of `n` samples `[c, h, w]` with labels `i % 4` (4 classes),
/// sourced from the pseudo-path `mem`.
pub fn mem(n: usize, c: usize, h: usize, w: usize) -> Arc<dyn Dataset> {
    let px: Vec<u8> = (0..n * c * h * w).map(|i| (i * 31 % 251) as u8).collect();
    let labels: Vec<u32> = (0..n as u32).map(|i| i % 4).collect();
    let p = PathBuf::from("mem");
    Arc::new(
        InMemoryDataset::new(Format::Idx, p.clone(), p, [c, h, w], px, labels, 4, None).unwrap(),
    )
}

/// A dataset whose sample `bad` fails to load.
#[derive(Debug)]
pub struct Flaky {
    pub labels: Vec<u32>,
    pub bad: usize,
}

impl Dataset for Flaky {
    fn format(&self) -> Format {
        Format::ImageFolder
    }
    fn len(&self) -> usize {
        self.labels.len()
    }
    fn shape(&self) -> [usize; 3] {
        [1, 1, 1]
    }
    fn num_classes(&self) -> usize {
        1
    }
    fn labels(&self) -> &[u32] {
        &self.labels
    }
    fn source(&self) -> &Path {
        Path::new("flaky-folder")
    }
    fn read_into(&self, i: usize, out: &mut Vec<u8>) -> Result<u32, DataError> {
        if i == self.bad {
            return Err(DataError::Malformed {
                path: format!("flaky-folder/{i}.png").into(),
                reason: "bad".into(),
            });
        }
        out.clear();
        out.push(i as u8);
        Ok(0)
    }
}
