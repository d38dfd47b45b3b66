//! Flags shared by several commands, declared once: how a model's input is read
//! ([`InputArgs`], every command that imports a model) and the overrides of a
//! recipe's `training:` section ([`TrainingArgs`], `rlal train`, `rlal prune`,
//! `rlal bench search`).
use rlal::analysis::ImportOptions;
use rlal::ir::InputLayout;
use rlal::train::recipe::{DeviceKind, InsertBn, Precision, ScheduleKind, Training};
use std::collections::BTreeMap;

/// Non-batch input dims. Spelled out as `::std::vec::Vec` so that clap takes one value
/// (`3x32x32`) parsed by [`parse_dims`], not a list of numbers.
pub type Dims = ::std::vec::Vec<usize>;

/// How the model's input is read.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct InputArgs {
    /// Fixed input size without the batch dim, in the model's order: CxHxW, or HxWxC for a
    /// channels-last model, e.g. 3x224x224 (models exported with dynamic H/W; overrides
    /// the recipe's `input-shape`).
    #[arg(long, value_name = "DIMS", value_parser = parse_dims)]
    pub input_shape: Option<Dims>,
    /// Layout of the image input (overrides `input-layout`): `auto` detects channels last
    /// (a Transpose [0,3,1,2] before the first conv, as tf2onnx exports Keras models).
    #[arg(long, value_enum)]
    pub input_layout: Option<InputLayout>,
    /// Bind a graph input that is not data to constant values, in its declared shape
    /// (repeatable; overrides the recipe's `bind:` entry of that name).
    #[arg(long, value_name = "NAME=V1,V2,…", value_parser = parse_bind)]
    pub bind: Vec<(String, Vec<f64>)>,
}

impl InputArgs {
    /// Sets a recipe's `input-shape`, `input-layout` and `bind` from the flags given.
    pub fn apply(
        &self,
        shape: &mut Option<Vec<usize>>,
        layout: &mut InputLayout,
        bind: &mut BTreeMap<String, Vec<f64>>,
    ) {
        if self.input_shape.is_some() {
            shape.clone_from(&self.input_shape);
        }
        *layout = self.input_layout.unwrap_or(*layout);
        bind.extend(self.bind.iter().cloned());
    }

    /// The import options of a command without a recipe.
    pub fn options(&self) -> ImportOptions {
        let mut o = ImportOptions::default();
        self.apply(&mut o.input_shape, &mut o.input_layout, &mut o.bind);
        o
    }
}

/// Overrides of a recipe's `training:` section.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct TrainingArgs {
    /// Epochs (overrides `training.epochs`; `rlal prune`: of joint training).
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Batch size (overrides `training.batch-size`).
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Base learning rate (overrides `training.lr`).
    #[arg(long)]
    pub lr: Option<f64>,
    /// Schedule (overrides `training.schedule`).
    #[arg(long, value_enum)]
    pub schedule: Option<ScheduleKind>,
    /// Seed (overrides `training.seed`).
    #[arg(long)]
    pub seed: Option<u64>,
    /// libtorch threads, and ONNX Runtime's in `rlal prune` (overrides `training.threads`).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Insert identity BN after convs lacking one (overrides `training.insert-bn`).
    #[arg(long, value_enum)]
    pub insert_bn: Option<InsertBn>,
    /// Keep BN nodes in the exported model (sets `training.keep-bn`).
    #[arg(long)]
    pub keep_bn: bool,
    /// Device (overrides `training.device`).
    #[arg(long, value_enum)]
    pub device: Option<DeviceKind>,
    /// Training arithmetic (overrides `training.precision`).
    #[arg(long, value_enum)]
    pub precision: Option<Precision>,
    /// Channels-last memory format of activations and conv weights in training (sets
    /// `training.channels-last`; not the model's input layout, see `--input-layout`).
    #[arg(long)]
    pub channels_last: bool,
}

impl TrainingArgs {
    /// Sets the fields of `t` that the flags give.
    pub fn apply(&self, t: &mut Training) {
        macro_rules! over {
            ($($f:ident),*) => { $( if let Some(v) = self.$f { t.$f = v; } )* };
        }
        over!(epochs, batch_size, lr, schedule, seed, threads, insert_bn, device, precision);
        t.keep_bn |= self.keep_bn;
        t.channels_last |= self.channels_last;
    }
}

