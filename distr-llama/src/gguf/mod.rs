//! GGUF, the file format of llama.cpp: a header of typed metadata, tensor descriptions and an
//! aligned data section. [`reader`] parses it, [`dequant`] turns the stored blocks into `f32`.

pub mod dequant;
pub mod reader;

pub use dequant::{dequantize, GgmlType};
pub use reader::{GgufFile, MetadataValue, TensorInfo};
