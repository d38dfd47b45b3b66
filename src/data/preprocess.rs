//! The input preprocessing a model was trained with, carried in the model itself.
//!
//! Every ONNX file rlal writes (`rlal train`, `rlal prune`, `rlal export`) records how
//! its images must be prepared under documented `metadata_props` keys (docs/DATA.md):
//!
//! | key | value |
//! |---|---|
//! | `rlal.preprocess.scale` | multiplier of the raw 0–255 pixel, e.g. `0.003921569` |
//! | `rlal.preprocess.mean` | per-channel mean after scaling, comma-separated |
//! | `rlal.preprocess.std` | per-channel std, comma-separated |
//! | `rlal.preprocess.crop-fraction` | image folders: centre crop fraction (0.875: resize 256, crop 224) |
//! | `rlal.input.size` | the image as fed, `CxHxW` |
//! | `rlal.input.channels` | `gray` (1 channel) or `rgb` (3, in R, G, B order) |
//! | `rlal.classes` | number of classes of the output |
//!
//! `rlal eval`, `rlal train` and `rlal prune` use them where the flags or the recipe
//! do not say.
use super::{DataError, Normalize};
use std::path::Path;

/// Key of the pixel scale.
pub const SCALE: &str = "rlal.preprocess.scale";
/// Key of the per-channel mean.
pub const MEAN: &str = "rlal.preprocess.mean";
/// Key of the per-channel std.
pub const STD: &str = "rlal.preprocess.std";
/// Key of the centre-crop fraction of image folders.
pub const CROP: &str = "rlal.preprocess.crop-fraction";
/// Key of the input size `CxHxW`.
pub const SIZE: &str = "rlal.input.size";
/// Key of the channel order.
pub const CHANNELS: &str = "rlal.input.channels";
/// Key of the class count.
pub const CLASSES: &str = "rlal.classes";

/// How a model's input images are prepared, and what it outputs.
#[derive(Debug, Clone, PartialEq)]
pub struct Preprocess {
    /// Scale, mean and std.
    pub normalize: Normalize,
    /// Image folders: the centre-crop fraction.
    pub crop_fraction: f32,
    /// The image as fed, `[C, H, W]`.
    pub input: [usize; 3],
    /// Number of classes.
    pub classes: usize,
}

fn list(v: &[f32]) -> String {
    v.iter().map(|x| x.to_string()).collect::<Vec<_>>().join(",")
}

/// The `metadata_props` of model `path`, read with errors naming the model and the key.
struct Props<'a> {
    path: &'a Path,
    props: &'a [(String, String)],
}

impl Props<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.props.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }
    fn bad(&self, reason: String) -> DataError {
        DataError::Malformed { path: self.path.into(), reason }
    }
    fn bad_key(&self, key: &str, reason: String) -> DataError {
        self.bad(format!("metadata key '{key}': {reason}"))
    }
    fn parse<T: std::str::FromStr>(&self, key: &str, v: &str) -> Result<T, DataError> {
        v.trim().parse().map_err(|_| self.bad_key(key, format!("'{v}' is not a valid value")))
    }
    fn parse_list(&self, key: &str, v: &str) -> Result<Vec<f32>, DataError> {
        v.split(',').map(|x| x.trim().parse()).collect::<Result<_, _>>().map_err(|_| {
            self.bad_key(key, format!("'{v}' is not a comma-separated list of numbers"))
        })
    }
}

