//! Dequantisation of GGML tensor types to `f32`, as llama.cpp (and `gguf-py`) define them.
//!
//! Block types store `BLOCK` consecutive elements with one or two `f16` scales: Q8_0 is
//! `d * q` (q: i8), Q4_0 is `d * (q - 8)` and Q4_1 is `d * q + m` (q: 4 bits, the low nibbles
//! of a block's 16 bytes are its first 16 elements, the high nibbles the last 16).

use half::{bf16, f16};

use crate::error::{LlamaError, Result};

/// Elements per block of the quantised types.
const BLOCK: usize = 32;

/// A GGML tensor type, by its code in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GgmlType(pub u32);

impl GgmlType {
    pub const F32: Self = Self(0);
    pub const F16: Self = Self(1);
    pub const Q4_0: Self = Self(2);
    pub const Q4_1: Self = Self(3);
    pub const Q8_0: Self = Self(8);
    pub const BF16: Self = Self(30);

    /// The type's name as llama.cpp spells it.
    pub fn name(self) -> String {
        let known = match self.0 {
            0 => "F32",
            1 => "F16",
            2 => "Q4_0",
            3 => "Q4_1",
            6 => "Q5_0",
            7 => "Q5_1",
            8 => "Q8_0",
            9 => "Q8_1",
            10 => "Q2_K",
            11 => "Q3_K",
            12 => "Q4_K",
            13 => "Q5_K",
            14 => "Q6_K",
            15 => "Q8_K",
            24 => "I8",
            25 => "I16",
            26 => "I32",
            27 => "I64",
            28 => "F64",
            30 => "BF16",
            other => return format!("type code {other}"),
        };
        known.to_string()
    }

    /// `(elements per block, bytes per block)` of the supported types, else `None`.
    pub fn block_layout(self) -> Option<(usize, usize)> {
        match self {
            Self::F32 => Some((1, 4)),
            Self::F16 | Self::BF16 => Some((1, 2)),
            Self::Q8_0 => Some((BLOCK, 2 + BLOCK)),
            Self::Q4_0 => Some((BLOCK, 2 + BLOCK / 2)),
            Self::Q4_1 => Some((BLOCK, 4 + BLOCK / 2)),
            _ => None,
        }
    }

    /// Bytes that `elements` elements of this type occupy: an error for unsupported types,
    /// element counts that are not whole blocks, and sizes beyond `usize`.
    pub fn byte_size(self, tensor: &str, elements: usize) -> Result<usize> {
        let (block_elements, block_bytes) = self.block_layout().ok_or_else(|| LlamaError::UnsupportedTensorType {
            tensor: tensor.to_string(),
            kind: self.name(),
        })?;
        if elements % block_elements != 0 {
            return Err(LlamaError::Malformed(format!(
                "tensor `{tensor}` ({}) has {elements} elements, not whole blocks of {block_elements}",
                self.name()
            )));
        }
        (elements / block_elements).checked_mul(block_bytes).ok_or_else(|| {
            LlamaError::Malformed(format!("tensor `{tensor}` ({}) of {elements} elements overflows the byte size", self.name()))
        })
    }
}

