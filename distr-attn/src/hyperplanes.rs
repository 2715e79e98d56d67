//! The random hyperplanes of the angular LSH, drawn once from the seed.
//!
//! Generated on the host with a self-contained generator (SplitMix64 and Box-Muller) so that
//! the values depend on nothing but `(seed, num_projections, block_rows)`: the tensor-op
//! reference and the fused kernels receive the same array and so compute the same codes.

/// `num_projections` standard-normal hyperplanes in R^`block_rows`, row-major
/// `[num_projections, block_rows]`: hyperplane `p` is `values[p * block_rows ..][..block_rows]`.
pub fn hyperplanes(seed: u64, num_projections: usize, block_rows: usize) -> Vec<f32> {
    let mut rng = SplitMix64::new(seed);
    (0..num_projections * block_rows)
        .map(|_| rng.standard_normal() as f32)
        .collect()
}

/// A small, well-mixed 64-bit generator; also used for the random-grouping baseline.
pub(crate) struct SplitMix64(u64);

impl SplitMix64 {
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in (0, 1], never zero so that its logarithm is finite.
    fn uniform(&mut self) -> f64 {
        ((self.next_u64() >> 11) + 1) as f64 / (1u64 << 53) as f64
    }

    fn standard_normal(&mut self) -> f64 {
        let (u1, u2) = (self.uniform(), self.uniform());
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_per_seed_and_roughly_standard_normal() {
        let a = hyperplanes(3, 16, 128);
        assert_eq!(a, hyperplanes(3, 16, 128));
        assert_ne!(a, hyperplanes(4, 16, 128));
        let n = a.len() as f64;
        let mean = a.iter().map(|&x| x as f64).sum::<f64>() / n;
        let var = a.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / n;
        assert!(mean.abs() < 0.1, "mean {mean}");
        assert!((var - 1.0).abs() < 0.1, "variance {var}");
    }
}
