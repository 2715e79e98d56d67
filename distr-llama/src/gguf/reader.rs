//! The GGUF container (versions 2 and 3): magic, version, counts, metadata key/values, tensor
//! infos, then the data section at the next multiple of `general.alignment` (default 32).
//!
//! Every read is bounds-checked: a truncated or corrupt file is an error naming what was being
//! read, never a panic or an allocation sized by garbage.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::error::{LlamaError, Result};
use crate::gguf::dequant::{dequantize, GgmlType};

/// Default alignment of the data section and of every tensor in it.
const DEFAULT_ALIGNMENT: u64 = 32;

/// A typed metadata value.
#[derive(Debug, Clone, PartialEq)]
pub enum MetadataValue {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    U64(u64),
    I64(i64),
    F32(f32),
    F64(f64),
    Bool(bool),
    String(String),
    Array(Vec<MetadataValue>),
}

impl MetadataValue {
    /// Any non-negative integer value.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Self::U8(v) => Some(v.into()),
            Self::U16(v) => Some(v.into()),
            Self::U32(v) => Some(v.into()),
            Self::U64(v) => Some(v),
            Self::I8(v) => u64::try_from(v).ok(),
            Self::I16(v) => u64::try_from(v).ok(),
            Self::I32(v) => u64::try_from(v).ok(),
            Self::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }

    /// Any numeric value as `f64`.
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Self::F32(v) => Some(v.into()),
            Self::F64(v) => Some(v),
            Self::I8(v) => Some(v.into()),
            Self::I16(v) => Some(v.into()),
            Self::I32(v) => Some(v.into()),
            Self::I64(v) => Some(v as f64),
            _ => self.as_u64().map(|v| v as f64),
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Self::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            Self::Bool(v) => Some(v),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&[MetadataValue]> {
        match self {
            Self::Array(values) => Some(values),
            _ => None,
        }
    }
}

/// Where a tensor lives in the data section.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorInfo {
    pub name: String,
    /// GGML dimensions, fastest-varying first (`ne[0]` is the row length).
    pub dims: Vec<usize>,
    pub kind: GgmlType,
    /// Byte offset from the start of the data section.
    pub offset: u64,
}

impl TensorInfo {
    /// Row-major shape (PyTorch order): GGML's dimensions reversed.
    pub fn shape(&self) -> Vec<usize> {
        self.dims.iter().rev().copied().collect()
    }

    /// The number of elements; an error when the product of the dimensions overflows.
    pub fn elements(&self) -> Result<usize> {
        self.dims.iter().try_fold(1usize, |product, &dim| product.checked_mul(dim)).ok_or_else(|| {
            LlamaError::Malformed(format!("tensor `{}` dims {:?} overflow the element count", self.name, self.dims))
        })
    }
}

/// A parsed GGUF file, kept in memory.
#[derive(Debug)]
pub struct GgufFile {
    pub path: PathBuf,
    pub version: u32,
    pub metadata: BTreeMap<String, MetadataValue>,
    pub tensors: BTreeMap<String, TensorInfo>,
    bytes: Vec<u8>,
    data_start: u64,
}

