//! Trained weights saved with Burn's named MessagePack recorder at full precision, so that a
//! reloaded model gives the same outputs bit for bit. A checkpoint holds the weights only: the
//! model's loader still supplies its configuration, and its attention is chosen at run time.

use std::path::{Path, PathBuf};

use burn::module::{Module, ModuleVisitor, Param};
use burn::record::{FullPrecisionSettings, NamedMpkFileRecorder, Recorder};
use burn::tensor::backend::Backend;
use burn::tensor::Tensor;

use super::ExperimentError;

/// The recorder checkpoints are written with.
pub type CheckpointRecorder = NamedMpkFileRecorder<FullPrecisionSettings>;

/// The file a checkpoint named `path` lives in: the recorder's `.mpk` extension set.
pub fn checkpoint_file(path: &Path) -> PathBuf {
    path.with_extension("mpk")
}

/// Writes every weight of `model` to [`checkpoint_file`]`(path)`, creating its folder;
/// returns the file written.
pub fn save_checkpoint<B: Backend, M: Module<B>>(model: M, path: &Path) -> Result<PathBuf, ExperimentError> {
    let file = checkpoint_file(path);
    if let Some(dir) = file.parent().filter(|dir| !dir.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|source| ExperimentError::Io { path: dir.to_path_buf(), source })?;
    }
    CheckpointRecorder::new()
        .record(model.into_record(), file.clone())
        .map_err(|error| ExperimentError::Checkpoint { path: file.clone(), message: error.to_string() })?;
    Ok(file)
}

/// `model` (built from the same configuration) with the weights of the checkpoint `path`.
/// Every parameter's shape is checked against `model`'s (the recorder does not): a checkpoint
/// of another model is an error naming the first parameter that differs.
pub fn load_checkpoint<B: Backend, M: Module<B>>(model: M, path: &Path, device: &B::Device) -> Result<M, ExperimentError> {
    let file = checkpoint_file(path);
    if !file.is_file() {
        let message = "no such file (checkpoints are read with the .mpk extension)".to_string();
        return Err(ExperimentError::Checkpoint { path: file, message });
    }
    let record = CheckpointRecorder::new()
        .load(file.clone(), device)
        .map_err(|error| ExperimentError::Checkpoint { path: file.clone(), message: error.to_string() })?;
    let expected = ParameterShapes::of(&model);
    let loaded = model.load_record(record);
    if let Some(message) = expected.difference(&ParameterShapes::of(&loaded)) {
        return Err(ExperimentError::Checkpoint { path: file, message });
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
    fn of<B: Backend, M: Module<B>>(model: &M) -> Self {
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

#[cfg(test)]
mod tests {
    use burn::nn::{Linear, LinearConfig};

    use super::*;
    use crate::tests::TestBackend as B;

    #[test]
    fn weights_round_trip_and_a_checkpoint_of_another_shape_is_named() {
        let device = Default::default();
        let dir = std::env::temp_dir().join(format!("distr-attn-checkpoint-{}", std::process::id()));
        let linear: Linear<B> = LinearConfig::new(3, 2).init(&device);
        // Parameters initialise lazily, each clone on its own: read them before cloning.
        let expected = linear.weight.val().into_data();
        let written = save_checkpoint(linear.clone(), &dir.join("linear")).unwrap();
        assert_eq!(written, dir.join("linear.mpk"));
        let fresh: Linear<B> = LinearConfig::new(3, 2).init(&device);
        let loaded = load_checkpoint(fresh, &dir.join("linear.json"), &device).unwrap();
        assert_eq!(loaded.weight.val().into_data(), expected);

        let wider: Linear<B> = LinearConfig::new(4, 2).init(&device);
        let error = load_checkpoint(wider, &written, &device).unwrap_err().to_string();
        assert!(error.contains("parameter `weight` has shape [3, 2], the model expects [4, 2]"), "{error}");
        let error = load_checkpoint(linear, &dir.join("missing"), &device).unwrap_err().to_string();
        assert!(error.contains("missing.mpk") && error.contains("no such file"), "{error}");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