/// Parses `3x32x32` (or `3,32,32`) into dims.
pub fn parse_dims(s: &str) -> Result<Dims, String> {
    s.split(['x', 'X', ','])
        .map(|p| {
            p.trim().parse::<usize>().map_err(|_| format!("'{s}' is not a shape like 3x32x32"))
        })
        .collect::<Result<Vec<_>, _>>()
        .and_then(|v| {
            if v.is_empty() || v.contains(&0) {
                Err(format!("'{s}' is not a shape like 3x32x32"))
            } else {
                Ok(v)
            }
        })
}

/// Parses `NAME=v1,v2,…` (the name may contain anything but its last `=`).
pub fn parse_bind(s: &str) -> Result<(String, Vec<f64>), String> {
    let (name, vals) =
        s.rsplit_once('=').ok_or_else(|| format!("'{s}' is not NAME=v1,v2,… (no '=')"))?;
    if name.is_empty() {
        return Err(format!("'{s}': the input name before '=' is empty"));
    }
    let vals = vals
        .split(',')
        .map(|v| {
            v.trim()
                .parse::<f64>()
                .ok()
                .filter(|x| x.is_finite())
                .ok_or_else(|| format!("'{s}': '{v}' is not a finite number"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok((name.to_string(), vals))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bind_values_parse_and_bad_ones_are_named() {
        let (n, v) = parse_bind("model/norm/Sub/y:0=0.5,1e-3, 2").unwrap();
        assert_eq!((n.as_str(), v), ("model/norm/Sub/y:0", vec![0.5, 1e-3, 2.0]));
        assert!(parse_bind("x").unwrap_err().contains("no '='"));
        assert!(parse_bind("x=1,a").unwrap_err().contains("'a' is not a finite number"));
        assert!(parse_bind("=1").unwrap_err().contains("empty"));
        assert_eq!(parse_dims("28x28x1").unwrap(), vec![28, 28, 1]);
        assert!(parse_dims("3x0").is_err());
    }
}

/// `--scale`, `--mean`, `--std`: the input normalisation of `--data`, each flag over what
/// the model records (`rlal::data::Preprocess`), over the defaults (1/255, 0, 1).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct NormArgs {
    /// Raw-pixel multiplier (default: the model's recorded preprocessing, else 1/255).
    #[arg(long)]
    pub scale: Option<f32>,
    /// Per-channel means, comma-separated (default: the model's record, else 0).
    #[arg(long, value_delimiter = ',')]
    pub mean: Option<Vec<f32>>,
    /// Per-channel standard deviations, comma-separated (default: the model's record, else 1).
    #[arg(long, value_delimiter = ',')]
    pub std: Option<Vec<f32>>,
}

impl NormArgs {
    /// Whether any of the three flags was given.
    pub fn given(&self) -> bool {
        self.scale.is_some() || self.mean.is_some() || self.std.is_some()
    }

    /// The normalisation to run `model` with: each flag given, else the model's recorded
    /// preprocessing, else the defaults (said on stderr: an accuracy may then be wrong).
    pub fn resolve(
        &self,
        model: &std::path::Path,
        recorded: Option<&rlal::data::Preprocess>,
    ) -> rlal::data::Normalize {
        let base = match recorded {
            Some(p) => {
                if !self.given() {
                    eprintln!("preprocessing from the model's metadata: {}", p.describe());
                }
                p.normalize.clone()
            }
            None => {
                if !self.given() {
                    eprintln!(
                        "warning: {} records no input preprocessing; guessing scale 1/255, mean 0, std 1 (give --scale/--mean/--std if it was trained otherwise)",
                        model.display()
                    );
                }
                rlal::data::Normalize::default()
            }
        };
        rlal::data::Normalize {
            scale: self.scale.unwrap_or(base.scale),
            mean: self.mean.clone().unwrap_or(base.mean),
            std: self.std.clone().unwrap_or(base.std),
        }
    }
}
