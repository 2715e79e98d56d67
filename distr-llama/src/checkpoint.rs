//! Checkpoints: a whole [`Llama`] saved with Burn's named MessagePack recorder at full
//! precision, so that a reloaded model gives the same logits bit for bit. The loaders still
//! supply the configuration and tokenizer (`--model`); the checkpoint replaces the weights.

use std::path::{Path, PathBuf};

use burn::module::{Module, ModuleVisitor, Param};
use burn::record::{FullPrecisionSettings, NamedMpkFileRecorder, Recorder};
use burn::tensor::backend::Backend;
use burn::tensor::Tensor;

use crate::error::{LlamaError, Result};
use crate::model::Llama;

type CheckpointRecorder = NamedMpkFileRecorder<FullPrecisionSettings>;

/// The file a checkpoint named `path` lives in: the recorder's `.mpk` extension added.
pub fn checkpoint_file(path: &Path) -> PathBuf {
    path.with_extension("mpk")
}

/// Writes `model` to `path` (`.mpk` added). Adapters must be merged first
/// ([`Llama::merge_adapters`]): a checkpoint has the plain structure the loaders build.
pub fn save_checkpoint<B: Backend>(model: Llama<B>, path: &Path) -> Result<()> {
    if model.layers.iter().any(|layer| layer.attention.adapters.is_some()) {
        return Err(LlamaError::Checkpoint {
            path: path.to_path_buf(),
            message: "the model still has LoRA adapters: merge them before saving".into(),
        });
    }
    if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(LlamaError::io(dir))?;
    }
    CheckpointRecorder::new()
        .record(model.into_record(), path.to_path_buf())
        .map_err(|e| LlamaError::Checkpoint { path: path.to_path_buf(), message: e.to_string() })
}

/// `model` (built from the same configuration) with the weights of the checkpoint `path`.
/// Every parameter's shape is checked against `model`'s: a checkpoint of another model is an
/// error naming the first parameter that differs.
pub fn load_checkpoint<B: Backend>(model: Llama<B>, path: &Path, device: &B::Device) -> Result<Llama<B>> {
    let file = checkpoint_file(path);
    if !file.is_file() {
        return Err(LlamaError::Checkpoint { path: file, message: "no such file".into() });
    }
    let record = CheckpointRecorder::new()
        .load(file.clone(), device)
        .map_err(|e| LlamaError::Checkpoint { path: file.clone(), message: e.to_string() })?;
    let expected = ParameterShapes::of(&model);
    let loaded = model.load_record(record);
    let actual = ParameterShapes::of(&loaded);
    if let Some(message) = expected.difference(&actual) {
        return Err(LlamaError::Checkpoint { path: file, message });
    }
    Ok(loaded)
}

/// Every float parameter's path and shape, in visiting order.
#[derive(Default)]
struct ParameterShapes {
    path: Vec<String>,
    shapes: Vec<(String, Vec<usize>)>,
}

impl ParameterShapes {
    fn of<B: Backend>(model: &Llama<B>) -> Self {
        let mut shapes = Self::default();
        model.visit(&mut shapes);
        shapes
    }

    fn difference(&self, other: &Self) -> Option<String> {
        for (index, (name, shape)) in self.shapes.iter().enumerate() {
            match other.shapes.get(index) {
                Some((_, other_shape)) if other_shape == shape => {}
                Some((_, other_shape)) => {
                    return Some(format!("parameter `{name}` has shape {other_shape:?}, the model expects {shape:?}"))
                }
                None => return Some(format!("parameter `{name}` is missing")),
            }
        }
        (other.shapes.len() > self.shapes.len())
            .then(|| format!("{} parameters, the model has {}", other.shapes.len(), self.shapes.len()))
    }
}

impl<B: Backend> ModuleVisitor<B> for ParameterShapes {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        self.shapes.push((self.path.join("."), param.val().dims().to_vec()));
    }
}
