//! Remap tables: checkpoint names (PyTorch) to this crate's parameter paths.
//!
//! Each table is a list of rules tried in order; the first whose pattern matches a name
//! renames it (`$1`… are the pattern's groups) and says how to convert the tensor.

use std::collections::BTreeMap;

use burn::tensor::TensorData;
use regex::Regex;

use super::{Checkpoint, ImportError};

/// How a tensor is converted on its way into the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transform {
    /// Same layout.
    Keep,
    /// PyTorch `Linear` `[out, in]` to Burn `[in, out]`.
    TransposeLinear,
    /// timm's fused `qkv` (`[3 * hidden, ...]`): split into `query`, `key`, `value`
    /// (substituted for `{qkv}` in the target), weights transposed.
    SplitQkv,
}

/// One rename.
#[derive(Debug, Clone, Copy)]
pub struct Rule {
    pub pattern: &'static str,
    pub target: &'static str,
    pub transform: Transform,
}

const fn rule(pattern: &'static str, target: &'static str, transform: Transform) -> Rule {
    Rule { pattern, target, transform }
}

use Transform::{Keep, SplitQkv, TransposeLinear};

/// Hugging Face `Dinov2Model` (also the backbone names inside `vit_s_focus.onnx`).
/// `embeddings.mask_token` (masked-image training only) has no rule and is unused.
pub const HF_DINOV2: &[Rule] = &[
    rule(r"^embeddings\.cls_token$", "cls_token", Keep),
    rule(r"^embeddings\.position_embeddings$", "position_embedding", Keep),
    rule(r"^embeddings\.patch_embeddings\.projection\.(weight|bias)$", "patch_embed.projection.$1", Keep),
    rule(r"^encoder\.layer\.(\d+)\.norm(1|2)\.weight$", "blocks.$1.norm$2.gamma", Keep),
    rule(r"^encoder\.layer\.(\d+)\.norm(1|2)\.bias$", "blocks.$1.norm$2.beta", Keep),
    rule(r"^encoder\.layer\.(\d+)\.attention\.attention\.(query|key|value)\.weight$", "blocks.$1.attention.$2.weight", TransposeLinear),
    rule(r"^encoder\.layer\.(\d+)\.attention\.attention\.(query|key|value)\.bias$", "blocks.$1.attention.$2.bias", Keep),
    rule(r"^encoder\.layer\.(\d+)\.attention\.output\.dense\.weight$", "blocks.$1.attention.output.weight", TransposeLinear),
    rule(r"^encoder\.layer\.(\d+)\.attention\.output\.dense\.bias$", "blocks.$1.attention.output.bias", Keep),
    // transformers >= 5 names the projections like its language models.
    rule(r"^encoder\.layer\.(\d+)\.attention\.q_proj\.weight$", "blocks.$1.attention.query.weight", TransposeLinear),
    rule(r"^encoder\.layer\.(\d+)\.attention\.k_proj\.weight$", "blocks.$1.attention.key.weight", TransposeLinear),
    rule(r"^encoder\.layer\.(\d+)\.attention\.v_proj\.weight$", "blocks.$1.attention.value.weight", TransposeLinear),
    rule(r"^encoder\.layer\.(\d+)\.attention\.o_proj\.weight$", "blocks.$1.attention.output.weight", TransposeLinear),
    rule(r"^encoder\.layer\.(\d+)\.attention\.q_proj\.bias$", "blocks.$1.attention.query.bias", Keep),
    rule(r"^encoder\.layer\.(\d+)\.attention\.k_proj\.bias$", "blocks.$1.attention.key.bias", Keep),
    rule(r"^encoder\.layer\.(\d+)\.attention\.v_proj\.bias$", "blocks.$1.attention.value.bias", Keep),
    rule(r"^encoder\.layer\.(\d+)\.attention\.o_proj\.bias$", "blocks.$1.attention.output.bias", Keep),
    rule(r"^encoder\.layer\.(\d+)\.layer_scale(1|2)\.lambda1$", "blocks.$1.layer_scale$2.gamma", Keep),
    rule(r"^encoder\.layer\.(\d+)\.mlp\.(fc1|fc2)\.weight$", "blocks.$1.mlp.$2.weight", TransposeLinear),
    rule(r"^encoder\.layer\.(\d+)\.mlp\.(fc1|fc2)\.bias$", "blocks.$1.mlp.$2.bias", Keep),
    rule(r"^layernorm\.weight$", "norm.gamma", Keep),
    rule(r"^layernorm\.bias$", "norm.beta", Keep),
];

/// timm `VisionTransformer` (`vit_small_patch16_224` and relatives), head included.
pub const TIMM_VIT: &[Rule] = &[
    rule(r"^cls_token$", "cls_token", Keep),
    rule(r"^pos_embed$", "position_embedding", Keep),
    rule(r"^patch_embed\.proj\.(weight|bias)$", "patch_embed.projection.$1", Keep),
    rule(r"^blocks\.(\d+)\.norm(1|2)\.weight$", "blocks.$1.norm$2.gamma", Keep),
    rule(r"^blocks\.(\d+)\.norm(1|2)\.bias$", "blocks.$1.norm$2.beta", Keep),
    rule(r"^blocks\.(\d+)\.attn\.qkv\.(weight|bias)$", "blocks.$1.attention.{qkv}.$2", SplitQkv),
    rule(r"^blocks\.(\d+)\.attn\.proj\.weight$", "blocks.$1.attention.output.weight", TransposeLinear),
    rule(r"^blocks\.(\d+)\.attn\.proj\.bias$", "blocks.$1.attention.output.bias", Keep),
    rule(r"^blocks\.(\d+)\.ls(1|2)\.gamma$", "blocks.$1.layer_scale$2.gamma", Keep),
    rule(r"^blocks\.(\d+)\.mlp\.(fc1|fc2)\.weight$", "blocks.$1.mlp.$2.weight", TransposeLinear),
    rule(r"^blocks\.(\d+)\.mlp\.(fc1|fc2)\.bias$", "blocks.$1.mlp.$2.bias", Keep),
    rule(r"^norm\.weight$", "norm.gamma", Keep),
    rule(r"^norm\.bias$", "norm.beta", Keep),
    rule(r"^head\.weight$", "head.weight", TransposeLinear),
    rule(r"^head\.bias$", "head.bias", Keep),
];

