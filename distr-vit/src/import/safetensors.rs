//! Weights from safetensors files with Hugging Face `Dinov2Model` or timm ViT names, read
//! through `burn-store`.

use std::path::Path;

use burn_store::{ModuleStore, SafetensorsStore};
use distr_attn::DistrAttentionBackend;

use super::names::{Remapped, HF_DINOV2, TIMM_VIT};
use super::{apply_checkpoint, Checkpoint, ImportError, LoadReport, Naming};
use crate::model::{Vit, VitConfig};

/// Reads every tensor of a safetensors file, cast to f32.
pub fn read_safetensors(path: &Path) -> Result<Checkpoint, ImportError> {
    if !path.is_file() {
        return Err(ImportError::Io {
            path: path.to_path_buf(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"),
        });
    }
    let parse_error = |message: String| ImportError::Parse {
        path: path.to_path_buf(),
        message,
    };
    let mut store = SafetensorsStore::from_file(path);
    let snapshots = store.get_all_snapshots().map_err(|error| parse_error(error.to_string()))?;
    let mut checkpoint = Checkpoint::default();
    for (name, snapshot) in snapshots {
        let data = snapshot
            .to_data()
            .map_err(|error| parse_error(format!("tensor `{name}`: {error:?}")))?;
        if !data.dtype.is_float() {
            return Err(ImportError::DType {
                tensor: name.clone(),
                dtype: format!("{:?}", data.dtype),
            });
        }
        checkpoint.tensors.insert(name.clone(), data.convert::<f32>());
    }
    Ok(checkpoint)
}

/// Builds a [`Vit`] from `config` and loads a Hugging Face `Dinov2Model` or timm ViT
/// safetensors file into it (the naming is detected from the tensor names).
pub fn load_safetensors<B: DistrAttentionBackend>(
    path: &Path,
    config: &VitConfig,
    device: &B::Device,
) -> Result<(Vit<B>, LoadReport), ImportError> {
    let mut checkpoint = read_safetensors(path)?;
    let rules = match checkpoint.naming() {
        Some(Naming::HfDinov2) => HF_DINOV2,
        Some(Naming::Timm) => TIMM_VIT,
        None => return Err(ImportError::UnknownNaming { path: path.to_path_buf() }),
    };
    let mut remapped = Remapped::default();
    remapped.add(&mut checkpoint, rules, "", "")?;
    let mut model = config.init(device)?;
    let report = apply_checkpoint(&mut model, remapped)?;
    Ok((model, report))
}
