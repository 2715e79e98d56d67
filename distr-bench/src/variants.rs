//! The kernel variants the benchmark can time and check by name: the default, each stage of the
//! tensor-core path replaced by its predecessor, and the grouping stages measured by their
//! absence.

use clap::ValueEnum;
use distr_attn::kernel::{
    CopyStrategy, FragmentLoads, HyperplaneSource, KernelTuning, KeyFusion, Permutation, Strategy, TensorCoreTiling,
    TensorCoreVariant,
};

/// A named kernel variant (`--variants`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Variant {
    /// What models run: tensor cores where the device has them, cached hyperplanes, LSH.
    Default,
    /// The portable kernel on a device that has tensor cores.
    Portable,
    /// The cooperative-matrix kernel (`cmma`, what wgpu on Vulkan and Metal run) on a device
    /// whose default is the `mma` tensor-core kernel.
    Cooperative,
    /// The tensor-core forward kernel for a decode-sized call (one cube per query block and
    /// head), instead of split-key decode.
    ForwardKernel,
    /// Tensor cores with synchronous copies and per-lane fragment loads: the first step.
    SyncScalar,
    /// ... plus `ldmatrix` for Q and K.
    SyncMatrixQk,
    /// ... plus `ldmatrix.trans` for V.
    SyncMatrix,
    /// `cp.async` double buffering with per-lane fragment loads.
    AsyncScalar,
    /// Hyperplanes generated and uploaded on every call (G > 1).
    PerCallHyperplanes,
    /// Identity permutation: no hashing, no sort (G > 1; timing only for real data).
    IdentityPermutation,
    /// Hashing without the sort: the identity permutation at the cost of hashing (G > 1).
    HashOnly,
    /// K' never formed: the score product reads a stale tile (G > 1; timing only, wrong result).
    NoKeyFusion,
}

impl Variant {
    /// The kernel tuning of this variant with `tiling` (the measured default if `None`).
    pub fn tuning(self, tiling: Option<TensorCoreTiling>) -> KernelTuning {
        let tensor_cores = |copy, fragments, key_fusion| {
            Strategy::TensorCore(TensorCoreVariant { tiling, copy, fragments, key_fusion, head_group: None })
        };
        let default_tensor_cores = tensor_cores(CopyStrategy::DoubleBuffered, FragmentLoads::Matrix, KeyFusion::Fused);
        let strategy = match self {
            Variant::Default if tiling.is_none() => Strategy::Auto,
            Variant::Portable => Strategy::Portable,
            Variant::Cooperative => Strategy::Cooperative,
            Variant::ForwardKernel => default_tensor_cores,
            Variant::SyncScalar => tensor_cores(CopyStrategy::Synchronous, FragmentLoads::Scalar, KeyFusion::Fused),
            Variant::SyncMatrixQk => tensor_cores(CopyStrategy::Synchronous, FragmentLoads::MatrixQueryKey, KeyFusion::Fused),
            Variant::SyncMatrix => tensor_cores(CopyStrategy::Synchronous, FragmentLoads::Matrix, KeyFusion::Fused),
            Variant::AsyncScalar => tensor_cores(CopyStrategy::DoubleBuffered, FragmentLoads::Scalar, KeyFusion::Fused),
            Variant::NoKeyFusion => tensor_cores(CopyStrategy::DoubleBuffered, FragmentLoads::Matrix, KeyFusion::Skipped),
            _ => default_tensor_cores,
        };
        let hyperplanes = match self {
            Variant::PerCallHyperplanes => HyperplaneSource::PerCall,
            _ => HyperplaneSource::Cached,
        };
        let permutation = match self {
            Variant::IdentityPermutation => Permutation::Identity,
            Variant::HashOnly => Permutation::HashOnly,
            _ => Permutation::Lsh,
        };
        KernelTuning { strategy, hyperplanes, permutation, query_gradient: None }
    }

    /// Whether the variant computes DistrAttention (the others exist for timing).
    pub fn is_exact_function(self) -> bool {
        !matches!(self, Variant::IdentityPermutation | Variant::HashOnly | Variant::NoKeyFusion)
    }

    /// Whether the variant differs from the default only for G > 1.
    pub fn grouped_only(self) -> bool {
        matches!(
            self,
            Variant::PerCallHyperplanes | Variant::IdentityPermutation | Variant::HashOnly | Variant::NoKeyFusion
        )
    }

    /// The `--variants` spelling.
    pub fn name(self) -> String {
        self.to_possible_value().map(|value| value.get_name().to_string()).unwrap_or_default()
    }
}

/// The default tensor-core kernel with causal blocks launched `head_group` (batch, head) pairs at
/// a time (`--head-groups`).
pub fn head_group_tuning(head_group: usize) -> KernelTuning {
    let variant = TensorCoreVariant { head_group: Some(head_group), ..Default::default() };
    KernelTuning { strategy: Strategy::TensorCore(variant), ..KernelTuning::default() }
}

/// Parses one `--head-groups` entry: a positive count of (batch, head) pairs.
pub fn parse_head_group(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(group) if group > 0 => Ok(group),
        _ => Err(format!("head group {text:?}: expected a positive number of (batch, head) pairs")),
    }
}

/// Parses `4x2x64r` (`--tilings`): warps x row tiles per warp x key tile, `r` to keep Q' in
/// registers.
pub fn parse_tiling(text: &str) -> Result<TensorCoreTiling, String> {
    let (body, query_in_registers) = match text.strip_suffix('r') {
        Some(body) => (body, true),
        None => (text, false),
    };
    let numbers: Vec<usize> = body.split('x').map(str::parse).collect::<Result<_, _>>().map_err(|_| {
        format!("tiling {text:?}: expected <warps>x<row tiles>x<key tile>[r], e.g. 4x2x64r")
    })?;
    let [warps, warp_tiles, key_tile] = numbers[..] else {
        return Err(format!("tiling {text:?}: expected three numbers, e.g. 4x2x64r"));
    };
    if ![2, 4, 8].contains(&warps)
        || !TensorCoreTiling::WARP_TILES.contains(&warp_tiles)
        || !TensorCoreTiling::KEY_TILES.contains(&key_tile)
    {
        return Err(format!(
            "tiling {text:?}: warps must be 2, 4 or 8, row tiles one of {:?}, the key tile one of {:?}",
            TensorCoreTiling::WARP_TILES,
            TensorCoreTiling::KEY_TILES
        ));
    }
    Ok(TensorCoreTiling { warps, warp_tiles, key_tile, query_in_registers })
}

/// The `--tilings` spelling of a tiling.
pub fn tiling_name(tiling: &TensorCoreTiling) -> String {
    format!(
        "{}x{}x{}{}",
        tiling.warps,
        tiling.warp_tiles,
        tiling.key_tile,
        if tiling.query_in_registers { "r" } else { "" }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tilings_round_trip_and_bad_ones_are_refused() {
        for text in ["4x2x64r", "8x1x32", "2x2x128"] {
            assert_eq!(tiling_name(&parse_tiling(text).unwrap()), text);
        }
        for bad in ["4x2", "4x3x64", "4x2x48", "x", "16x1x64"] {
            assert!(parse_tiling(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn default_variant_without_tiling_is_what_models_run() {
        assert_eq!(Variant::Default.tuning(None), KernelTuning::default());
    }
}
