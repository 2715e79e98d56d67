//! Steps 2-3 of the definition: sign codes of the query block's columns under random
//! hyperplanes, and their inverse Gray code, the sort key.

use burn::tensor::backend::Backend;
use burn::tensor::{ElementConversion, Int, Tensor, TensorData};

/// Sign codes `[batch, heads, blocks, head_dim]` of each column of each query block
/// `[batch, heads, blocks, block_rows, head_dim]`: bit `p` (value `2^p`) is set when the
/// column's dot product with hyperplane `p` is positive.
///
/// `hyperplanes` is `[num_projections, block_rows]` row-major, as
/// [`crate::hyperplanes`] returns it.
pub fn sign_codes<B: Backend>(
    blocks: Tensor<B, 5>,
    hyperplanes: &[f32],
    num_projections: usize,
) -> Tensor<B, 4, Int> {
    let [batch, heads, num_blocks, block_rows, head_dim] = blocks.dims();
    let device = blocks.device();
    let planes = Tensor::<B, 2>::from_data(
        TensorData::new(hyperplanes.to_vec(), [num_projections, block_rows]),
        &device,
    )
    .cast(blocks.dtype());
    // Columns as vectors in R^block_rows: [.., head_dim, block_rows] x [block_rows, P].
    let projections = blocks.swap_dims(3, 4).matmul(
        planes
            .transpose()
            .reshape([1, 1, 1, block_rows, num_projections])
            .expand([batch, heads, num_blocks, block_rows, num_projections]),
    );
    let bits = projections.greater_elem(0.0).int();
    // In the bits' int type: `from_data` keeps i64 on some backends (Flex).
    let bit_values = Tensor::<B, 1, Int>::from_data(
        TensorData::new(
            (0..num_projections).map(|p| 1i64 << p).collect::<Vec<_>>(),
            [num_projections],
        ),
        &device,
    )
    .cast(bits.dtype())
    .reshape([1, 1, 1, 1, num_projections])
    .expand([batch, heads, num_blocks, head_dim, num_projections]);
    bits.mul(bit_values).sum_dim(4).squeeze_dim(4)
}

/// The inverse Gray code of each code (`b = g ^ g>>1 ^ g>>2 ^ ...`), so that keys of codes
/// that differ in one hyperplane are neighbours.
pub fn inverse_gray<B: Backend>(
    codes: Tensor<B, 4, Int>,
    num_projections: usize,
) -> Tensor<B, 4, Int> {
    let mut keys = codes;
    let mut shift = 1;
    while shift < num_projections {
        keys = keys
            .clone()
            .bitwise_xor(keys.bitwise_right_shift_scalar((shift as i64).elem()));
        shift *= 2;
    }
    keys
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::TestBackend;

    #[test]
    fn inverse_gray_inverts_gray_code() {
        let device = Default::default();
        let values: Vec<i64> = (0..1 << 10).collect();
        let gray: Vec<i64> = values.iter().map(|&b| b ^ (b >> 1)).collect();
        let codes =
            Tensor::<TestBackend, 1, Int>::from_data(TensorData::new(gray, [1 << 10]), &device)
                .reshape([1, 1, 1, 1 << 10]);
        let keys = inverse_gray(codes, 10)
            .into_data()
            .convert::<i64>()
            .to_vec::<i64>()
            .unwrap();
        assert_eq!(keys, values);
    }

    #[test]
    fn sign_codes_follow_the_hyperplanes() {
        let device = Default::default();
        // One block of 2 rows, 3 columns; hyperplanes e0 and e1 of R^2.
        let blocks =
            Tensor::<TestBackend, 1>::from_floats([1.0, -1.0, 2.0, 1.0, 3.0, -2.0], &device)
                .reshape([1, 1, 1, 2, 3]);
        let codes = sign_codes(blocks, &[1.0, 0.0, 0.0, 1.0], 2);
        let codes = codes.into_data().convert::<i64>().to_vec::<i64>().unwrap();
        // column 0 = (1, 1): both bits; column 1 = (-1, 3): bit 1; column 2 = (2, -2): bit 0.
        assert_eq!(codes, vec![3, 2, 1]);
    }
}