/// Dequantises `elements` elements of type `kind` from `bytes` (exactly their byte size).
pub fn dequantize(tensor: &str, kind: GgmlType, bytes: &[u8], elements: usize) -> Result<Vec<f32>> {
    let size = kind.byte_size(tensor, elements)?;
    if bytes.len() != size {
        return Err(LlamaError::Malformed(format!(
            "tensor `{tensor}` ({} x {elements}) needs {size} bytes, got {}",
            kind.name(),
            bytes.len()
        )));
    }
    let mut out = Vec::with_capacity(elements);
    match kind {
        GgmlType::F32 => out.extend(bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))),
        GgmlType::F16 => out.extend(bytes.chunks_exact(2).map(|b| f16::from_le_bytes([b[0], b[1]]).to_f32())),
        GgmlType::BF16 => out.extend(bytes.chunks_exact(2).map(|b| bf16::from_le_bytes([b[0], b[1]]).to_f32())),
        GgmlType::Q8_0 => {
            for block in bytes.chunks_exact(2 + BLOCK) {
                let scale = f16::from_le_bytes([block[0], block[1]]).to_f32();
                out.extend(block[2..].iter().map(|&q| scale * f32::from(q as i8)));
            }
        }
        GgmlType::Q4_0 => {
            for block in bytes.chunks_exact(2 + BLOCK / 2) {
                let scale = f16::from_le_bytes([block[0], block[1]]).to_f32();
                push_nibbles(&mut out, &block[2..], |q| scale * (q as f32 - 8.0));
            }
        }
        GgmlType::Q4_1 => {
            for block in bytes.chunks_exact(4 + BLOCK / 2) {
                let scale = f16::from_le_bytes([block[0], block[1]]).to_f32();
                let min = f16::from_le_bytes([block[2], block[3]]).to_f32();
                push_nibbles(&mut out, &block[4..], |q| scale * q as f32 + min);
            }
        }
        _ => {
            return Err(LlamaError::UnsupportedTensorType { tensor: tensor.to_string(), kind: kind.name() })
        }
    }
    Ok(out)
}

/// Low nibbles are the block's first half, high nibbles its second half.
fn push_nibbles(out: &mut Vec<f32>, quants: &[u8], value: impl Fn(u8) -> f32) {
    out.extend(quants.iter().map(|&q| value(q & 0x0f)));
    out.extend(quants.iter().map(|&q| value(q >> 4)));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f16_bytes(value: f32) -> [u8; 2] {
        f16::from_f32(value).to_le_bytes()
    }

    #[test]
    fn q8_0_is_scale_times_int8() {
        let mut block = f16_bytes(0.5).to_vec();
        block.extend((0..32).map(|i| (i as i8 - 16) as u8));
        let values = dequantize("t", GgmlType::Q8_0, &block, 32).unwrap();
        assert_eq!(values[0], -8.0);
        assert_eq!(values[31], 7.5);
    }

    #[test]
    fn q4_nibble_order_and_offsets() {
        let quants: Vec<u8> = (0..16u8).map(|i| i | ((15 - i) << 4)).collect();
        let mut q4_0 = f16_bytes(2.0).to_vec();
        q4_0.extend(&quants);
        let values = dequantize("t", GgmlType::Q4_0, &q4_0, 32).unwrap();
        assert_eq!(values[1], 2.0 * (1.0 - 8.0));
        assert_eq!(values[16], 2.0 * (15.0 - 8.0));

        let mut q4_1 = f16_bytes(0.25).to_vec();
        q4_1.extend(f16_bytes(-1.0));
        q4_1.extend(&quants);
        let values = dequantize("t", GgmlType::Q4_1, &q4_1, 32).unwrap();
        assert_eq!(values[2], 0.25 * 2.0 - 1.0);
        assert_eq!(values[31], 0.25 * 0.0 - 1.0);
    }

    #[test]
    fn unsupported_and_short_inputs_are_errors() {
        let err = dequantize("blk.0.w", GgmlType(12), &[0; 144], 256).unwrap_err();
        assert!(err.to_string().contains("Q4_K"), "{err}");
        assert!(dequantize("w", GgmlType::Q8_0, &[0; 33], 32).is_err());
        assert!(dequantize("w", GgmlType::Q8_0, &[0; 34], 31).is_err());
        // usize::MAX / 32 blocks of 34 bytes do not fit in usize.
        let err = GgmlType::Q8_0.byte_size("huge", usize::MAX / 32 * 32).unwrap_err();
        assert!(matches!(err, LlamaError::Malformed(_)), "{err}");
        assert_eq!(GgmlType::Q4_1.byte_size("w", 64).unwrap(), 40);
    }
}
