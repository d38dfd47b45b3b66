//! TensorProto <-> IR tensor, including external data.
use super::pb;
use super::OnnxError;
use crate::ir::{DType, Data, Tensor};
use std::path::Path;

fn le_chunks<const N: usize>(raw: &[u8]) -> impl Iterator<Item = [u8; N]> + '_ {
    raw.chunks_exact(N).map(|c| c.try_into().expect("exact chunk"))
}

/// f32s from little-endian bytes (one memcpy on little-endian hosts: the bulk of every model).
fn f32_from_le(raw: &[u8]) -> Vec<f32> {
    if cfg!(target_endian = "little") {
        let mut v = vec![0f32; raw.len() / 4];
        // SAFETY: `v` owns exactly raw.len() bytes (len is a multiple of 4, checked by the caller);
        // f32 has no invalid bit patterns, and the host byte order is little-endian.
        unsafe {
            std::ptr::copy_nonoverlapping(raw.as_ptr(), v.as_mut_ptr() as *mut u8, v.len() * 4)
        };
        v
    } else {
        le_chunks::<4>(raw).map(f32::from_le_bytes).collect()
    }
}

/// Little-endian bytes of f32s (one memcpy on little-endian hosts).
fn f32_to_le(v: &[f32]) -> Vec<u8> {
    if cfg!(target_endian = "little") {
        // SAFETY: reading the initialised f32 buffer as bytes; u8 has no alignment needs.
        unsafe { std::slice::from_raw_parts(v.as_ptr() as *const u8, v.len() * 4) }.to_vec()
    } else {
        v.iter().flat_map(|x| x.to_le_bytes()).collect()
    }
}

/// Decodes a tensor. `dir` is the model's folder, for external data.
pub(crate) fn from_proto(
    t: &pb::TensorProto,
    dir: Option<&Path>,
    file: &Path,
) -> Result<Tensor, OnnxError> {
    let bad = tensor_error(t, file);
    let dtype = DType(t.data_type.unwrap_or(0));
    let mut shape = Vec::with_capacity(t.dims.len());
    for &d in &t.dims {
        if d < 0 {
            return Err(bad(format!("negative dimension {d} in dims {:?}", t.dims)));
        }
        shape.push(d as usize);
    }
    let n: usize = shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| bad("dims overflow".into()))?;
    let external = t.data_location == Some(pb::tensor_proto::DataLocation::External as i32);
    let raw_owned;
    let raw: Option<&[u8]> = if external {
        raw_owned = read_external(t, dir, file)?;
        Some(&raw_owned)
    } else {
        t.raw_data.as_deref()
    };
    let data = if let Some(raw) = raw {
        if dtype == DType::STRING {
            return Err(bad("string tensor stored as raw data".into()));
        }
        let es = dtype.size().ok_or_else(|| bad(format!("unsupported data type {}", dtype.0)))?;
        let need = n.checked_mul(es).ok_or_else(|| {
            bad(format!("dims {:?} of {dtype} overflow the address space", t.dims))
        })?;
        if raw.len() != need {
            return Err(bad(format!(
                "holds {} bytes of data but dims {:?} of {} need {}",
                raw.len(),
                t.dims,
                dtype,
                need
            )));
        }
        match dtype {
            DType::F32 => Data::F32(f32_from_le(raw)),
            DType::F64 => Data::F64(le_chunks::<8>(raw).map(f64::from_le_bytes).collect()),
            DType::I64 => Data::I64(le_chunks::<8>(raw).map(i64::from_le_bytes).collect()),
            DType::I32 => Data::I32(le_chunks::<4>(raw).map(i32::from_le_bytes).collect()),
            DType::BOOL => Data::Bool(raw.iter().map(|&b| b != 0).collect()),
            _ => Data::Raw(raw.to_vec()),
        }
    } else {
        let count = |k: usize| -> Result<(), OnnxError> {
            if k == n {
                Ok(())
            } else {
                Err(bad(format!("holds {k} elements but dims {:?} need {n}", t.dims)))
            }
        };
        match dtype {
            DType::F32 => {
                count(t.float_data.len())?;
                Data::F32(t.float_data.clone())
            }
            DType::F64 => {
                count(t.double_data.len())?;
                Data::F64(t.double_data.clone())
            }
            DType::I64 => {
                count(t.int64_data.len())?;
                Data::I64(t.int64_data.clone())
            }
            DType::I32 => {
                count(t.int32_data.len())?;
                Data::I32(t.int32_data.clone())
            }
            DType::BOOL => {
                count(t.int32_data.len())?;
                Data::Bool(t.int32_data.iter().map(|&x| x != 0).collect())
            }
            DType::STRING => {
                count(t.string_data.len())?;
                Data::Str(t.string_data.clone())
            }
            DType::U32 | DType::U64 => {
                count(t.uint64_data.len())?;
                let es = dtype.size().expect("sized");
                Data::Raw(
                    t.uint64_data.iter().flat_map(|&x| x.to_le_bytes()[..es].to_vec()).collect(),
                )
            }
            _ => {
                // int8/uint8/int16/uint16/float16/bfloat16/float8: one int32 per element.
                let es = dtype
                    .size()
                    .ok_or_else(|| bad(format!("unsupported data type {}", dtype.0)))?;
                count(t.int32_data.len())?;
                Data::Raw(
                    t.int32_data.iter().flat_map(|&x| x.to_le_bytes()[..es].to_vec()).collect(),
                )
            }
        }
    };
    Ok(Tensor { dtype, shape, data })
}

