//! MNIST IDX reader (and a small writer, for fixtures and tools).
//!
//! Files (raw or gzip-compressed; gzip is recognised by its magic bytes, the `.gz`
//! name only decides which file is picked when both exist — the raw one wins):
//! * images: big-endian `0x00000803`, count, rows, cols, then `count*rows*cols` bytes;
//! * labels: big-endian `0x00000801`, count, then `count` bytes.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use super::detect::plain_or_gz;
use super::{DataError, Format, InMemoryDataset, Split};

/// Training images file name (without `.gz`).
pub const TRAIN_IMAGES: &str = "train-images-idx3-ubyte";
/// Training labels file name (without `.gz`).
pub const TRAIN_LABELS: &str = "train-labels-idx1-ubyte";
/// Test images file name (without `.gz`).
pub const TEST_IMAGES: &str = "t10k-images-idx3-ubyte";
/// Test labels file name (without `.gz`).
pub const TEST_LABELS: &str = "t10k-labels-idx1-ubyte";

/// Magic number of an unsigned-byte 3-d IDX file (images).
pub const IMAGES_MAGIC: u32 = 0x0000_0803;
/// Magic number of an unsigned-byte 1-d IDX file (labels).
pub const LABELS_MAGIC: u32 = 0x0000_0801;

/// IDX images: `count` images of `rows x cols` bytes, row-major, back to back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdxImages {
    /// Number of images.
    pub count: usize,
    /// Rows (height).
    pub rows: usize,
    /// Columns (width).
    pub cols: usize,
    /// `count*rows*cols` pixel bytes.
    pub pixels: Vec<u8>,
}

/// Reads a whole file, gunzipping it when it starts with the gzip magic `1f 8b`.
pub fn read_maybe_gz(path: &Path) -> Result<Vec<u8>, DataError> {
    let raw = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::with_capacity(raw.len() * 4);
        flate2::read::MultiGzDecoder::new(&raw[..])
            .read_to_end(&mut out)
            .map_err(|e| DataError::io(path, e))?;
        Ok(out)
    } else {
        Ok(raw)
    }
}

fn be_u32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn check_header(
    path: &Path,
    b: &[u8],
    magic: u32,
    header: usize,
    what: &'static str,
) -> Result<(), DataError> {
    if b.len() < 4 {
        return Err(DataError::Truncated {
            path: path.into(),
            expected: header as u64,
            actual: b.len() as u64,
        });
    }
    let found = be_u32(b, 0);
    if found != magic {
        return Err(DataError::BadMagic { path: path.into(), expected: magic, found, what });
    }
    if b.len() < header {
        return Err(DataError::Truncated {
            path: path.into(),
            expected: header as u64,
            actual: b.len() as u64,
        });
    }
    Ok(())
}

fn check_body(path: &Path, len: usize, expected: u64) -> Result<(), DataError> {
    let actual = len as u64;
    if actual < expected {
        return Err(DataError::Truncated { path: path.into(), expected, actual });
    }
    if actual > expected {
        return Err(DataError::Malformed {
            path: path.into(),
            reason: format!(
                "{} trailing bytes after the {expected} the header announces",
                actual - expected
            ),
        });
    }
    Ok(())
}

/// Parses an IDX image file (raw or gzip).
pub fn read_images(path: &Path) -> Result<IdxImages, DataError> {
    let mut b = read_maybe_gz(path)?;
    check_header(path, &b, IMAGES_MAGIC, 16, "IDX unsigned-byte 3-d array (images)")?;
    let (count, rows, cols) = (be_u32(&b, 4) as u64, be_u32(&b, 8) as u64, be_u32(&b, 12) as u64);
    if rows == 0 || cols == 0 {
        return Err(DataError::Malformed {
            path: path.into(),
            reason: format!("image size {rows}x{cols} has a zero side"),
        });
    }
    let expected = count
        .checked_mul(rows)
        .and_then(|x| x.checked_mul(cols))
        .and_then(|x| x.checked_add(16))
        .ok_or_else(|| DataError::Malformed {
            path: path.into(),
            reason: format!("header announces {count} images of {rows}x{cols}, which overflows"),
        })?;
    check_body(path, b.len(), expected)?;
    b.drain(..16);
    Ok(IdxImages { count: count as usize, rows: rows as usize, cols: cols as usize, pixels: b })
}

/// Parses an IDX label file (raw or gzip).
pub fn read_labels(path: &Path) -> Result<Vec<u8>, DataError> {
    let mut b = read_maybe_gz(path)?;
    check_header(path, &b, LABELS_MAGIC, 8, "IDX unsigned-byte 1-d array (labels)")?;
    let count = be_u32(&b, 4) as u64;
    check_body(path, b.len(), 8 + count)?;
    b.drain(..8);
    Ok(b)
}

fn split_names(split: Split) -> (&'static str, &'static str) {
    match split {
        Split::Train => (TRAIN_IMAGES, TRAIN_LABELS),
        Split::Test => (TEST_IMAGES, TEST_LABELS),
    }
}

