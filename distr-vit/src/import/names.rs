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

impl Rule {
    /// The checkpoint name this rule renames to `target` (a parameter path without prefix),
    /// if `target` is one of its results: the rule run backwards, for error messages.
    pub fn source_name(&self, target: &str) -> Option<String> {
        let pieces = pattern_pieces(self.pattern)?;
        let groups: Vec<&str> = pieces.iter().filter_map(|piece| piece.group()).collect();
        // The target as a regex: `$N` matches what group N of the pattern matches.
        let mut target_regex = String::from("^");
        let mut captured = Vec::new();
        let mut rest = self.target;
        while let Some(start) = rest.find(['$', '{']) {
            target_regex.push_str(&regex::escape(&rest[..start]));
            rest = &rest[start..];
            if let Some(after) = rest.strip_prefix("{qkv}") {
                target_regex.push_str("(?:query|key|value)");
                rest = after;
                continue;
            }
            let digits = rest[1..].chars().take_while(char::is_ascii_digit).count();
            let index: usize = rest[1..1 + digits].parse().ok()?;
            target_regex.push_str(&format!("({})", groups.get(index.checked_sub(1)?)?));
            captured.push(index);
            rest = &rest[1 + digits..];
        }
        target_regex.push_str(&regex::escape(rest));
        target_regex.push('$');
        let found = Regex::new(&target_regex).ok()?.captures(target)?;
        let mut values = vec![None; groups.len()];
        for (capture, &index) in captured.iter().enumerate() {
            values[index - 1] = Some(found.get(capture + 1)?.as_str());
        }
        let mut group = 0;
        let mut name = String::new();
        for piece in &pieces {
            match piece {
                PatternPiece::Literal(text) => name.push_str(text),
                PatternPiece::Group(_) => {
                    name.push_str(values[group]?);
                    group += 1;
                }
            }
        }
        Some(name)
    }
}

/// A remap pattern split into literal text and capture groups.
enum PatternPiece<'a> {
    Literal(String),
    Group(&'a str),
}

impl PatternPiece<'_> {
    fn group(&self) -> Option<&str> {
        match self {
            PatternPiece::Group(text) => Some(text),
            PatternPiece::Literal(_) => None,
        }
    }
}

/// `^a\.(\d+)\.b$` -> `a.`, group `\d+`, `.b`. Only the forms the tables use: anchors,
/// escaped characters and unnested groups; anything else gives `None`.
fn pattern_pieces(pattern: &str) -> Option<Vec<PatternPiece<'_>>> {
    let body = pattern.strip_prefix('^')?.strip_suffix('$')?;
    let mut pieces = Vec::new();
    let mut literal = String::new();
    let mut position = 0;
    while let Some(character) = body[position..].chars().next() {
        match character {
            '\\' => {
                let escaped = body[position + 1..].chars().next()?;
                literal.push(escaped);
                position += 1 + escaped.len_utf8();
            }
            '(' => {
                let end = position + body[position..].find(')')?;
                let group = &body[position + 1..end];
                if group.contains('(') {
                    return None;
                }
                pieces.push(PatternPiece::Literal(std::mem::take(&mut literal)));
                pieces.push(PatternPiece::Group(group));
                position = end + 1;
            }
            '.' | '*' | '+' | '?' | '[' | ']' | '|' | '{' | '}' | ')' | '^' | '$' => return None,
            other => {
                literal.push(other);
                position += other.len_utf8();
            }
        }
    }
    pieces.push(PatternPiece::Literal(literal));
    Some(pieces)
}

