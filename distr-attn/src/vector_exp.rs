//! An `f32` exponential the compiler vectorises, for the CPU kernels of the op (softmax
//! numerators) and of the models on Flex (SiLU): `f32::exp` is a call into libm per element,
//! which keeps a loop scalar.

/// `e^x` for `x <= 0`, within 2 ulp of `f32::exp` (the tests check), branch-free so that it
/// vectorises: `x = n ln 2 + r` with `|r| <= ln 2 / 2`, a degree-6 polynomial for `e^r`
/// (Cephes' `expf` coefficients), `2^n` built in the exponent bits. Below `-87.3` (where `e^x`
/// leaves the normal range) it returns 0 or a value below `2^-126`; a NaN argument gives such a
/// value too (`f32::max` drops the NaN), so callers that must pass NaN on do so themselves.
#[inline(always)]
pub fn exp_non_positive(x: f32) -> f32 {
    const LN2_HIGH: f32 = 0.693_359_4;
    const LN2_LOW: f32 = -2.121_944_4e-4;
    // Adding and subtracting 1.5 * 2^23 rounds to the nearest integer without a rounding
    // instruction (SSE2 has none).
    const ROUND: f32 = 12_582_912.0;
    let x = x.max(-87.3);
    let n = (x * std::f32::consts::LOG2_E + ROUND) - ROUND;
    let r = x - n * LN2_HIGH - n * LN2_LOW;
    let mut p = 1.987_569_1e-4;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 0.5;
    let e_r = p * r * r + r + 1.0;
    e_r * f32::from_bits(((n as i32 + 127) as u32) << 23)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_is_within_two_ulp_of_std() {
        for i in 0..=200_000 {
            let x = -87.0 * i as f32 / 200_000.0;
            let (ours, std) = (exp_non_positive(x), x.exp());
            let ulp = (std.to_bits() as i64 - ours.to_bits() as i64).abs();
            assert!(ulp <= 2, "exp({x}) = {ours}, std {std} ({ulp} ulp)");
        }
        assert_eq!(exp_non_positive(0.0), 1.0);
        assert!(exp_non_positive(-1000.0) < 1e-37);
    }
}
