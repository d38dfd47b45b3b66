//! Per-sample transforms: pad-and-random-crop, random horizontal flip and
//! per-channel normalisation, fused into one pass from `u8` CHW to `f32` CHW.
//!
//! Semantics (torchvision's `RandomCrop(size, padding=p)`, then
//! `RandomHorizontalFlip()`, then `ToTensor()` + `Normalize(mean, std)`):
//! 1. crop: pad the image with `p` zero pixels on every side, pick a window offset
//!    `(oy, ox)` uniformly in `0..=2p` each (`oy` drawn first), keep the `H x W`
//!    window at that offset. Padding is zero in *raw pixel* space, so a padded pixel
//!    normalises to `(0 - mean) / std`. With `p = 0` nothing is drawn (identity).
//! 2. flip: when enabled, one uniform draw `< 0.5` mirrors the image left-right.
//! 3. normalise: `out = (x * scale - mean[c]) / std[c]`, `scale` default `1/255`.
//! 4. layout: the sample is written CHW, or HWC for a model whose input is channels
//!    last ([`Layout::Nhwc`], as TensorFlow exports): the one place where images
//!    take the order the model expects.

use crate::ir::Layout;
use crate::rng::Rng;

/// Per-channel normalisation `(x * scale - mean[c]) / std[c]`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Normalize {
    /// Multiplier applied to the raw `u8` value first (default `1/255`).
    pub scale: f32,
    /// Per-channel mean (length 1 = same for every channel, or length C).
    pub mean: Vec<f32>,
    /// Per-channel standard deviation (same length rule, all `> 0`).
    pub std: Vec<f32>,
}

impl Default for Normalize {
    /// `x / 255`, mean 0, std 1: values in `[0, 1]`.
    fn default() -> Self {
        Normalize { scale: 1.0 / 255.0, mean: vec![0.0], std: vec![1.0] }
    }
}

impl Normalize {
    /// `(x/255 - mean) / std` with the given per-channel statistics.
    pub fn new(mean: Vec<f32>, std: Vec<f32>) -> Self {
        Normalize { scale: 1.0 / 255.0, mean, std }
    }
    /// MNIST statistics: mean 0.1307, std 0.3081.
    pub fn mnist() -> Self {
        Self::new(vec![0.1307], vec![0.3081])
    }
    /// CIFAR-10 statistics (per RGB channel).
    pub fn cifar10() -> Self {
        Self::new(vec![0.4914, 0.4822, 0.4465], vec![0.2470, 0.2435, 0.2616])
    }
    /// CIFAR-100 statistics (per RGB channel).
    pub fn cifar100() -> Self {
        Self::new(vec![0.5071, 0.4865, 0.4409], vec![0.2673, 0.2564, 0.2762])
    }
    /// ImageNet statistics (per RGB channel).
    pub fn imagenet() -> Self {
        Self::new(vec![0.485, 0.456, 0.406], vec![0.229, 0.224, 0.225])
    }

    /// Checks the statistics suit `channels`; `Err` holds the reason.
    pub fn validate(&self, channels: usize) -> Result<(), String> {
        for (what, v) in [("mean", &self.mean), ("std", &self.std)] {
            if v.len() != 1 && v.len() != channels {
                return Err(format!(
                    "normalisation {what} has {} values for {channels} channels",
                    v.len()
                ));
            }
        }
        if let Some(s) = self.std.iter().find(|s| !s.is_finite() || **s <= 0.0) {
            return Err(format!("normalisation std {s} is not a positive number"));
        }
        if !self.scale.is_finite() || self.mean.iter().any(|m| !m.is_finite()) {
            return Err("normalisation scale and mean must be finite".into());
        }
        Ok(())
    }

    /// `(a, b)` with `out = x * a + b` for channel `c`.
    fn affine(&self, c: usize) -> (f32, f32) {
        let m = if self.mean.len() == 1 { self.mean[0] } else { self.mean[c] };
        let s = if self.std.len() == 1 { self.std[0] } else { self.std[c] };
        (self.scale / s, -m / s)
    }
}

/// The per-sample pipeline: optional random crop with padding, optional random
/// horizontal flip, then normalisation (see the module docs for exact semantics).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Transform {
    /// Normalisation applied last.
    pub normalize: Normalize,
    /// Pad-and-random-crop padding `p`; `0` disables the crop.
    pub crop_pad: usize,
    /// Random horizontal flip with probability 1/2.
    pub hflip: bool,
    /// Image folders: each sample from a random crop of its source image with this
    /// area fraction range (torchvision's `RandomResizedCrop`, aspect 3/4–4/3), drawn
    /// before the other augmentations; ignored by datasets stored at their size.
    #[serde(default)]
    pub random_resized_crop: Option<[f32; 2]>,
    /// Order of each output sample: CHW (`nchw`) or HWC (`nhwc`).
    #[serde(default)]
    pub layout: Layout,
}

