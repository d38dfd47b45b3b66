//! ImageFolder datasets: `DIR/train/<class>/*.png|jpg`, `DIR/val/<class>/...`
//! (or `DIR/test/<class>/...`), decoded lazily, one file per [`Dataset::read_into`].
//!
//! Classes are the sub-folders of `train/` sorted by name (byte order), numbered
//! from 0; files within a class are sorted by name. Files whose extension is not
//! `png`, `jpg` or `jpeg` (any case) and hidden entries (`.name`) are ignored.
//! Images are converted to RGB (alpha dropped) or luma, then brought to the target
//! size by [`ResizeMode`] with a bilinear (triangle) filter.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use crate::rng::Rng;

use super::{DataError, Dataset, Format, OpenOptions, Split};

/// Split folder names recognised by detection (`train`, then `val` or `test`).
pub const SPLIT_DIRS: [&str; 3] = ["train", "val", "test"];
/// Image file extensions read (case-insensitive).
pub const IMAGE_EXTENSIONS: [&str; 3] = ["png", "jpg", "jpeg"];

/// How a folder image is brought to the requested `H x W`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ResizeMode {
    /// Keep the aspect ratio: scale the image so it just covers
    /// `(H / crop_fraction) x (W / crop_fraction)` (for a square target: shorter side
    /// = `H / crop_fraction`), then take the central `H x W` window.
    /// `crop_fraction = 1.0` (the default) covers the target exactly;
    /// `0.875` at 224 is torchvision's `Resize(256) + CenterCrop(224)`.
    CenterCrop {
        /// In `(0, 1]`.
        crop_fraction: f32,
    },
    /// Resize straight to `H x W`, ignoring the aspect ratio.
    Stretch,
}

impl Default for ResizeMode {
    fn default() -> Self {
        ResizeMode::CenterCrop { crop_fraction: 1.0 }
    }
}

/// A lazily decoded image-folder split. Holds only file names and labels.
#[derive(Debug, Clone)]
pub struct FolderDataset {
    split_dir: PathBuf,
    class_dirs: Vec<OsString>,
    class_names: Vec<String>,
    files: Vec<OsString>,
    labels: Vec<u32>,
    shape: [usize; 3],
    resize: ResizeMode,
}

fn hidden(name: &OsString) -> bool {
    name.to_string_lossy().starts_with('.')
}