impl Preprocess {
    /// The metadata entries that record it.
    pub fn to_props(&self) -> Vec<(String, String)> {
        let [c, h, w] = self.input;
        let n = &self.normalize;
        [
            (SCALE, n.scale.to_string()),
            (MEAN, list(&n.mean)),
            (STD, list(&n.std)),
            (CROP, self.crop_fraction.to_string()),
            (SIZE, format!("{c}x{h}x{w}")),
            (CHANNELS, if c == 3 { "rgb" } else { "gray" }.to_string()),
            (CLASSES, self.classes.to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    /// The preprocessing recorded in `props`, the `metadata_props` of model `path`: None
    /// when the model has none (no `rlal.preprocess.*` key); an error naming the model
    /// and the key when one is malformed.
    pub fn from_props(
        path: &Path,
        props: &[(String, String)],
    ) -> Result<Option<Preprocess>, DataError> {
        let p = Props { path, props };
        let (Some(scale), Some(mean), Some(std)) = (p.get(SCALE), p.get(MEAN), p.get(STD)) else {
            if let Some((k, _)) = props.iter().find(|(k, _)| k.starts_with("rlal.preprocess.")) {
                return Err(p.bad_key(
                    k,
                    format!("without all of {SCALE}, {MEAN}, {STD}: incomplete preprocessing"),
                ));
            }
            return Ok(None);
        };
        let normalize = Normalize {
            scale: p.parse(SCALE, scale)?,
            mean: p.parse_list(MEAN, mean)?,
            std: p.parse_list(STD, std)?,
        };
        let input = match p.get(SIZE) {
            Some(s) => {
                let d: Vec<usize> =
                    s.split('x').map(|x| p.parse(SIZE, x)).collect::<Result<_, _>>()?;
                <[usize; 3]>::try_from(d)
                    .map_err(|_| p.bad_key(SIZE, format!("'{s}' is not CxHxW")))?
            }
            None => [0; 3],
        };
        normalize
            .validate(input[0].max(normalize.mean.len()).max(normalize.std.len()))
            .map_err(|e| p.bad(format!("metadata keys {MEAN}/{STD}/{SCALE}: {e}")))?;
        Ok(Some(Preprocess {
            normalize,
            crop_fraction: p.get(CROP).map(|v| p.parse(CROP, v)).transpose()?.unwrap_or(0.875),
            input,
            classes: p.get(CLASSES).map(|v| p.parse(CLASSES, v)).transpose()?.unwrap_or(0),
        }))
    }

    /// One line for logs: `scale 1/255, mean 0.1307, std 0.3081`.
    pub fn describe(&self) -> String {
        let n = &self.normalize;
        let scale = if (n.scale - 1.0 / 255.0).abs() < 1e-9 {
            "1/255".to_string()
        } else {
            n.scale.to_string()
        };
        format!("scale {scale}, mean {}, std {}", list(&n.mean), list(&n.std))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mnist() -> Preprocess {
        Preprocess {
            normalize: Normalize { scale: 1.0 / 255.0, mean: vec![0.1307], std: vec![0.3081] },
            crop_fraction: 0.875,
            input: [1, 28, 28],
            classes: 10,
        }
    }

    #[test]
    fn props_round_trip() {
        let model = Path::new("m.onnx");
        let p = mnist();
        let props = p.to_props();
        assert_eq!(props.iter().find(|(k, _)| k == SIZE).unwrap().1, "1x28x28");
        assert_eq!(props.iter().find(|(k, _)| k == CHANNELS).unwrap().1, "gray");
        assert_eq!(Preprocess::from_props(model, &props).unwrap(), Some(p));
        let rgb = Preprocess {
            normalize: Normalize {
                scale: 1.0 / 255.0,
                mean: vec![0.485, 0.456, 0.406],
                std: vec![0.229, 0.224, 0.225],
            },
            input: [3, 224, 224],
            ..mnist()
        };
        assert_eq!(Preprocess::from_props(model, &rgb.to_props()).unwrap(), Some(rgb));
    }

    #[test]
    fn models_without_keys_have_none_and_bad_keys_are_named() {
        let model = Path::new("dir/m.onnx");
        let other = vec![("producer".to_string(), "pytorch".to_string())];
        assert_eq!(Preprocess::from_props(model, &other).unwrap(), None);
        let mut bad = mnist().to_props();
        bad[1].1 = "0.1,x".into();
        let e = Preprocess::from_props(model, &bad).unwrap_err().to_string();
        assert!(e.starts_with("dir/m.onnx: metadata key 'rlal.preprocess.mean': '0.1,x'"), "{e}");
        let partial = vec![(SCALE.to_string(), "1".to_string())];
        let e = Preprocess::from_props(model, &partial).unwrap_err().to_string();
        assert!(e.contains("incomplete"), "{e}");
        let mut zero_std = mnist().to_props();
        zero_std[2].1 = "0".into();
        assert!(Preprocess::from_props(model, &zero_std).is_err());
    }
}