impl GgufFile {
    /// Reads and parses `path`; tensor data is checked to lie inside the file.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let bytes = std::fs::read(&path).map_err(LlamaError::io(&path))?;
        Self::parse(path, bytes)
    }

    /// Parses a GGUF image held in memory; `path` is only used in messages.
    pub fn parse(path: PathBuf, bytes: Vec<u8>) -> Result<Self> {
        let mut cursor = Cursor { path: &path, bytes: &bytes, position: 0 };
        let magic: [u8; 4] = cursor.take("magic", 4)?.try_into().expect("4 bytes");
        if &magic != b"GGUF" {
            return Err(LlamaError::NotGguf { path, magic });
        }
        let version = cursor.u32("version")?;
        if !(2..=3).contains(&version) {
            return Err(LlamaError::GgufVersion(version));
        }
        let tensor_count = cursor.u64("tensor count")?;
        let metadata_count = cursor.u64("metadata count")?;

        let mut metadata = BTreeMap::new();
        for _ in 0..metadata_count {
            let key = cursor.string("metadata key")?;
            let kind = cursor.u32(&format!("type of `{key}`"))?;
            let value = cursor.value(&key, kind, 0)?;
            metadata.insert(key, value);
        }

        let mut tensors = BTreeMap::new();
        for _ in 0..tensor_count {
            let name = cursor.string("tensor name")?;
            let rank = cursor.u32(&format!("rank of `{name}`"))?;
            if rank > 4 {
                return Err(LlamaError::Malformed(format!("tensor `{name}` has rank {rank}, at most 4 is allowed")));
            }
            let dims = (0..rank)
                .map(|_| {
                    let dim = cursor.u64(&format!("dims of `{name}`"))?;
                    usize::try_from(dim)
                        .map_err(|_| LlamaError::Malformed(format!("tensor `{name}` dimension {dim} exceeds usize")))
                })
                .collect::<Result<Vec<_>>>()?;
            let kind = GgmlType(cursor.u32(&format!("type of `{name}`"))?);
            let offset = cursor.u64(&format!("offset of `{name}`"))?;
            tensors.insert(name.clone(), TensorInfo { name, dims, kind, offset });
        }

        let alignment = match metadata.get("general.alignment") {
            None => DEFAULT_ALIGNMENT,
            Some(value) => value.as_u64().filter(|a| a.is_power_of_two()).ok_or_else(|| {
                LlamaError::Malformed(format!("general.alignment {value:?} is not a power of two"))
            })?,
        };
        let data_start = (cursor.position as u64).checked_next_multiple_of(alignment).ok_or_else(|| {
            LlamaError::Malformed(format!("the data section start overflows at alignment {alignment}"))
        })?;
        let file = Self { path, version, metadata, tensors, bytes, data_start };
        for info in file.tensors.values() {
            if info.offset % alignment != 0 {
                return Err(LlamaError::Malformed(format!(
                    "tensor `{}` offset {} is not aligned to {alignment}",
                    info.name, info.offset
                )));
            }
            file.tensor_bytes(info)?;
        }
        Ok(file)
    }

    /// The metadata value under `key`.
    pub fn get(&self, key: &str) -> Option<&MetadataValue> {
        self.metadata.get(key)
    }

    /// An integer metadata value, or an error naming the key.
    pub fn require_u64(&self, key: &str) -> Result<u64> {
        self.get(key).and_then(MetadataValue::as_u64).ok_or_else(|| metadata_error(key, "an integer"))
    }

    /// A numeric metadata value, or an error naming the key.
    pub fn require_f64(&self, key: &str) -> Result<f64> {
        self.get(key).and_then(MetadataValue::as_f64).ok_or_else(|| metadata_error(key, "a number"))
    }

    /// A string metadata value, or an error naming the key.
    pub fn require_str(&self, key: &str) -> Result<&str> {
        self.get(key).and_then(MetadataValue::as_str).ok_or_else(|| metadata_error(key, "a string"))
    }

    /// An array of strings, or an error naming the key.
    pub fn require_strings(&self, key: &str) -> Result<Vec<&str>> {
        self.get(key)
            .and_then(MetadataValue::as_array)
            .and_then(|values| values.iter().map(MetadataValue::as_str).collect())
            .ok_or_else(|| metadata_error(key, "an array of strings"))
    }

    /// The dequantised tensor `name` and its row-major shape.
    pub fn tensor_f32(&self, name: &str) -> Result<(Vec<f32>, Vec<usize>)> {
        let info = self.tensors.get(name).ok_or_else(|| LlamaError::MissingTensor(name.to_string()))?;
        let bytes = self.tensor_bytes(info)?;
        Ok((dequantize(name, info.kind, bytes, info.elements()?)?, info.shape()))
    }

    fn tensor_bytes(&self, info: &TensorInfo) -> Result<&[u8]> {
        let size = info.kind.byte_size(&info.name, info.elements()?)?;
        let len = self.bytes.len() as u64;
        let start = self.data_start.checked_add(info.offset);
        let end = start.and_then(|start| start.checked_add(size as u64));
        match (start, end) {
            (Some(start), Some(end)) if end <= len => Ok(&self.bytes[start as usize..end as usize]),
            _ => Err(LlamaError::Truncated {
                path: self.path.clone(),
                what: format!("tensor `{}`", info.name),
                start: start.unwrap_or(u64::MAX),
                end: end.unwrap_or(u64::MAX),
                len,
            }),
        }
    }
}

fn metadata_error(key: &str, expected: &'static str) -> LlamaError {
    LlamaError::Metadata { key: key.to_string(), expected }
}

/// Nesting limit of metadata arrays: real files nest at most once.
const MAX_ARRAY_DEPTH: usize = 4;

struct Cursor<'a> {
    path: &'a Path,
    bytes: &'a [u8],
    position: usize,
}

