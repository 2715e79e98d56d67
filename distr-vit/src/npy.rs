//! NumPy `.npy` files (format 1.0, little-endian f32, C order): model outputs and fixtures.

use std::io::Write;
use std::path::{Path, PathBuf};

/// Why an `.npy` file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum NpyError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: {message}")]
    Format { path: PathBuf, message: String },
}

const MAGIC: &[u8] = b"\x93NUMPY";

/// Writes `values` with `shape` as a float32 `.npy` file.
pub fn write_f32(path: &Path, values: &[f32], shape: &[usize]) -> Result<(), NpyError> {
    let dims: Vec<String> = shape.iter().map(usize::to_string).collect();
    let shape_text = match dims.len() {
        1 => format!("({},)", dims[0]),
        _ => format!("({})", dims.join(", ")),
    };
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape_text}, }}");
    // The header (with magic, version, length and final newline) is padded to 64 bytes.
    let unpadded = MAGIC.len() + 4 + header.len() + 1;
    header.push_str(&" ".repeat((64 - unpadded % 64) % 64));
    header.push('\n');
    let mut bytes = Vec::with_capacity(unpadded + 64 + values.len() * 4);
    bytes.extend_from_slice(MAGIC);
    bytes.extend_from_slice(&[1, 0]);
    bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    for value in values {
        bytes.extend_from_slice(&value.to_le_bytes());
    }
    let io_error = |source| NpyError::Io { path: path.to_path_buf(), source };
    std::fs::File::create(path)
        .and_then(|mut file| file.write_all(&bytes))
        .map_err(io_error)
}

/// Reads a float32 `.npy` file: its values and shape.
pub fn read_f32(path: &Path) -> Result<(Vec<f32>, Vec<usize>), NpyError> {
    let bytes = std::fs::read(path).map_err(|source| NpyError::Io { path: path.to_path_buf(), source })?;
    let format_error = |message: &str| NpyError::Format {
        path: path.to_path_buf(),
        message: message.to_string(),
    };
    if bytes.len() < 10 || &bytes[..6] != MAGIC {
        return Err(format_error("not an .npy file"));
    }
    let (header_start, header_len) = match bytes[6] {
        1 => (10, u16::from_le_bytes([bytes[8], bytes[9]]) as usize),
        2 | 3 if bytes.len() >= 12 => (12, u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize),
        _ => return Err(format_error("unsupported .npy version")),
    };
    let header = bytes
        .get(header_start..header_start + header_len)
        .and_then(|header| std::str::from_utf8(header).ok())
        .ok_or_else(|| format_error("truncated header"))?;
    if !header.contains("'descr': '<f4'") || !header.contains("'fortran_order': False") {
        return Err(format_error("expected little-endian float32 in C order"));
    }
    let shape_text = header
        .split("'shape': (")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
        .ok_or_else(|| format_error("no shape in header"))?;
    let shape = shape_text
        .split(',')
        .map(str::trim)
        .filter(|dim| !dim.is_empty())
        .map(|dim| dim.parse::<usize>().map_err(|_| format_error("bad shape")))
        .collect::<Result<Vec<_>, _>>()?;
    let data = &bytes[header_start + header_len..];
    let count: usize = shape.iter().product();
    if data.len() != count * 4 {
        return Err(format_error("data length does not match the shape"));
    }
    let values = data
        .chunks_exact(4)
        .map(|chunk| f32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]))
        .collect();
    Ok((values, shape))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let path = std::env::temp_dir().join(format!("distr-vit-npy-{}.npy", std::process::id()));
        write_f32(&path, &[1.0, -2.5, 3.0, 4.0, 5.0, 6.0], &[1, 2, 3]).unwrap();
        let (values, shape) = read_f32(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(shape, vec![1, 2, 3]);
        assert_eq!(values, vec![1.0, -2.5, 3.0, 4.0, 5.0, 6.0]);
    }
}
