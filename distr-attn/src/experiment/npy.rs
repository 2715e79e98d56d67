//! NumPy `.npy` files (format 1.0 written; 1.0 to 3.0 read), little-endian float32 in C
//! order: model outputs and test fixtures.

use std::path::Path;

use super::ExperimentError;

const MAGIC: &[u8] = b"\x93NUMPY";

/// Writes `values` with C-order `shape` as a float32 `.npy` file.
pub fn write_f32(path: &Path, values: &[f32], shape: &[usize]) -> Result<(), ExperimentError> {
    let count: usize = shape.iter().product();
    if count != values.len() {
        return Err(ExperimentError::Format {
            path: path.to_path_buf(),
            message: format!("{} values do not fill the shape {shape:?}", values.len()),
        });
    }
    let dims: Vec<String> = shape.iter().map(usize::to_string).collect();
    let shape_text = match dims.len() {
        1 => format!("({},)", dims[0]),
        _ => format!("({})", dims.join(", ")),
    };
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape_text}, }}");
    // Magic, version and length (10 bytes), the header and its newline, padded to 64 bytes.
    let unpadded = MAGIC.len() + 4 + header.len() + 1;
    header.push_str(&" ".repeat(unpadded.div_ceil(64) * 64 - unpadded));
    header.push('\n');
    let mut bytes = Vec::with_capacity(MAGIC.len() + 4 + header.len() + 4 * values.len());
    bytes.extend_from_slice(MAGIC);
    bytes.extend_from_slice(&[1, 0]);
    bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend(values.iter().flat_map(|value| value.to_le_bytes()));
    std::fs::write(path, bytes).map_err(|source| ExperimentError::Io { path: path.to_path_buf(), source })
}

/// Reads a float32 `.npy` file: its values and shape.
pub fn read_f32(path: &Path) -> Result<(Vec<f32>, Vec<usize>), ExperimentError> {
    let bytes = std::fs::read(path).map_err(|source| ExperimentError::Io { path: path.to_path_buf(), source })?;
    let format_error = |message: &str| ExperimentError::Format {
        path: path.to_path_buf(),
        message: format!("{message} (expected a float32 .npy file)"),
    };
    if bytes.len() < 10 || &bytes[..6] != MAGIC {
        return Err(format_error("not an .npy file"));
    }
    let (header_start, header_len): (usize, usize) = match bytes[6] {
        1 => (10, u16::from_le_bytes([bytes[8], bytes[9]]) as usize),
        2 | 3 if bytes.len() >= 12 => (12, u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize),
        _ => return Err(format_error("unsupported .npy version")),
    };
    let header = header_start
        .checked_add(header_len)
        .and_then(|end| bytes.get(header_start..end))
        .and_then(|header| std::str::from_utf8(header).ok())
        .ok_or_else(|| format_error("truncated header"))?;
    if !header.contains("'descr': '<f4'") || !header.contains("'fortran_order': False") {
        return Err(format_error("not little-endian float32 in C order"));
    }
    let shape_text = header
        .split("'shape': (")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
        .ok_or_else(|| format_error("no shape in the header"))?;
    let shape = shape_text
        .split(',')
        .map(str::trim)
        .filter(|dim| !dim.is_empty())
        .map(|dim| dim.parse::<usize>().map_err(|_| format_error("bad shape")))
        .collect::<Result<Vec<_>, _>>()?;
    let data = &bytes[header_start + header_len..];
    let count = shape.iter().try_fold(1usize, |count, &dim| count.checked_mul(dim));
    if count.and_then(|count| count.checked_mul(4)) != Some(data.len()) {
        return Err(format_error(&format!("{} data bytes do not hold the shape {shape:?}", data.len())));
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
    fn round_trip_with_a_64_byte_header() {
        let path = std::env::temp_dir().join(format!("distr-attn-npy-{}.npy", std::process::id()));
        write_f32(&path, &[1.0, -2.5, 3.0, 4.0, 5.0, 6.0], &[1, 2, 3]).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 128 + 6 * 4);
        let (values, shape) = read_f32(&path).unwrap();
        assert_eq!(shape, vec![1, 2, 3]);
        assert_eq!(values, vec![1.0, -2.5, 3.0, 4.0, 5.0, 6.0]);
        std::fs::write(&path, b"\x93NUMPY\x01\x00\xff\xff{").unwrap();
        assert!(read_f32(&path).unwrap_err().to_string().contains("truncated header"));
        assert!(write_f32(&path, &[1.0], &[2]).is_err());
        std::fs::remove_file(&path).unwrap();
    }
}