/// Finds the image and label files of `split` in `dir` (raw preferred over `.gz`).
pub fn split_files(dir: &Path, split: Split) -> Result<(PathBuf, PathBuf), DataError> {
    let (img, lab) = split_names(split);
    match (plain_or_gz(dir, img), plain_or_gz(dir, lab)) {
        (Some(i), Some(l)) => Ok((i, l)),
        (i, l) => {
            let mut looked_for = Vec::new();
            if i.is_none() {
                looked_for.push(format!("{img} or {img}.gz"));
            }
            if l.is_none() {
                looked_for.push(format!("{lab} or {lab}.gz"));
            }
            Err(DataError::Missing {
                path: dir.into(),
                what: format!("MNIST IDX {split} files"),
                looked_for,
            })
        }
    }
}

/// Reads one split's images and labels, checking the counts agree.
fn read_split(
    dir: &Path,
    split: Split,
) -> Result<(PathBuf, PathBuf, IdxImages, Vec<u8>), DataError> {
    let (ip, lp) = split_files(dir, split)?;
    let images = read_images(&ip)?;
    let labels = read_labels(&lp)?;
    if images.count != labels.len() {
        return Err(DataError::CountMismatch {
            images: ip,
            labels: lp,
            n_images: images.count,
            n_labels: labels.len(),
        });
    }
    if images.count == 0 {
        return Err(DataError::Empty { path: ip, what: "IDX image file".into() });
    }
    Ok((ip, lp, images, labels))
}

fn build(
    ip: PathBuf,
    lp: PathBuf,
    im: IdxImages,
    labels: Vec<u8>,
    num_classes: usize,
) -> Result<InMemoryDataset, DataError> {
    let labels: Vec<u32> = labels.into_iter().map(u32::from).collect();
    InMemoryDataset::new(
        Format::Idx,
        ip,
        lp,
        [1, im.rows, im.cols],
        im.pixels,
        labels,
        num_classes,
        None,
    )
}

fn max_label(l: &[u8]) -> usize {
    l.iter().copied().max().map_or(0, |m| m as usize + 1)
}

/// Opens one split of an IDX dataset in `dir`.
///
/// `num_classes`: labels must be below it; `None` uses the largest label + 1.
pub fn open_idx(
    dir: &Path,
    split: Split,
    num_classes: Option<usize>,
) -> Result<InMemoryDataset, DataError> {
    let (ip, lp, im, labels) = read_split(dir, split)?;
    let k = num_classes.unwrap_or_else(|| max_label(&labels));
    build(ip, lp, im, labels, k)
}

/// Opens both splits; without `num_classes` the class count is the largest label
/// of either split + 1. Errors if the image sizes of the splits differ.
pub fn open_idx_pair(
    dir: &Path,
    num_classes: Option<usize>,
) -> Result<(InMemoryDataset, InMemoryDataset), DataError> {
    let (ip, lp, im, labels) = read_split(dir, Split::Train)?;
    let (tip, tlp, tim, tlabels) = read_split(dir, Split::Test)?;
    if (im.rows, im.cols) != (tim.rows, tim.cols) {
        return Err(DataError::Malformed {
            path: tip,
            reason: format!(
                "test images are {}x{} but {} has {}x{}",
                tim.rows,
                tim.cols,
                ip.display(),
                im.rows,
                im.cols
            ),
        });
    }
    let k = num_classes.unwrap_or_else(|| max_label(&labels).max(max_label(&tlabels)));
    Ok((build(ip, lp, im, labels, k)?, build(tip, tlp, tim, tlabels, k)?))
}

fn write_file(path: &Path, bytes: &[u8], gz: bool) -> Result<(), DataError> {
    let io = |e| DataError::io(path, e);
    let f = std::fs::File::create(path).map_err(io)?;
    if gz {
        let mut enc = flate2::write::GzEncoder::new(f, flate2::Compression::default());
        enc.write_all(bytes).map_err(io)?;
        enc.finish().map_err(io)?;
    } else {
        let mut f = f;
        f.write_all(bytes).map_err(io)?;
    }
    Ok(())
}

/// Writes an IDX image file (`pixels.len()` must be `count*rows*cols`); gzip if `gz`.
pub fn write_images(
    path: &Path,
    rows: usize,
    cols: usize,
    pixels: &[u8],
    gz: bool,
) -> Result<(), DataError> {
    let per = rows * cols;
    if per == 0 || pixels.len() % per != 0 {
        return Err(DataError::Config {
            path: path.into(),
            reason: format!("{} bytes is not a whole number of {rows}x{cols} images", pixels.len()),
        });
    }
    let mut b = Vec::with_capacity(16 + pixels.len());
    for v in [IMAGES_MAGIC, (pixels.len() / per) as u32, rows as u32, cols as u32] {
        b.extend_from_slice(&v.to_be_bytes());
    }
    b.extend_from_slice(pixels);
    write_file(path, &b, gz)
}

/// Writes an IDX label file; gzip if `gz`.
pub fn write_labels(path: &Path, labels: &[u8], gz: bool) -> Result<(), DataError> {
    let mut b = Vec::with_capacity(8 + labels.len());
    b.extend_from_slice(&LABELS_MAGIC.to_be_bytes());
    b.extend_from_slice(&(labels.len() as u32).to_be_bytes());
    b.extend_from_slice(labels);
    write_file(path, &b, gz)
}

#[cfg(test)]
#[path = "idx_tests.rs"]
mod tests;