fn read_dir_sorted(dir: &Path) -> Result<Vec<(OsString, PathBuf, bool)>, DataError> {
    let rd = std::fs::read_dir(dir).map_err(|e| DataError::io(dir, e))?;
    let mut out = Vec::new();
    for e in rd {
        let e = e.map_err(|e| DataError::io(dir, e))?;
        let name = e.file_name();
        if hidden(&name) {
            continue;
        }
        let path = e.path();
        let is_dir = path.is_dir(); // follows symlinks
        out.push((name, path, is_dir));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// Sorted class folder names of a split folder.
pub fn list_classes(split_dir: &Path) -> Result<Vec<OsString>, DataError> {
    let classes: Vec<OsString> =
        read_dir_sorted(split_dir)?.into_iter().filter(|e| e.2).map(|e| e.0).collect();
    if classes.is_empty() {
        return Err(DataError::Empty {
            path: split_dir.into(),
            what: "image folder (no class sub-folders)".into(),
        });
    }
    Ok(classes)
}

fn is_image(name: &OsString) -> bool {
    let n = name.to_string_lossy();
    n.rsplit_once('.')
        .is_some_and(|(_, ext)| IMAGE_EXTENSIONS.iter().any(|e| e.eq_ignore_ascii_case(ext)))
}

/// The folder holding `split` (`train/`; `val/`, else `test/`).
pub fn split_dir(dir: &Path, split: Split) -> Result<PathBuf, DataError> {
    let names: &[&str] = match split {
        Split::Train => &["train"],
        Split::Test => &["val", "test"],
    };
    names.iter().map(|n| dir.join(n)).find(|p| p.is_dir()).ok_or_else(|| DataError::Missing {
        path: dir.into(),
        what: format!("image-folder {split} split"),
        looked_for: names.iter().map(|n| format!("{n}/<class>/*.png|jpg")).collect(),
    })
}

impl FolderDataset {
    /// Lists `split` of the image folder `dir` (no image is decoded, except the first
    /// one's header when `opts.size` is `None`).
    pub fn open(dir: &Path, split: Split, opts: &OpenOptions) -> Result<Self, DataError> {
        let sdir = split_dir(dir, split)?;
        let channels = opts.channels.unwrap_or(3);
        if channels != 1 && channels != 3 {
            return Err(DataError::Config {
                path: sdir,
                reason: format!("image folders give 1 or 3 channels, not {channels}"),
            });
        }
        if let ResizeMode::CenterCrop { crop_fraction: f } = opts.resize {
            if !(f > 0.0 && f <= 1.0) {
                return Err(DataError::Config {
                    path: sdir,
                    reason: format!("crop_fraction {f} is not in (0, 1]"),
                });
            }
        }
        let train_dir = dir.join("train");
        let class_dirs =
            if train_dir.is_dir() { list_classes(&train_dir)? } else { list_classes(&sdir)? };
        let mut files = Vec::new();
        let mut labels = Vec::new();
        for (name, path, is_dir) in read_dir_sorted(&sdir)? {
            if !is_dir {
                continue;
            }
            let Some(label) = class_dirs.iter().position(|c| *c == name) else {
                return Err(DataError::Malformed {
                    path,
                    reason: format!(
                        "class folder is not among the {} classes of {}",
                        class_dirs.len(),
                        train_dir.display()
                    ),
                });
            };
            let before = files.len();
            for (fname, _, fdir) in read_dir_sorted(&path)? {
                if !fdir && is_image(&fname) {
                    files.push(fname);
                    labels.push(label as u32);
                }
            }
            if files.len() == before {
                return Err(DataError::Empty {
                    path,
                    what: "class folder (no .png/.jpg/.jpeg files)".into(),
                });
            }
        }
        if files.is_empty() {
            return Err(DataError::Empty { path: sdir, what: "image folder".into() });
        }
        let mut ds = FolderDataset {
            split_dir: sdir,
            class_names: class_dirs.iter().map(|c| c.to_string_lossy().into_owned()).collect(),
            class_dirs,
            files,
            labels,
            shape: [channels, 0, 0],
            resize: opts.resize,
        };
        let [h, w] = match opts.size {
            Some(s) => s,
            None => {
                // First image of train/ when it exists, so both splits agree.
                let first = if split == Split::Test && train_dir.is_dir() {
                    first_image(&train_dir.join(&ds.class_dirs[0]))?
                } else {
                    ds.path(0)
                };
                image_dims(&first)?
            }
        };
        if h == 0 || w == 0 {
            return Err(DataError::Config {
                path: ds.split_dir,
                reason: format!("image size {h}x{w} has a zero side"),
            });
        }
        ds.shape = [channels, h, w];
        Ok(ds)
    }

    /// The split folder (`DIR/train`, `DIR/val` or `DIR/test`).
    pub fn split_dir(&self) -> &Path {
        &self.split_dir
    }

    /// Number of image files.
    pub fn num_files(&self) -> usize {
        self.files.len()
    }

    /// Path of sample `i`'s file (panics if `i >= len()`; see [`Dataset::len`]).
    pub fn path(&self, i: usize) -> PathBuf {
        self.split_dir.join(&self.class_dirs[self.labels[i] as usize]).join(&self.files[i])
    }

    /// How images are resized.
    pub fn resize_mode(&self) -> ResizeMode {
        self.resize
    }
}

/// The first image file (by name) of a class folder.
fn first_image(class_dir: &Path) -> Result<PathBuf, DataError> {
    read_dir_sorted(class_dir)?
        .into_iter()
        .find(|(n, _, d)| !d && is_image(n))
        .map(|e| e.1)
        .ok_or_else(|| DataError::Empty {
            path: class_dir.into(),
            what: "class folder (no .png/.jpg/.jpeg files)".into(),
        })
}

/// `[H, W]` of an image file, reading only its header.
pub fn image_dims(path: &Path) -> Result<[usize; 2], DataError> {
    let r = image::ImageReader::open(path)
        .map_err(|e| DataError::io(path, e))?
        .with_guessed_format()
        .map_err(|e| DataError::io(path, e))?;
    let (w, h) =
        r.into_dimensions().map_err(|e| DataError::Decode { path: path.into(), error: e })?;
    Ok([h as usize, w as usize])
}

/// Decodes an image file into RGB (`c` = 3) or luma bytes, HWC: (bytes, width, height).
fn decode(path: &Path, c: usize) -> Result<(Vec<u8>, u32, u32), DataError> {
    let img = image::ImageReader::open(path)
        .map_err(|e| DataError::io(path, e))?
        .with_guessed_format()
        .map_err(|e| DataError::io(path, e))?
        .decode()
        .map_err(|e| DataError::Decode { path: path.into(), error: e })?;
    let (w, h) = (img.width(), img.height());
    let bytes = if c == 1 { img.into_luma8().into_raw() } else { img.into_rgb8().into_raw() };
    Ok((bytes, w, h))
}

/// A crop box of a source image in pixels: left, top, width, height.
type CropBox = [f64; 4];

/// The box of an `iw x ih` image that `mode` brings to `w x h`.
fn fit_box(mode: ResizeMode, iw: u32, ih: u32, w: u32, h: u32) -> CropBox {
    let (iw, ih) = (iw as f64, ih as f64);
    match mode {
        ResizeMode::Stretch => [0.0, 0.0, iw, ih],
        ResizeMode::CenterCrop { crop_fraction } => {
            let f = crop_fraction as f64;
            // Scale so the image just covers (w / f) x (h / f); the central w x h of that.
            let scale = (w as f64 / f / iw).max(h as f64 / f / ih);
            let (bw, bh) = ((w as f64 / scale).min(iw), (h as f64 / scale).min(ih));
            [(iw - bw) / 2.0, (ih - bh) / 2.0, bw, bh]
        }
    }
}

/// torchvision's `RandomResizedCrop` box: area fraction in `scale`, aspect ratio in
/// [3/4, 4/3] (log-uniform), 10 tries, else the central crop of the clamped ratio.
pub fn random_resized_box(iw: u32, ih: u32, scale: [f32; 2], rng: &mut Rng) -> CropBox {
    let (fw, fh) = (iw as f64, ih as f64);
    let (lo, hi) = ((3.0f64 / 4.0).ln(), (4.0f64 / 3.0).ln());
    for _ in 0..10 {
        let area =
            fw * fh * (scale[0] as f64 + (scale[1] - scale[0]) as f64 * rng.uniform_f32() as f64);
        let ratio = (lo + (hi - lo) * rng.uniform_f32() as f64).exp();
        let (cw, ch) = ((area * ratio).sqrt().round(), (area / ratio).sqrt().round());
        if cw >= 1.0 && ch >= 1.0 && cw <= fw && ch <= fh {
            let top = rng.below((fh - ch) as u64 + 1) as f64;
            let left = rng.below((fw - cw) as u64 + 1) as f64;
            return [left, top, cw, ch];
        }
    }
    let r = fw / fh;
    let (cw, ch) = if r < 0.75 {
        (fw, (fw / 0.75).round().min(fh))
    } else if r > 4.0 / 3.0 {
        ((fh * 4.0 / 3.0).round().min(fw), fh)
    } else {
        (fw, fh)
    };
    [(fw - cw) / 2.0, (fh - ch) / 2.0, cw, ch]
}

/// Resizes box `b` of an HWC image (`c` channels, `iw x ih`) to `w x h` with a bilinear
/// (triangle) convolution, antialiased when shrinking as PIL's, into `out` as CHW.
fn resize_box(
    path: &Path,
    src: Vec<u8>,
    c: usize,
    (iw, ih): (u32, u32),
    b: CropBox,
    (w, h): (u32, u32),
    out: &mut Vec<u8>,
) -> Result<(), DataError> {
    use fast_image_resize::{
        images::Image, FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer,
    };
    let pt = if c == 1 { PixelType::U8 } else { PixelType::U8x3 };
    let whole = b == [0.0, 0.0, iw as f64, ih as f64];
    let hwc = if whole && (iw, ih) == (w, h) {
        src
    } else {
        let bad = |e: String| DataError::io(path, std::io::Error::other(format!("resizing: {e}")));
        let img = Image::from_vec_u8(iw, ih, src, pt).map_err(|e| bad(e.to_string()))?;
        let mut dst = Image::new(w, h, pt);
        let opts = ResizeOptions::new()
            .resize_alg(ResizeAlg::Convolution(FilterType::Bilinear))
            .crop(b[0], b[1], b[2], b[3]);
        Resizer::new().resize(&img, &mut dst, &opts).map_err(|e| bad(e.to_string()))?;
        dst.into_vec()
    };
    let plane = (w * h) as usize;
    out.clear();
    out.resize(c * plane, 0);
    if c == 1 {
        out.copy_from_slice(&hwc);
        return Ok(());
    }
    for (p, px) in hwc.chunks_exact(3).enumerate() {
        out[p] = px[0];
        out[plane + p] = px[1];
        out[2 * plane + p] = px[2];
    }
    Ok(())
}

/// Decodes an image file to `[C, H, W]` bytes (`C` 1 or 3) into `out`, brought to
/// `H x W` by `mode`.
pub fn load_image(
    path: &Path,
    shape: [usize; 3],
    mode: ResizeMode,
    out: &mut Vec<u8>,
) -> Result<(), DataError> {
    let [c, h, w] = shape;
    let (bytes, iw, ih) = decode(path, c)?;
    let b = fit_box(mode, iw, ih, w as u32, h as u32);
    resize_box(path, bytes, c, (iw, ih), b, (w as u32, h as u32), out)
}

/// Decodes an image file to `[C, H, W]` bytes from a [`random_resized_box`] of it.
pub fn load_random_crop(
    path: &Path,
    shape: [usize; 3],
    scale: [f32; 2],
    rng: &mut Rng,
    out: &mut Vec<u8>,
) -> Result<(), DataError> {
    let [c, h, w] = shape;
    let (bytes, iw, ih) = decode(path, c)?;
    let b = random_resized_box(iw, ih, scale, rng);
    resize_box(path, bytes, c, (iw, ih), b, (w as u32, h as u32), out)
}

impl Dataset for FolderDataset {
    fn format(&self) -> Format {
        Format::ImageFolder
    }
    fn len(&self) -> usize {
        self.files.len()
    }
    fn shape(&self) -> [usize; 3] {
        self.shape
    }
    fn num_classes(&self) -> usize {
        self.class_dirs.len()
    }
    fn labels(&self) -> &[u32] {
        &self.labels
    }
    fn source(&self) -> &Path {
        &self.split_dir
    }
    fn class_names(&self) -> Option<&[String]> {
        Some(&self.class_names)
    }
    fn read_into(&self, i: usize, out: &mut Vec<u8>) -> Result<u32, DataError> {
        if i >= self.len() {
            return Err(DataError::IndexOutOfRange {
                path: self.split_dir.clone(),
                index: i,
                len: self.len(),
            });
        }
        load_image(&self.path(i), self.shape, self.resize, out)?;
        Ok(self.labels[i])
    }
    fn read_random_crop(
        &self,
        i: usize,
        scale: [f32; 2],
        rng: &mut Rng,
        out: &mut Vec<u8>,
    ) -> Result<Option<u32>, DataError> {
        if i >= self.len() {
            return Err(DataError::IndexOutOfRange {
                path: self.split_dir.clone(),
                index: i,
                len: self.len(),
            });
        }
        load_random_crop(&self.path(i), self.shape, scale, rng, out)?;
        Ok(Some(self.labels[i]))
    }
}

#[cfg(test)]
#[path = "folder_tests.rs"]
mod tests;
