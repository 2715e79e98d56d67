//! Checking renamed tensors against a model and applying them.

use burn::module::{Module, ParamId};
use burn::tensor::backend::Backend;
use burn_store::{ModuleSnapshot, TensorSnapshot};

use super::names::Remapped;
use super::ImportError;

/// What a successful load did.
#[derive(Debug, Clone)]
pub struct LoadReport {
    /// Parameters loaded.
    pub applied: usize,
    /// Checkpoint tensors the model has no place for.
    pub unused: Vec<String>,
}

/// Loads `remapped` into `module`.
///
/// Every parameter of the module must be present with its exact shape, else nothing is
/// changed and the error names the tensor. Tensors are cast to the parameter's dtype here, so
/// Burn's `apply` never sees a mismatch (a panic there would leave the module moved out).
pub fn apply_checkpoint<B: Backend, M: Module<B> + ModuleSnapshot<B>>(
    module: &mut M,
    mut remapped: Remapped,
) -> Result<LoadReport, ImportError> {
    let expected = module.collect(None, None, false);
    let mut snapshots = Vec::with_capacity(expected.len());
    for parameter in &expected {
        let path = parameter.full_path();
        let Some((source_name, data)) = remapped.tensors.remove(&path) else {
            let names = remapped.source_names(&path);
            return Err(ImportError::Missing {
                source_name: if names.is_empty() {
                    "nothing: no remap rule produces this parameter".into()
                } else {
                    names.iter().map(|name| format!("`{name}`")).collect::<Vec<_>>().join(" or ")
                },
                tensor: path,
            });
        };
        if data.shape != parameter.shape {
            return Err(ImportError::Shape {
                tensor: path,
                source_name,
                actual: data.shape.to_vec(),
                expected: parameter.shape.to_vec(),
            });
        }
        if !data.dtype.is_float() {
            return Err(ImportError::DType {
                tensor: source_name,
                dtype: format!("{:?}", data.dtype),
            });
        }
        let data = data.convert_dtype(parameter.dtype);
        let path_stack = path.split('.').map(str::to_string).collect();
        snapshots.push(TensorSnapshot::from_data(data, path_stack, Vec::new(), ParamId::new()));
    }
    let mut unused = remapped.unused;
    unused.extend(remapped.tensors.into_values().map(|(source_name, _)| source_name));
    let result = module.apply(snapshots, None, None, false);
    if !result.errors.is_empty() || !result.missing.is_empty() {
        return Err(ImportError::Apply(format!(
            "errors {:?}, missing {:?}",
            result.errors, result.missing
        )));
    }
    Ok(LoadReport {
        applied: result.applied.len(),
        unused,
    })
}
