//! Learned position embeddings, resized to the input's patch grid.

use burn::tensor::backend::Backend;
use burn::tensor::Tensor;

use super::resize::{resize, Interpolation};

/// The kernel DINOv2 resizes its table with: PyTorch `bicubic` (exported to ONNX as
/// `Resize(mode=cubic, cubic_coeff_a=-0.75, half_pixel)`).
const POSITION_INTERPOLATION: Interpolation = Interpolation::Cubic { a: -0.75 };

/// The position embeddings for a `grid` of patches: the CLS entry unchanged, the
/// `table_grid × table_grid` patch entries resized bicubically to `grid` (unchanged when the
/// grids agree).
///
/// - table: `[1, 1 + table_grid^2, hidden]`
/// - output: `[1, 1 + grid[0] * grid[1], hidden]`
pub fn position_embeddings<B: Backend>(table: Tensor<B, 3>, table_grid: usize, grid: [usize; 2]) -> Tensor<B, 3> {
    if grid == [table_grid, table_grid] {
        return table;
    }
    let [_, _, hidden] = table.dims();
    let cls = table.clone().narrow(1, 0, 1);
    let patches = table
        .narrow(1, 1, table_grid * table_grid)
        .reshape([1, table_grid, table_grid, hidden])
        .permute([0, 3, 1, 2]);
    let patches = resize(patches, grid, POSITION_INTERPOLATION)
        .reshape([1, hidden, grid[0] * grid[1]])
        .swap_dims(1, 2);
    Tensor::cat(vec![cls, patches], 1)
}