impl Transform {
    /// No augmentation, only `normalize` (for evaluation).
    pub fn eval(normalize: Normalize) -> Self {
        Transform::train(normalize, 0, false)
    }
    /// Pad-`pad` random crop + random flip + `normalize` (CIFAR-style training).
    pub fn train(normalize: Normalize, crop_pad: usize, hflip: bool) -> Self {
        Transform { normalize, crop_pad, hflip, random_resized_crop: None, layout: Layout::Nchw }
    }
    /// The same with ImageNet-style random-resized crops of area fraction `scale`.
    pub fn with_random_resized_crop(self, scale: Option<[f32; 2]>) -> Self {
        Transform { random_resized_crop: scale, ..self }
    }
    /// The same, writing samples in `layout` (the model's input layout).
    pub fn with_layout(self, layout: Layout) -> Self {
        Transform { layout, ..self }
    }
    /// Dims of an output sample for a `[C, H, W]` source.
    pub fn out_dims(&self, chw: [usize; 3]) -> [usize; 3] {
        self.layout.dims(chw)
    }
    /// `true` when the transform draws random numbers.
    pub fn is_random(&self) -> bool {
        self.crop_pad > 0 || self.hflip || self.random_resized_crop.is_some()
    }

    /// Transforms one sample: `src` is `C*H*W` bytes (CHW) of `shape`, `out` must be
    /// `C*H*W` floats, written in [`Transform::layout`]. Randomness comes only from
    /// `rng` (see module docs for the draw order). The caller validates `normalize` for
    /// `C` (the [`Loader`](super::Loader) does); a length or shape mismatch here is a
    /// programming error and panics.
    pub fn apply(&self, src: &[u8], shape: [usize; 3], rng: &mut Rng, out: &mut [f32]) {
        match self.layout {
            Layout::Nchw => self.apply_chw(src, shape, rng, out),
            Layout::Nhwc => {
                let mut chw = vec![0f32; out.len()];
                self.apply_chw(src, shape, rng, &mut chw);
                let c = shape[0];
                for (ch, plane) in chw.chunks_exact(shape[1] * shape[2]).enumerate() {
                    for (p, &x) in plane.iter().enumerate() {
                        out[p * c + ch] = x;
                    }
                }
            }
        }
    }

