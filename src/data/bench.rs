//! The input pipeline against a GPU's appetite (`rlal bench data`): generated
//! ImageNet-size JPEG folders and the loader's throughput by worker count.
use super::{DataError, Loader};
use crate::rng::Rng;
use std::path::Path;
use std::time::Instant;

/// Writes `n` JPEGs of ImageNet's typical sizes (sides 300–500, quality 90) as an
/// ImageFolder (`dir/train/c<k>/<i>.jpg`, `classes` classes) unless it is already
/// there: smooth colour fields with noise, so they compress and decode like photos
/// rather than like pure noise or flat colour.
pub fn generate_jpegs(dir: &Path, n: usize, classes: usize, seed: u64) -> Result<(), DataError> {
    let classes = classes.max(1);
    let mut rng = Rng::new(seed);
    for i in 0..n {
        let d = dir.join("train").join(format!("c{:03}", i % classes));
        let p = d.join(format!("{i:06}.jpg"));
        let (w, h) = (300 + rng.below(201) as u32, 300 + rng.below(201) as u32);
        let (a, b, c) = (rng.below(256) as f32, rng.below(256) as f32, rng.below(256) as f32);
        if p.exists() {
            continue;
        }
        std::fs::create_dir_all(&d).map_err(|e| DataError::io(&d, e))?;
        let mut noise = Rng::new(seed ^ i as u64);
        let img = image::RgbImage::from_fn(w, h, |x, y| {
            let (u, v) = (x as f32 / w as f32, y as f32 / h as f32);
            let mut px = [a * u + 40.0 * v, b * v + 30.0 * u, c * (1.0 - u * v)];
            for ch in &mut px {
                *ch = (*ch + noise.below(24) as f32).clamp(0.0, 255.0);
            }
            image::Rgb(px.map(|f| f as u8))
        });
        let tmp = d.join(format!(".{i:06}.jpg.tmp"));
        let mut out = std::io::BufWriter::new(
            std::fs::File::create(&tmp).map_err(|e| DataError::io(&tmp, e))?,
        );
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 90)
            .encode_image(&img)
            .map_err(|e| DataError::io(&tmp, std::io::Error::other(e)))?;
        drop(out);
        std::fs::rename(&tmp, &p).map_err(|e| DataError::io(&p, e))?;
    }
    Ok(())
}

/// Images per second of `loader` over `batches` batches of epoch 0 (after one untimed
/// batch that starts the workers).
pub fn throughput(loader: &Loader, batches: usize) -> Result<(usize, f64), DataError> {
    let mut it = loader.epoch(0);
    if let Some(b) = it.next() {
        b?;
    }
    let t0 = Instant::now();
    let mut images = 0;
    for b in it.take(batches) {
        images += b?.labels.len();
    }
    Ok((images, t0.elapsed().as_secs_f64()))
}