/// A checkpoint renamed to parameter paths.
#[derive(Debug, Default)]
pub struct Remapped {
    /// Parameter path -> (checkpoint name, tensor in Burn layout).
    pub tensors: BTreeMap<String, (String, TensorData)>,
    /// Checkpoint names no rule matched.
    pub unused: Vec<String>,
    /// The tables applied, with their source and target prefixes (for [`Self::source_names`]).
    tables: Vec<(&'static [Rule], String, String)>,
}

impl Remapped {
    /// Renames the tensors of `checkpoint` whose names start with `source_prefix` by `rules`,
    /// putting `target_prefix` before each result. Names without the prefix are left for
    /// another call.
    pub fn add(
        &mut self,
        checkpoint: &mut Checkpoint,
        rules: &'static [Rule],
        source_prefix: &str,
        target_prefix: &str,
    ) -> Result<(), ImportError> {
        self.tables.push((rules, source_prefix.to_string(), target_prefix.to_string()));
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

impl Remapped {
    /// The checkpoint names that the tables applied so far would rename to parameter `path`,
    /// in rule order (several where a format has two spellings, as Hugging Face's
    /// `attention.attention.query` and `attention.q_proj`).
    pub fn source_names(&self, path: &str) -> Vec<String> {
        let mut names = Vec::new();
        for (rules, source_prefix, target_prefix) in &self.tables {
            let Some(local) = path.strip_prefix(target_prefix.as_str()) else { continue };
            for rule in rules.iter() {
                if let Some(name) = rule.source_name(local) {
                    let name = format!("{source_prefix}{name}");
                    if !names.contains(&name) {
                        names.push(name);
                    }
                }
            }
        }
        names
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Renames `name` forwards with the first matching rule of `rules`, then back.
    fn round_trip(rules: &[Rule], name: &str) -> (String, Option<String>) {
        let rule = rules
            .iter()
            .find(|rule| Regex::new(rule.pattern).unwrap().is_match(name))
            .unwrap_or_else(|| panic!("no rule for {name}"));
        let target = Regex::new(rule.pattern).unwrap().replace(name, rule.target).replace("{qkv}", "key");
        let back = rule.source_name(&target);
        (target, back)
    }

    #[test]
    fn every_rule_runs_backwards() {
        let cases: [(&[Rule], &[&str]); 3] = [
            (HF_DINOV2, &[
                "embeddings.cls_token",
                "embeddings.position_embeddings",
                "embeddings.patch_embeddings.projection.bias",
                "encoder.layer.11.norm2.weight",
                "encoder.layer.3.norm1.bias",
                "encoder.layer.0.attention.attention.value.weight",
                "encoder.layer.7.attention.attention.query.bias",
                "encoder.layer.2.attention.output.dense.weight",
                "encoder.layer.2.attention.output.dense.bias",
                "encoder.layer.5.attention.k_proj.weight",
                "encoder.layer.5.attention.o_proj.bias",
                "encoder.layer.10.layer_scale2.lambda1",
                "encoder.layer.1.mlp.fc2.weight",
                "encoder.layer.1.mlp.fc1.bias",
                "layernorm.weight",
                "layernorm.bias",
            ]),
            (TIMM_VIT, &[
                "cls_token",
                "pos_embed",
                "patch_embed.proj.weight",
                "blocks.4.norm1.weight",
                "blocks.4.attn.qkv.weight",
                "blocks.4.attn.qkv.bias",
                "blocks.9.attn.proj.bias",
                "blocks.9.ls1.gamma",
                "blocks.0.mlp.fc2.bias",
                "norm.bias",
                "head.weight",
            ]),
            (SALIENCY_DECODER, &["upconv3.weight", "bn1.running_var", "bn2.weight", "final_conv.bias"]),
        ];
        for (rules, names) in cases {
            for name in names {
                let (target, back) = round_trip(rules, name);
                assert_eq!(back.as_deref(), Some(*name), "{name} -> {target} -> {back:?}");
            }
        }
    }

    #[test]
    fn both_hugging_face_spellings_are_named() {
        let mut remapped = Remapped::default();
        remapped.add(&mut Checkpoint::default(), HF_DINOV2, "backbone.", "backbone.").unwrap();
        assert_eq!(
            remapped.source_names("backbone.blocks.4.attention.query.weight"),
            vec![
                "backbone.encoder.layer.4.attention.attention.query.weight".to_string(),
                "backbone.encoder.layer.4.attention.q_proj.weight".to_string(),
            ]
        );
        assert!(remapped.source_names("head.weight").is_empty());
    }
}
