//! Fine-tuned weights of the saliency model, saved and loaded with Burn's recorder (named
//! MessagePack, full precision), so that `saliency`, `eval`, `bench` and `calibrate` can run
//! a model that `finetune` distilled.
//!
//! A checkpoint holds every weight of [`SaliencyModel`]; the attention of each layer is not
//! part of it (it is chosen at run time, as for the ONNX weights).

use std::path::{Path, PathBuf};

use burn::module::{Module, ModuleVisitor, Param};
use burn::record::{FullPrecisionSettings, NamedMpkFileRecorder};
use burn::tensor::Tensor;
use distr_attn::DistrAttentionBackend;

use crate::model::SaliencyModel;

/// The recorder checkpoints are written with. It gives the file the `.mpk` extension.
pub type CheckpointRecorder = NamedMpkFileRecorder<FullPrecisionSettings>;

/// Why a checkpoint could not be saved or loaded.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// The recorder failed to write the file.
    #[error("cannot save checkpoint {path}: {message}")]
    Save { path: PathBuf, message: String },
    /// The file is missing or is not a record of this model.
    #[error("cannot load checkpoint {path}: {message}")]
    Load { path: PathBuf, message: String },
    /// The file is a record of a model of another size.
    #[error("checkpoint {path} does not fit the model: parameter {index} has shape {found:?}, expected {expected:?}")]
    Shape {
        path: PathBuf,
        index: usize,
        found: Vec<usize>,
        expected: Vec<usize>,
    },
}

/// Writes every weight of `model` to `path` (extension set to `.mpk`); returns the path written.
pub fn save_checkpoint<B: DistrAttentionBackend>(model: &SaliencyModel<B>, path: &Path) -> Result<PathBuf, CheckpointError> {
    let written = path.with_extension("mpk");
    model
        .clone()
        .save_file(written.clone(), &CheckpointRecorder::new())
        .map_err(|error| CheckpointError::Save {
            path: written.clone(),
            message: error.to_string(),
        })?;
    Ok(written)
}

/// Replaces the weights of `model` by those in `path`, checking that every parameter keeps
/// its shape (the recorder itself does not).
pub fn load_checkpoint<B: DistrAttentionBackend>(
    model: SaliencyModel<B>,
    path: &Path,
    device: &B::Device,
) -> Result<SaliencyModel<B>, CheckpointError> {
    // The recorder reads `path` with its extension replaced by `.mpk`; say so when that
    // file is missing rather than report a file that may exist under another extension.
    let file = path.with_extension("mpk");
    if !file.is_file() {
        return Err(CheckpointError::Load {
            path: path.to_path_buf(),
            message: format!("no such file {} (checkpoints are read with the .mpk extension)", file.display()),
        });
    }
    let expected = parameter_shapes(&model);
    let loaded = model
        .load_file(path.to_path_buf(), &CheckpointRecorder::new(), device)
        .map_err(|error| CheckpointError::Load {
            path: path.to_path_buf(),
            message: error.to_string(),
        })?;
    let found = parameter_shapes(&loaded);
    if let Some(index) = (0..expected.len().max(found.len())).find(|&i| expected.get(i) != found.get(i)) {
        return Err(CheckpointError::Shape {
            path: path.to_path_buf(),
            index,
            found: found.get(index).cloned().unwrap_or_default(),
            expected: expected.get(index).cloned().unwrap_or_default(),
        });
    }
    Ok(loaded)
}

/// Shapes of the float parameters in visiting order.
fn parameter_shapes<B: DistrAttentionBackend>(model: &SaliencyModel<B>) -> Vec<Vec<usize>> {
    struct Shapes(Vec<Vec<usize>>);
    impl<B: DistrAttentionBackend> ModuleVisitor<B> for Shapes {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            self.0.push(param.val().dims().to_vec());
        }
    }
    let mut shapes = Shapes(Vec::new());
    model.visit(&mut shapes);
    shapes.0
}