impl Cursor<'_> {
    fn take(&mut self, what: &str, count: usize) -> Result<&[u8]> {
        let end = self.position.checked_add(count).filter(|&end| end <= self.bytes.len());
        let Some(end) = end else {
            return Err(LlamaError::Truncated {
                path: self.path.to_path_buf(),
                what: what.to_string(),
                start: self.position as u64,
                end: (self.position as u64).saturating_add(count as u64),
                len: self.bytes.len() as u64,
            });
        };
        let slice = &self.bytes[self.position..end];
        self.position = end;
        Ok(slice)
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N]> {
        Ok(self.take(what, N)?.try_into().expect("N bytes"))
    }

    fn u32(&mut self, what: &str) -> Result<u32> {
        self.array(what).map(u32::from_le_bytes)
    }

    fn u64(&mut self, what: &str) -> Result<u64> {
        self.array(what).map(u64::from_le_bytes)
    }

    fn string(&mut self, what: &str) -> Result<String> {
        let len = self.u64(what)?;
        let bytes = self.take(what, usize::try_from(len).unwrap_or(usize::MAX))?;
        String::from_utf8(bytes.to_vec()).map_err(|_| LlamaError::Malformed(format!("{what} is not UTF-8")))
    }

    fn value(&mut self, key: &str, kind: u32, depth: usize) -> Result<MetadataValue> {
        use MetadataValue as V;
        Ok(match kind {
            0 => V::U8(self.array::<1>(key)?[0]),
            1 => V::I8(self.array::<1>(key)?[0] as i8),
            2 => V::U16(u16::from_le_bytes(self.array(key)?)),
            3 => V::I16(i16::from_le_bytes(self.array(key)?)),
            4 => V::U32(u32::from_le_bytes(self.array(key)?)),
            5 => V::I32(i32::from_le_bytes(self.array(key)?)),
            6 => V::F32(f32::from_le_bytes(self.array(key)?)),
            7 => V::Bool(self.array::<1>(key)?[0] != 0),
            8 => V::String(self.string(key)?),
            9 if depth < MAX_ARRAY_DEPTH => {
                let element_kind = self.u32(key)?;
                let count = self.u64(key)?;
                // Every element takes at least one byte: a count beyond the rest of the file
                // means a truncated (or corrupt) file, and must not size an allocation.
                if count > (self.bytes.len() - self.position) as u64 {
                    return Err(LlamaError::Truncated {
                        path: self.path.to_path_buf(),
                        what: format!("array `{key}` of {count} elements (a byte each at least)"),
                        start: self.position as u64,
                        end: (self.position as u64).saturating_add(count),
                        len: self.bytes.len() as u64,
                    });
                }
                let values = (0..count)
                    .map(|_| self.value(key, element_kind, depth + 1))
                    .collect::<Result<Vec<_>>>()?;
                V::Array(values)
            }
            10 => V::U64(u64::from_le_bytes(self.array(key)?)),
            11 => V::I64(i64::from_le_bytes(self.array(key)?)),
            12 => V::F64(f64::from_le_bytes(self.array(key)?)),
            other => {
                return Err(LlamaError::Malformed(format!("metadata `{key}` has unknown type {other}")))
            }
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A minimal GGUF image: one string and one u32 metadata value, one F32 tensor `[2, 3]`.
    pub(crate) fn tiny_gguf() -> Vec<u8> {
        let mut bytes = b"GGUF".to_vec();
        bytes.extend(3u32.to_le_bytes());
        bytes.extend(1u64.to_le_bytes());
        bytes.extend(2u64.to_le_bytes());
        let string = |bytes: &mut Vec<u8>, s: &str| {
            bytes.extend((s.len() as u64).to_le_bytes());
            bytes.extend(s.as_bytes());
        };
        string(&mut bytes, "general.architecture");
        bytes.extend(8u32.to_le_bytes());
        string(&mut bytes, "llama");
        string(&mut bytes, "llama.block_count");
        bytes.extend(4u32.to_le_bytes());
        bytes.extend(7u32.to_le_bytes());
        string(&mut bytes, "w");
        bytes.extend(2u32.to_le_bytes());
        bytes.extend(3u64.to_le_bytes());
        bytes.extend(2u64.to_le_bytes());
        bytes.extend(0u32.to_le_bytes());
        bytes.extend(0u64.to_le_bytes());
        bytes.resize(bytes.len().div_ceil(32) * 32, 0);
        bytes.extend((0..6).flat_map(|i| (i as f32).to_le_bytes()));
        bytes
    }

    #[test]
    fn parses_metadata_and_tensors() {
        let file = GgufFile::parse("tiny.gguf".into(), tiny_gguf()).unwrap();
        assert_eq!(file.require_str("general.architecture").unwrap(), "llama");
        assert_eq!(file.require_u64("llama.block_count").unwrap(), 7);
        let (values, shape) = file.tensor_f32("w").unwrap();
        assert_eq!(shape, vec![2, 3]);
        assert_eq!(values, vec![0.0, 1.0, 2.0, 3.0, 4.0, 5.0]);
        assert!(matches!(file.tensor_f32("x"), Err(LlamaError::MissingTensor(_))));
        assert!(file.require_u64("general.architecture").is_err());
    }

    #[test]
    fn every_truncation_is_an_error() {
        let bytes = tiny_gguf();
        for len in 0..bytes.len() {
            let result = GgufFile::parse("cut.gguf".into(), bytes[..len].to_vec());
            assert!(result.is_err(), "a file cut at {len} bytes parsed");
        }
    }

    /// The start of a version 3 file: magic, version and the two counts.
    fn header(tensor_count: u64, metadata_count: u64) -> Vec<u8> {
        let mut bytes = b"GGUF".to_vec();
        bytes.extend(3u32.to_le_bytes());
        bytes.extend(tensor_count.to_le_bytes());
        bytes.extend(metadata_count.to_le_bytes());
        bytes
    }

    #[test]
    fn a_cut_array_says_the_file_is_truncated() {
        // One u8 array of 48900 elements, of which the file holds 10 bytes.
        let mut bytes = header(0, 1);
        bytes.extend(6u64.to_le_bytes());
        bytes.extend(b"tokens");
        bytes.extend(9u32.to_le_bytes());
        bytes.extend(0u32.to_le_bytes());
        bytes.extend(48900u64.to_le_bytes());
        bytes.extend([0; 10]);
        let error = GgufFile::parse("cut.gguf".into(), bytes).unwrap_err().to_string();
        assert!(error.contains("`cut.gguf` is truncated") && error.contains("array `tokens` of 48900 elements"), "{error}");
    }

    /// A header with no metadata and one tensor `w` of GGML `dims` and type `kind` at
    /// `offset`, followed by `data_len` zero bytes of data.
    fn crafted_tensor(dims: &[u64], kind: u32, offset: u64, data_len: usize) -> Vec<u8> {
        let mut bytes = header(1, 0);
        bytes.extend(1u64.to_le_bytes());
        bytes.push(b'w');
        bytes.extend((dims.len() as u32).to_le_bytes());
        for dim in dims {
            bytes.extend(dim.to_le_bytes());
        }
        bytes.extend(kind.to_le_bytes());
        bytes.extend(offset.to_le_bytes());
        bytes.resize(bytes.len().div_ceil(32) * 32 + data_len, 0);
        bytes
    }

    #[test]
    fn crafted_sizes_are_errors_not_overflows() {
        let parse = |bytes: Vec<u8>| GgufFile::parse("crafted.gguf".into(), bytes);
        // The header itself parses: one F32 [2, 3] tensor with its 24 bytes.
        assert!(parse(crafted_tensor(&[3, 2], 0, 0, 24)).is_ok());
        // 2^32 * 2^32 * 2^32 elements: the element count overflows.
        let result = parse(crafted_tensor(&[1 << 32, 1 << 32, 1 << 32], 0, 0, 24));
        assert!(matches!(&result, Err(LlamaError::Malformed(m)) if m.contains("element count")), "{result:?}");
        // 2^62 F32 elements fit in usize, their 2^64 bytes do not.
        let result = parse(crafted_tensor(&[1 << 62], 0, 0, 24));
        assert!(matches!(&result, Err(LlamaError::Malformed(m)) if m.contains("byte size")), "{result:?}");
        // An offset at the end of u64: data start + offset overflows.
        let result = parse(crafted_tensor(&[3, 2], 0, u64::MAX - 31, 24));
        assert!(matches!(result, Err(LlamaError::Truncated { .. })), "{result:?}");
        // A tensor name claiming u64::MAX bytes: position + length overflows.
        let mut bytes = crafted_tensor(&[3, 2], 0, 0, 24);
        bytes[24..32].copy_from_slice(&u64::MAX.to_le_bytes());
        let result = parse(bytes);
        assert!(matches!(result, Err(LlamaError::Truncated { end: u64::MAX, .. })), "{result:?}");
    }

    #[test]
    fn wrong_magic_and_version_are_errors() {
        let mut bytes = tiny_gguf();
        bytes[4] = 9;
        assert!(matches!(GgufFile::parse("v.gguf".into(), bytes.clone()), Err(LlamaError::GgufVersion(9))));
        bytes[0] = b'X';
        assert!(matches!(GgufFile::parse("m.gguf".into(), bytes), Err(LlamaError::NotGguf { .. })));
    }
}
