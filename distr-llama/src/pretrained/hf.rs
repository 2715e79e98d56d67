//! A Hugging Face checkpoint directory: `config.json` and one or more `*.safetensors`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use half::{bf16, f16};
use safetensors::{Dtype, SafeTensors};

use crate::error::{LlamaError, Result};
use crate::model::{HfLlamaConfig, LlamaConfig};
use crate::pretrained::WeightSource;

/// The safetensors files of a checkpoint, held in memory, and which file holds each tensor.
pub struct HfCheckpoint {
    pub config: LlamaConfig,
    files: Vec<(PathBuf, Vec<u8>)>,
    index: HashMap<String, usize>,
}

impl HfCheckpoint {
    /// Reads `dir/config.json` and every `dir/*.safetensors` (shards in any number).
    pub fn open(dir: &Path) -> Result<Self> {
        let config = read_config(dir)?;

        let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(LlamaError::io(dir))?
            .filter_map(|entry| entry.ok().map(|entry| entry.path()))
            .filter(|path| path.extension().is_some_and(|ext| ext == "safetensors"))
            .collect();
        paths.sort();
        if paths.is_empty() {
            return Err(LlamaError::NoSafetensors(dir.to_path_buf()));
        }
        let mut files = Vec::new();
        let mut index = HashMap::new();
        for path in paths {
            let bytes = std::fs::read(&path).map_err(LlamaError::io(&path))?;
            let tensors = SafeTensors::deserialize(&bytes).map_err(|e| safetensors_error(&path, e))?;
            for name in tensors.names() {
                index.insert(name.to_string(), files.len());
            }
            files.push((path, bytes));
        }
        Ok(Self { config, files, index })
    }
}

/// The runtime configuration of the checkpoint directory `dir` (its `config.json`).
pub fn read_config(dir: &Path) -> Result<LlamaConfig> {
    let config_path = dir.join("config.json");
    let text = std::fs::read_to_string(&config_path).map_err(LlamaError::io(&config_path))?;
    let hf_config: HfLlamaConfig =
        serde_json::from_str(&text).map_err(|source| LlamaError::Json { path: config_path, source })?;
    hf_config.to_config()
}

impl WeightSource for HfCheckpoint {
    fn tensor(&self, name: &str) -> Result<(Vec<f32>, Vec<usize>)> {
        let &file = self.index.get(name).ok_or_else(|| LlamaError::MissingTensor(name.to_string()))?;
        let (path, bytes) = &self.files[file];
        let tensors = SafeTensors::deserialize(bytes).map_err(|e| safetensors_error(path, e))?;
        let view = tensors.tensor(name).map_err(|e| safetensors_error(path, e))?;
        let data = view.data();
        let values: Vec<f32> = match view.dtype() {
            Dtype::F32 => data.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect(),
            Dtype::F16 => data.chunks_exact(2).map(|b| f16::from_le_bytes([b[0], b[1]]).to_f32()).collect(),
            Dtype::BF16 => data.chunks_exact(2).map(|b| bf16::from_le_bytes([b[0], b[1]]).to_f32()).collect(),
            other => {
                return Err(LlamaError::UnsupportedTensorType {
                    tensor: name.to_string(),
                    kind: format!("{other:?} (safetensors)"),
                })
            }
        };
        Ok((values, view.shape().to_vec()))
    }
}

fn safetensors_error(path: &Path, error: safetensors::SafeTensorError) -> LlamaError {
    LlamaError::Safetensors { path: path.to_path_buf(), message: error.to_string() }
}