    fn apply_chw(&self, src: &[u8], shape: [usize; 3], rng: &mut Rng, out: &mut [f32]) {
        let [c, h, w] = shape;
        assert_eq!(src.len(), c * h * w, "transform input size");
        assert_eq!(out.len(), c * h * w, "transform output size");
        let p = self.crop_pad;
        let (oy, ox) = if p > 0 {
            let oy = rng.below_usize(2 * p + 1);
            let ox = rng.below_usize(2 * p + 1);
            (oy, ox)
        } else {
            (p, p)
        };
        let flip = self.hflip && rng.uniform_f32() < 0.5;
        for ch in 0..c {
            let (a, b) = self.normalize.affine(ch);
            let plane = &src[ch * h * w..(ch + 1) * h * w];
            let oplane = &mut out[ch * h * w..(ch + 1) * h * w];
            let pad_value = b; // raw 0 normalised
            if oy == p && ox == p && !flip {
                for (o, &x) in oplane.iter_mut().zip(plane) {
                    *o = x as f32 * a + b;
                }
                continue;
            }
            for y in 0..h {
                let orow = &mut oplane[y * w..(y + 1) * w];
                let sy = (y + oy).wrapping_sub(p);
                if sy >= h {
                    orow.fill(pad_value);
                    continue;
                }
                let srow = &plane[sy * w..(sy + 1) * w];
                for (x, o) in orow.iter_mut().enumerate() {
                    let xc = if flip { w - 1 - x } else { x };
                    let sx = (xc + ox).wrapping_sub(p);
                    *o = if sx < w { srow[sx] as f32 * a + b } else { pad_value };
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn img(c: usize, h: usize, w: usize) -> Vec<u8> {
        (0..c * h * w).map(|i| (i * 5 % 256) as u8).collect()
    }

    #[test]
    fn normalisation_values() {
        let n = Normalize { scale: 1.0 / 255.0, mean: vec![0.5, 0.25], std: vec![0.5, 0.25] };
        let t = Transform::eval(n);
        let src = [0u8, 255, 51, 0, 255, 102];
        let mut out = [0f32; 6];
        t.apply(&src, [2, 1, 3], &mut Rng::new(0), &mut out);
        let want = [-1.0, 1.0, -0.6, -1.0, 3.0, 0.6];
        for (o, w) in out.iter().zip(want) {
            assert!((o - w).abs() < 1e-5, "{out:?}");
        }
        let mut out = [0f32; 3];
        Transform::eval(Normalize::default()).apply(
            &[0, 255, 51],
            [1, 1, 3],
            &mut Rng::new(0),
            &mut out,
        );
        assert_eq!(out[0], 0.0);
        assert!((out[1] - 1.0).abs() < 1e-6 && (out[2] - 0.2).abs() < 1e-6);
    }

    #[test]
    fn channels_last_writes_each_pixel_s_channels_together() {
        let (src, shape) = (img(3, 2, 4), [3, 2, 4]);
        let t = Transform::train(Normalize::default(), 1, true);
        let (mut chw, mut hwc) = (vec![0f32; 24], vec![0f32; 24]);
        t.apply(&src, shape, &mut Rng::new(7), &mut chw);
        let t = t.with_layout(Layout::Nhwc);
        t.apply(&src, shape, &mut Rng::new(7), &mut hwc);
        assert_eq!(t.out_dims(shape), [2, 4, 3]);
        for (c, y, x) in
            (0..3).flat_map(|c| (0..2).flat_map(move |y| (0..4).map(move |x| (c, y, x))))
        {
            assert_eq!(hwc[(y * 4 + x) * 3 + c], chw[c * 8 + y * 4 + x]);
        }
    }

    #[test]
    fn validate_catches_bad_stats() {
        assert!(Normalize::cifar10().validate(3).is_ok());
        assert!(Normalize::mnist().validate(3).is_ok()); // broadcast
        assert!(Normalize::cifar10().validate(1).is_err());
        assert!(Normalize::new(vec![0.0], vec![0.0]).validate(1).is_err());
        assert!(Normalize::new(vec![0.0], vec![f32::NAN]).validate(1).is_err());
    }

    #[test]
    fn crop_with_pad_zero_is_identity_and_draws_nothing() {
        let src = img(3, 5, 4);
        let t =
            Transform::train(Normalize { scale: 1.0, mean: vec![0.0], std: vec![1.0] }, 0, false);
        let mut rng = Rng::new(1);
        let mut out = vec![0f32; src.len()];
        t.apply(&src, [3, 5, 4], &mut rng, &mut out);
        assert_eq!(out, src.iter().map(|&x| x as f32).collect::<Vec<_>>());
        assert_eq!(rng, Rng::new(1));
        assert!(!t.is_random());
    }

    #[test]
    fn flip_is_a_mirror() {
        let src = img(2, 3, 5);
        let raw = Normalize { scale: 1.0, mean: vec![0.0], std: vec![1.0] };
        let t = Transform::train(raw, 0, true);
        let (mut flipped, mut kept) = (0, 0);
        for seed in 0..40 {
            let mut out = vec![0f32; src.len()];
            t.apply(&src, [2, 3, 5], &mut Rng::new(seed), &mut out);
            let mirrored = (0..2 * 3)
                .all(|row| (0..5).all(|x| out[row * 5 + x] == src[row * 5 + 4 - x] as f32));
            let same = out.iter().zip(&src).all(|(o, &s)| *o == s as f32);
            assert!(mirrored ^ same);
            if mirrored {
                flipped += 1
            } else {
                kept += 1
            }
        }
        assert!(flipped > 5 && kept > 5, "{flipped}/{kept}");
    }

    #[test]
    fn padded_crop_shifts_and_fills_with_normalised_zero() {
        let (h, w, p) = (4usize, 4usize, 2usize);
        let src: Vec<u8> = (1..=16).collect();
        let n = Normalize { scale: 1.0, mean: vec![1.0], std: vec![2.0] };
        let t = Transform::train(n, p, false);
        let mut seen = std::collections::HashSet::new();
        for seed in 0..200 {
            let mut rng = Rng::new(seed);
            let mut probe = rng.clone();
            let (oy, ox) = (probe.below_usize(2 * p + 1), probe.below_usize(2 * p + 1));
            seen.insert((oy, ox));
            let mut out = vec![0f32; 16];
            t.apply(&src, [1, h, w], &mut rng, &mut out);
            assert_eq!(rng, probe, "exactly two draws");
            for y in 0..h {
                for x in 0..w {
                    let (sy, sx) = ((y + oy) as isize - p as isize, (x + ox) as isize - p as isize);
                    let raw = if (0..h as isize).contains(&sy) && (0..w as isize).contains(&sx) {
                        src[sy as usize * w + sx as usize] as f32
                    } else {
                        0.0
                    };
                    assert_eq!(out[y * w + x], (raw - 1.0) / 2.0);
                }
            }
        }
        assert_eq!(seen.len(), 25, "all offsets reachable");
    }

    #[test]
    fn crop_then_flip_order() {
        // Flip applies to the cropped window: out(y, x) = padded(y+oy, (w-1-x)+ox).
        let src: Vec<u8> = (1..=9).collect();
        let n = Normalize { scale: 1.0, mean: vec![0.0], std: vec![1.0] };
        let t = Transform::train(n, 1, true);
        for seed in 0..50 {
            let mut rng = Rng::new(seed);
            let mut probe = rng.clone();
            let (oy, ox) = (probe.below_usize(3), probe.below_usize(3));
            let flip = probe.uniform_f32() < 0.5;
            let mut out = vec![0f32; 9];
            t.apply(&src, [1, 3, 3], &mut rng, &mut out);
            for y in 0..3 {
                for x in 0..3 {
                    let xc = if flip { 2 - x } else { x };
                    let (sy, sx) = (y as isize + oy as isize - 1, xc as isize + ox as isize - 1);
                    let v = if (0..3).contains(&sy) && (0..3).contains(&sx) {
                        src[(sy * 3 + sx) as usize] as f32
                    } else {
                        0.0
                    };
                    assert_eq!(out[y * 3 + x], v);
                }
            }
        }
    }
}
