//! Dense tensors owned by the IR (initializers, folded constants).
//!
//! Numeric data is kept typed for the dtypes the pipeline computes with
//! (f32, f64, i64, i32, bool) and as raw little-endian bytes for the rest,
//! so that every initializer round-trips bit for bit.
use std::fmt;

/// ONNX element type, by its `TensorProto.DataType` number.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, serde::Serialize)]
pub struct DType(pub i32);

impl DType {
    pub const UNDEFINED: DType = DType(0);
    pub const F32: DType = DType(1);
    pub const U8: DType = DType(2);
    pub const I8: DType = DType(3);
    pub const U16: DType = DType(4);
    pub const I16: DType = DType(5);
    pub const I32: DType = DType(6);
    pub const I64: DType = DType(7);
    pub const STRING: DType = DType(8);
    pub const BOOL: DType = DType(9);
    pub const F16: DType = DType(10);
    pub const F64: DType = DType(11);
    pub const U32: DType = DType(12);
    pub const U64: DType = DType(13);
    pub const BF16: DType = DType(16);

    /// Bytes per element, `None` for strings and unknown types.
    pub fn size(self) -> Option<usize> {
        Some(match self.0 {
            1 | 6 | 12 => 4,
            2 | 3 | 9 => 1,
            4 | 5 | 10 | 16 => 2,
            7 | 11 | 13 => 8,
            17..=20 => 1, // float8 variants
            _ => return None,
        })
    }
    pub fn is_float(self) -> bool {
        matches!(self.0, 1 | 10 | 11 | 16 | 17..=20)
    }
    pub fn is_int(self) -> bool {
        matches!(self.0, 2..=7 | 12 | 13)
    }
    pub fn name(self) -> &'static str {
        match self.0 {
            0 => "undefined",
            1 => "float32",
            2 => "uint8",
            3 => "int8",
            4 => "uint16",
            5 => "int16",
            6 => "int32",
            7 => "int64",
            8 => "string",
            9 => "bool",
            10 => "float16",
            11 => "float64",
            12 => "uint32",
            13 => "uint64",
            16 => "bfloat16",
            _ => "other",
        }
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Element storage.
#[derive(Clone, PartialEq, Debug)]
pub enum Data {
    F32(Vec<f32>),
    F64(Vec<f64>),
    I64(Vec<i64>),
    I32(Vec<i32>),
    Bool(Vec<bool>),
    /// Strings (dtype STRING).
    Str(Vec<Vec<u8>>),
    /// Any other numeric type as little-endian bytes.
    Raw(Vec<u8>),
}

/// A dense tensor.
#[derive(Clone, PartialEq, Debug)]
pub struct Tensor {
    pub dtype: DType,
    pub shape: Vec<usize>,
    pub data: Data,
}

impl Tensor {
    pub fn f32(shape: Vec<usize>, v: Vec<f32>) -> Tensor {
        debug_assert_eq!(shape.iter().product::<usize>(), v.len());
        Tensor { dtype: DType::F32, shape, data: Data::F32(v) }
    }
    pub fn i64(shape: Vec<usize>, v: Vec<i64>) -> Tensor {
        debug_assert_eq!(shape.iter().product::<usize>(), v.len());
        Tensor { dtype: DType::I64, shape, data: Data::I64(v) }
    }
    /// 1-D int64 tensor.
    pub fn i64_vec(v: Vec<i64>) -> Tensor {
        Tensor::i64(vec![v.len()], v)
    }
    /// Number of elements.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    pub fn rank(&self) -> usize {
        self.shape.len()
    }
    pub fn as_f32(&self) -> Option<&[f32]> {
        match &self.data {
            Data::F32(v) => Some(v),
            _ => None,
        }
    }
    pub fn as_f32_mut(&mut self) -> Option<&mut Vec<f32>> {
        match &mut self.data {
            Data::F32(v) => Some(v),
            _ => None,
        }
    }
    /// Integer view (int64/int32/bool/uint8/int8 data widened to i64).
    pub fn to_i64(&self) -> Option<Vec<i64>> {
        Some(match &self.data {
            Data::I64(v) => v.clone(),
            Data::I32(v) => v.iter().map(|&x| x as i64).collect(),
            Data::Bool(v) => v.iter().map(|&x| x as i64).collect(),
            Data::Raw(b) if self.dtype == DType::U8 => b.iter().map(|&x| x as i64).collect(),
            Data::Raw(b) if self.dtype == DType::I8 => b.iter().map(|&x| x as i8 as i64).collect(),
            _ => return None,
        })
    }
    /// Float view (f32/f64/ints widened or narrowed to f32).
    pub fn to_f32(&self) -> Option<Vec<f32>> {
        Some(match &self.data {
            Data::F32(v) => v.clone(),
            Data::F64(v) => v.iter().map(|&x| x as f32).collect(),
            _ => self.to_i64()?.into_iter().map(|x| x as f32).collect(),
        })
    }
    /// Cast to another numeric dtype (the supported computational ones).
    pub fn cast(&self, to: DType) -> Option<Tensor> {
        let data = match to {
            DType::F32 => Data::F32(self.to_f32()?),
            DType::F64 => Data::F64(match &self.data {
                Data::F64(v) => v.clone(),
                _ => self.to_f32()?.into_iter().map(|x| x as f64).collect(),
            }),
            DType::I64 => Data::I64(match &self.data {
                Data::F32(v) => v.iter().map(|&x| x as i64).collect(),
                Data::F64(v) => v.iter().map(|&x| x as i64).collect(),
                _ => self.to_i64()?,
            }),
            DType::I32 => Data::I32(match &self.data {
                Data::F32(v) => v.iter().map(|&x| x as i32).collect(),
                _ => self.to_i64()?.into_iter().map(|x| x as i32).collect(),
            }),
            DType::BOOL => Data::Bool(match &self.data {
                Data::F32(v) => v.iter().map(|&x| x != 0.0).collect(),
                _ => self.to_i64()?.into_iter().map(|x| x != 0).collect(),
            }),
            _ => return None,
        };
        Some(Tensor { dtype: to, shape: self.shape.clone(), data })
    }
    /// Size of the stored data in bytes.
    pub fn byte_size(&self) -> usize {
        match &self.data {
            Data::F32(v) => v.len() * 4,
            Data::F64(v) => v.len() * 8,
            Data::I64(v) => v.len() * 8,
            Data::I32(v) => v.len() * 4,
            Data::Bool(v) => v.len(),
            Data::Str(v) => v.iter().map(|s| s.len()).sum(),
            Data::Raw(v) => v.len(),
        }
    }
    /// Select `keep` indices along `axis` (channel surgery, keep-sets).
    pub fn select(&self, axis: usize, keep: &[usize]) -> Option<Tensor> {
        let outer: usize = self.shape[..axis].iter().product();
        let dim = self.shape[axis];
        let inner: usize = self.shape[axis + 1..].iter().product();
        fn gather<T: Clone>(
            v: &[T],
            outer: usize,
            dim: usize,
            inner: usize,
            keep: &[usize],
        ) -> Vec<T> {
            let mut out = Vec::with_capacity(outer * keep.len() * inner);
            for o in 0..outer {
                for &k in keep {
                    let s = (o * dim + k) * inner;
                    out.extend_from_slice(&v[s..s + inner]);
                }
            }
            out
        }
        if keep.iter().any(|&k| k >= dim) {
            return None;
        }
        let data = match &self.data {
            Data::F32(v) => Data::F32(gather(v, outer, dim, inner, keep)),
            Data::F64(v) => Data::F64(gather(v, outer, dim, inner, keep)),
            Data::I64(v) => Data::I64(gather(v, outer, dim, inner, keep)),
            Data::I32(v) => Data::I32(gather(v, outer, dim, inner, keep)),
            Data::Bool(v) => Data::Bool(gather(v, outer, dim, inner, keep)),
            Data::Str(v) => Data::Str(gather(v, outer, dim, inner, keep)),
            Data::Raw(b) => {
                let es = self.dtype.size()?;
                let mut out = Vec::with_capacity(outer * keep.len() * inner * es);
                for o in 0..outer {
                    for &k in keep {
                        let s = (o * dim + k) * inner * es;
                        out.extend_from_slice(&b[s..s + inner * es]);
                    }
                }
                Data::Raw(out)
            }
        };
        let mut shape = self.shape.clone();
        shape[axis] = keep.len();
        Some(Tensor { dtype: self.dtype, shape, data })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn select_along_axes() {
        let t = Tensor::f32(vec![2, 3, 2], (0..12).map(|x| x as f32).collect());
        let s = t.select(1, &[2, 0]).unwrap();
        assert_eq!(s.shape, vec![2, 2, 2]);
        assert_eq!(s.as_f32().unwrap(), &[4., 5., 0., 1., 10., 11., 6., 7.]);
        let s0 = t.select(0, &[1]).unwrap();
        assert_eq!(s0.as_f32().unwrap(), &[6., 7., 8., 9., 10., 11.]);
        assert!(t.select(1, &[3]).is_none());
    }

    #[test]
    fn casts() {
        let t = Tensor::i64_vec(vec![1, -2, 3]);
        assert_eq!(t.cast(DType::F32).unwrap().as_f32().unwrap(), &[1.0, -2.0, 3.0]);
        let f = Tensor::f32(vec![2], vec![1.7, -2.2]);
        assert_eq!(f.cast(DType::I64).unwrap().to_i64().unwrap(), vec![1, -2]);
    }
}