/// An error about initializer `t` of model `file`.
fn tensor_error<'a>(t: &'a pb::TensorProto, file: &'a Path) -> impl Fn(String) -> OnnxError + 'a {
    move |msg| OnnxError::Tensor {
        path: file.to_path_buf(),
        tensor: t.name.clone().unwrap_or_default(),
        msg,
    }
}

/// The bytes of initializer `t` stored in an external file beside model `file` (in `dir`).
fn read_external(
    t: &pb::TensorProto,
    dir: Option<&Path>,
    file: &Path,
) -> Result<Vec<u8>, OnnxError> {
    let bad = tensor_error(t, file);
    let mut location = None;
    let mut offset = 0u64;
    let mut length = None;
    for kv in &t.external_data {
        let v = kv.value.as_deref().unwrap_or("");
        match kv.key.as_deref().unwrap_or("") {
            "location" => location = Some(v.to_string()),
            "offset" => {
                offset = v.parse().map_err(|_| bad(format!("bad external data offset '{v}'")))?
            }
            "length" => {
                length = Some(
                    v.parse::<u64>().map_err(|_| bad(format!("bad external data length '{v}'")))?,
                )
            }
            _ => {}
        }
    }
    let location = location.ok_or_else(|| bad("external data without a 'location'".into()))?;
    let rel = Path::new(&location);
    if rel.is_absolute() || rel.components().any(|c| matches!(c, std::path::Component::ParentDir)) {
        return Err(bad(format!(
            "external data location '{location}' must be a relative path inside the model's folder"
        )));
    }
    let dir =
        dir.ok_or_else(|| bad("external data needs the model to be loaded from a file".into()))?;
    let path = dir.join(rel);
    let io = |error| OnnxError::External {
        path: file.to_path_buf(),
        tensor: t.name.clone().unwrap_or_default(),
        file: path.clone(),
        error,
    };
    use std::io::{Read, Seek, SeekFrom};
    let mut f = std::fs::File::open(&path).map_err(io)?;
    let size = f.metadata().map_err(io)?.len();
    let len = match length {
        Some(l) => l,
        None => size.saturating_sub(offset),
    };
    if offset.checked_add(len).is_none_or(|end| end > size) {
        return Err(bad(format!(
            "external data {} is {size} bytes; offset {offset} + length {len} runs past its end",
            path.display()
        )));
    }
    f.seek(SeekFrom::Start(offset)).map_err(io)?;
    let mut buf = vec![0u8; len as usize];
    f.read_exact(&mut buf).map_err(io)?;
    Ok(buf)
}

/// Encodes a tensor (numeric data as `raw_data`).
pub(crate) fn to_proto(name: &str, t: &Tensor) -> pb::TensorProto {
    let mut p = pb::TensorProto {
        name: Some(name.to_string()),
        dims: t.shape.iter().map(|&d| d as i64).collect(),
        data_type: Some(t.dtype.0),
        ..Default::default()
    };
    let raw: Vec<u8> = match &t.data {
        Data::F32(v) => f32_to_le(v),
        Data::F64(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        Data::I64(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        Data::I32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        Data::Bool(v) => v.iter().map(|&b| b as u8).collect(),
        Data::Raw(v) => v.clone(),
        Data::Str(v) => {
            p.string_data = v.clone();
            return p;
        }
    };
    p.raw_data = Some(raw);
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An initializer `w` stored in `location` (in the model's folder `dir`).
    fn external(location: &str) -> pb::TensorProto {
        let entry = |k: &str, v: &str| pb::StringStringEntryProto {
            key: Some(k.into()),
            value: Some(v.into()),
        };
        pb::TensorProto {
            name: Some("w".into()),
            dims: vec![2],
            data_type: Some(DType::F32.0),
            data_location: Some(pb::tensor_proto::DataLocation::External as i32),
            external_data: vec![entry("location", location)],
            ..Default::default()
        }
    }

    #[test]
    fn external_data_errors_name_the_model_the_initializer_and_the_file() {
        let (dir, model) = (Path::new("/nonexistent-dir"), Path::new("/nonexistent-dir/m.onnx"));
        let e = from_proto(&external("absent.bin"), Some(dir), model).unwrap_err();
        assert!(matches!(e, OnnxError::External { .. }), "{e:?}");
        let e = e.to_string();
        let want = "/nonexistent-dir/m.onnx: initializer 'w': external data file \
                    /nonexistent-dir/absent.bin: ";
        assert!(e.starts_with(want), "{e}");
        let e = from_proto(&external("../up.bin"), Some(dir), model).unwrap_err().to_string();
        assert!(e.starts_with("/nonexistent-dir/m.onnx: initializer 'w': external data location '../up.bin' must be a relative path"), "{e}");
    }
}
