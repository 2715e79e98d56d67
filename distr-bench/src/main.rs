//! `distr-bench`: times the fused DistrAttention kernel (G = 2, 4, 8), the same kernel as
//! exact flash attention (G = 1) and Burn's own `attention`, after an optional on-device
//! check of the kernel against the tensor-op reference. JSON lines on stdout with `--json`,
//! a table on stderr.

mod check;
mod timing;

use clap::{Parser, ValueEnum};
use distr_attn::kernel::MmaTiling;

/// Storage dtype of the inputs (accumulation is f32 throughout).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StorageDtype {
    F16,
    Bf16,
    F32,
}

#[derive(Debug, Parser)]
#[command(about = "Benchmark DistrAttention's fused kernel against exact attention and Burn's attention")]
pub struct Args {
    /// Batch size.
    #[arg(long, default_value_t = 4)]
    pub batch: usize,
    /// Heads (query and key/value).
    #[arg(long, default_value_t = 16)]
    pub heads: usize,
    /// Sequence lengths (seq_q = seq_k), comma separated.
    #[arg(long, value_delimiter = ',', default_values_t = [1024, 4096, 8192, 16384])]
    pub lengths: Vec<usize>,
    /// Head dims, comma separated.
    #[arg(long, value_delimiter = ',', default_values_t = [64, 128])]
    pub head_dims: Vec<usize>,
    /// Storage dtype.
    #[arg(long, value_enum, default_value_t = StorageDtype::F16)]
    pub dtype: StorageDtype,
    /// Causal settings to time, comma separated (`false,true` times both).
    #[arg(long, value_delimiter = ',', default_values_t = [false, true])]
    pub causal: Vec<bool>,
    /// DistrAttention group sizes to time (1 = our exact kernel), comma separated.
    #[arg(long, value_delimiter = ',', default_values_t = [1, 2, 4, 8])]
    pub group_sizes: Vec<usize>,
    /// Query rows per block (the kernel supports 64 and 128).
    #[arg(long, default_value_t = 64)]
    pub block_rows: usize,
    /// Longest sequence at which Burn's own attention is timed (its fallback paths can
    /// materialise the `[seq, seq]` scores).
    #[arg(long, default_value_t = 8192)]
    pub burn_max_len: usize,
    /// Stop timing one configuration after about this many milliseconds.
    #[arg(long, default_value_t = 1500.0)]
    pub budget_ms: f64,
    /// Tensor-core tilings to time (and check) next to the default, comma separated, each
    /// `<row tiles per warp>x<key tile>` with a `p` suffix for prefetching: `2x64p,1x64`.
    #[arg(long, value_delimiter = ',', value_parser = parse_tiling)]
    pub tilings: Vec<MmaTiling>,
    /// Run the kernel-vs-reference suite on the device first; exit non-zero on a mismatch.
    #[arg(long)]
    pub check: bool,
    /// Print one JSON object per measurement on stdout.
    #[arg(long)]
    pub json: bool,
}

/// Parses `2x64p` (see [`Args::tilings`]).
fn parse_tiling(text: &str) -> Result<MmaTiling, String> {
    let (body, prefetch) = match text.strip_suffix('p') {
        Some(body) => (body, true),
        None => (text, false),
    };
    let (warp_tiles, key_tile) = body
        .split_once('x')
        .and_then(|(tiles, keys)| Some((tiles.parse().ok()?, keys.parse().ok()?)))
        .ok_or_else(|| format!("tiling {text:?}: expected <row tiles>x<key tile>[p], e.g. 2x64p"))?;
    if !MmaTiling::WARP_TILES.contains(&warp_tiles) || !MmaTiling::KEY_TILES.contains(&key_tile) {
        return Err(format!(
            "tiling {text:?}: row tiles must be one of {:?} and the key tile one of {:?}",
            MmaTiling::WARP_TILES,
            MmaTiling::KEY_TILES
        ));
    }
    Ok(MmaTiling { warp_tiles, key_tile, prefetch })
}

/// The `--tilings` spelling of a tiling.
pub fn tiling_name(tiling: &MmaTiling) -> String {
    format!("{}x{}{}", tiling.warp_tiles, tiling.key_tile, if tiling.prefetch { "p" } else { "" })
}

fn main() {
    let args = Args::parse();
    let device = Default::default();
    if args.check {
        if let Err(failures) = check::run_suite::<timing::Bench>(&device, args.block_rows, &args.tilings) {
            eprintln!("check failed:\n{failures}");
            std::process::exit(1);
        }
    }
    timing::run_grid::<timing::Bench>(&args, &device);
}