/// The saliency decoder of `vit_s_focus.onnx` (PyTorch `ConvTranspose2d`, `BatchNorm2d`,
/// `Conv2d`; Burn keeps their weight layouts).
pub const SALIENCY_DECODER: &[Rule] = &[
    rule(r"^upconv(\d)\.(weight|bias)$", "upconv$1.$2", Keep),
    rule(r"^bn(\d)\.weight$", "bn$1.gamma", Keep),
    rule(r"^bn(\d)\.bias$", "bn$1.beta", Keep),
    rule(r"^bn(\d)\.(running_mean|running_var)$", "bn$1.$2", Keep),
    rule(r"^final_conv\.(weight|bias)$", "final_conv.$1", Keep),
];

/// A checkpoint renamed to parameter paths.
#[derive(Debug, Default)]
pub struct Remapped {
    /// Parameter path -> (checkpoint name, tensor in Burn layout).
    pub tensors: BTreeMap<String, (String, TensorData)>,
    /// Checkpoint names no rule matched.
    pub unused: Vec<String>,
}

impl Remapped {
    /// Renames the tensors of `checkpoint` whose names start with `source_prefix` by `rules`,
    /// putting `target_prefix` before each result. Names without the prefix are left for
    /// another call.
    pub fn add(
        &mut self,
        checkpoint: &mut Checkpoint,
        rules: &[Rule],
        source_prefix: &str,
        target_prefix: &str,
    ) -> Result<(), ImportError> {
        let compiled: Vec<(Regex, &Rule)> = rules
            .iter()
            .map(|rule| (Regex::new(rule.pattern).expect("remap patterns are valid regexes"), rule))
            .collect();
        let names: Vec<String> = checkpoint
            .tensors
            .keys()
            .filter(|name| name.starts_with(source_prefix))
            .cloned()
            .collect();
        for name in names {
            let Some(data) = checkpoint.tensors.remove(&name) else { continue };
            let local = &name[source_prefix.len()..];
            let Some((regex, rule)) = compiled.iter().find(|(regex, _)| regex.is_match(local)) else {
                self.unused.push(name);
                continue;
            };
            let target = format!("{target_prefix}{}", regex.replace(local, rule.target));
            match rule.transform {
                Transform::Keep => {
                    self.tensors.insert(target, (name, data));
                }
                Transform::TransposeLinear => {
                    let data = transpose(&name, data)?;
                    self.tensors.insert(target, (name, data));
                }
                Transform::SplitQkv => {
                    for (part, data) in ["query", "key", "value"].into_iter().zip(split_qkv(&name, data)?) {
                        self.tensors.insert(target.replace("{qkv}", part), (name.clone(), data));
                    }
                }
            }
        }
        Ok(())
    }
}

pub(crate) fn values(name: &str, data: &TensorData) -> Result<Vec<f32>, ImportError> {
    data.to_vec::<f32>().map_err(|_| ImportError::DType {
        tensor: name.to_string(),
        dtype: format!("{:?}", data.dtype),
    })
}

/// `[rows, columns]` -> `[columns, rows]`.
pub(crate) fn transpose(name: &str, data: TensorData) -> Result<TensorData, ImportError> {
    let [rows, columns] = data.shape[..] else {
        return Err(ImportError::Shape {
            tensor: name.to_string(),
            source_name: name.to_string(),
            actual: data.shape.to_vec(),
            expected: vec![0, 0],
        });
    };
    let values = values(name, &data)?;
    let mut transposed = vec![0f32; values.len()];
    for row in 0..rows {
        for column in 0..columns {
            transposed[column * rows + row] = values[row * columns + column];
        }
    }
    Ok(TensorData::new(transposed, [columns, rows]))
}

/// Splits a fused `[3 * hidden, in]` weight or `[3 * hidden]` bias into three, weights
/// transposed to `[in, hidden]`.
fn split_qkv(name: &str, data: TensorData) -> Result<[TensorData; 3], ImportError> {
    let shape = data.shape.to_vec();
    if shape.is_empty() || shape[0] % 3 != 0 || shape.len() > 2 {
        return Err(ImportError::Shape {
            tensor: name.to_string(),
            source_name: name.to_string(),
            actual: shape,
            expected: vec![3],
        });
    }
    let hidden = shape[0] / 3;
    let row = shape.get(1).copied().unwrap_or(1);
    let values = values(name, &data)?;
    let part = |index: usize| -> Result<TensorData, ImportError> {
        let chunk = values[index * hidden * row..(index + 1) * hidden * row].to_vec();
        if shape.len() == 2 {
            transpose(name, TensorData::new(chunk, [hidden, row]))
        } else {
            Ok(TensorData::new(chunk, [hidden]))
        }
    };
    Ok([part(0)?, part(1)?, part(2)?])
}
