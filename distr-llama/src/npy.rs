//! Writing float32 arrays as NumPy `.npy` (format 1.0), for `distr-llama logits`.

use std::io::Write;
use std::path::Path;

use crate::error::{LlamaError, Result};

/// Writes `values` with C-order `shape` to `path`.
pub fn write_f32(path: &Path, values: &[f32], shape: &[usize]) -> Result<()> {
    let dims: Vec<String> = shape.iter().map(usize::to_string).collect();
    let shape_text = if dims.len() == 1 { format!("({},)", dims[0]) } else { format!("({})", dims.join(", ")) };
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape_text}, }}");
    // Magic (6) + version (2) + length (2) + header + newline, padded to 64 bytes.
    let unpadded = 10 + header.len() + 1;
    header.push_str(&" ".repeat(unpadded.div_ceil(64) * 64 - unpadded));
    header.push('\n');

    let mut bytes = Vec::with_capacity(10 + header.len() + 4 * values.len());
    bytes.extend(b"\x93NUMPY\x01\x00");
    bytes.extend((header.len() as u16).to_le_bytes());
    bytes.extend(header.as_bytes());
    bytes.extend(values.iter().flat_map(|v| v.to_le_bytes()));
    std::fs::File::create(path)
        .and_then(|mut file| file.write_all(&bytes))
        .map_err(LlamaError::io(path))
}
