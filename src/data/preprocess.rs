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
use super::Normalize;

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

fn parse<T: std::str::FromStr>(key: &str, v: &str) -> Result<T, String> {
    v.trim().parse().map_err(|_| format!("metadata key '{key}': '{v}' is not a valid value"))
}

fn parse_list(key: &str, v: &str) -> Result<Vec<f32>, String> {
    v.split(',').map(|x| x.trim().parse()).collect::<Result<_, _>>().map_err(|_| {
        format!("metadata key '{key}': '{v}' is not a comma-separated list of numbers")
    })
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

    /// The preprocessing recorded in `props`: None when the model has none (no
    /// `rlal.preprocess.*` key); an error naming the key when one is malformed.
    pub fn from_props(props: &[(String, String)]) -> Result<Option<Preprocess>, String> {
        let get = |k: &str| props.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str());
        let (Some(scale), Some(mean), Some(std)) = (get(SCALE), get(MEAN), get(STD)) else {
            if let Some((k, _)) = props.iter().find(|(k, _)| k.starts_with("rlal.preprocess.")) {
                return Err(format!(
                    "metadata key '{k}' without all of {SCALE}, {MEAN}, {STD}: incomplete preprocessing"
                ));
            }
            return Ok(None);
        };
        let normalize = Normalize {
            scale: parse(SCALE, scale)?,
            mean: parse_list(MEAN, mean)?,
            std: parse_list(STD, std)?,
        };
        let input = match get(SIZE) {
            Some(s) => {
                let d: Vec<usize> =
                    s.split('x').map(|x| parse(SIZE, x)).collect::<Result<_, _>>()?;
                <[usize; 3]>::try_from(d)
                    .map_err(|_| format!("metadata key '{SIZE}': '{s}' is not CxHxW"))?
            }
            None => [0; 3],
        };
        normalize
            .validate(input[0].max(normalize.mean.len()).max(normalize.std.len()))
            .map_err(|e| format!("metadata keys {MEAN}/{STD}/{SCALE}: {e}"))?;
        Ok(Some(Preprocess {
            normalize,
            crop_fraction: get(CROP).map(|v| parse(CROP, v)).transpose()?.unwrap_or(0.875),
            input,
            classes: get(CLASSES).map(|v| parse(CLASSES, v)).transpose()?.unwrap_or(0),
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
        let p = mnist();
        let props = p.to_props();
        assert_eq!(props.iter().find(|(k, _)| k == SIZE).unwrap().1, "1x28x28");
        assert_eq!(props.iter().find(|(k, _)| k == CHANNELS).unwrap().1, "gray");
        assert_eq!(Preprocess::from_props(&props).unwrap(), Some(p));
        let rgb = Preprocess {
            normalize: Normalize {
                scale: 1.0 / 255.0,
                mean: vec![0.485, 0.456, 0.406],
                std: vec![0.229, 0.224, 0.225],
            },
            input: [3, 224, 224],
            ..mnist()
        };
        assert_eq!(Preprocess::from_props(&rgb.to_props()).unwrap(), Some(rgb));
    }

    #[test]
    fn models_without_keys_have_none_and_bad_keys_are_named() {
        let other = vec![("producer".to_string(), "pytorch".to_string())];
        assert_eq!(Preprocess::from_props(&other).unwrap(), None);
        let mut bad = mnist().to_props();
        bad[1].1 = "0.1,x".into();
        let e = Preprocess::from_props(&bad).unwrap_err();
        assert!(e.contains(MEAN) && e.contains("0.1,x"), "{e}");
        let partial = vec![(SCALE.to_string(), "1".to_string())];
        assert!(Preprocess::from_props(&partial).unwrap_err().contains("incomplete"));
        let mut zero_std = mnist().to_props();
        zero_std[2].1 = "0".into();
        assert!(Preprocess::from_props(&zero_std).is_err());
    }
}
