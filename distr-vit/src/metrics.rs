//! Fidelity of an approximate output to the exact one.

use serde::Serialize;

/// How close DistrAttention's outputs are to exact attention's, for one image.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Fidelity {
    /// `||approx - exact|| / ||exact||` of the saliency maps.
    pub saliency_relative_l2: f64,
    /// Pearson correlation of the saliency maps.
    pub saliency_pearson: f64,
    /// Cosine similarity of the CLS features.
    pub cls_cosine: f64,
    /// Share of the exact map's top-k patches (mean saliency per patch) that are also in the
    /// approximate map's top-k.
    pub top_k_overlap: f64,
}

impl Fidelity {
    /// Compares saliency maps `[height, width]` (row-major) and CLS features.
    pub fn compare(
        approx_saliency: &[f32],
        exact_saliency: &[f32],
        [height, width]: [usize; 2],
        approx_cls: &[f32],
        exact_cls: &[f32],
        patch_size: usize,
        top_k: usize,
    ) -> Self {
        Self {
            saliency_relative_l2: relative_l2(approx_saliency, exact_saliency),
            saliency_pearson: pearson(approx_saliency, exact_saliency),
            cls_cosine: cosine(approx_cls, exact_cls),
            top_k_overlap: top_k_overlap(
                &patch_means(approx_saliency, [height, width], patch_size),
                &patch_means(exact_saliency, [height, width], patch_size),
                top_k,
            ),
        }
    }

    /// The mean of each field over `items`.
    /// Field by field minimum and maximum of `items` (at least one).
    pub fn extremes(items: &[Fidelity]) -> [Fidelity; 2] {
        let fold = |pick: fn(f64, f64) -> f64| {
            let field = |get: fn(&Fidelity) -> f64| items.iter().map(get).reduce(pick).unwrap_or(f64::NAN);
            Fidelity {
                saliency_relative_l2: field(|f| f.saliency_relative_l2),
                saliency_pearson: field(|f| f.saliency_pearson),
                cls_cosine: field(|f| f.cls_cosine),
                top_k_overlap: field(|f| f.top_k_overlap),
            }
        };
        [fold(f64::min), fold(f64::max)]
    }

    pub fn mean(items: &[Fidelity]) -> Fidelity {
        let count = items.len().max(1) as f64;
        let sum = |field: fn(&Fidelity) -> f64| items.iter().map(field).sum::<f64>() / count;
        Fidelity {
            saliency_relative_l2: sum(|f| f.saliency_relative_l2),
            saliency_pearson: sum(|f| f.saliency_pearson),
            cls_cosine: sum(|f| f.cls_cosine),
            top_k_overlap: sum(|f| f.top_k_overlap),
        }
    }
}

/// `||approx - exact|| / ||exact||`.
pub fn relative_l2(approx: &[f32], exact: &[f32]) -> f64 {
    let difference: f64 = approx.iter().zip(exact).map(|(a, e)| (*a as f64 - *e as f64).powi(2)).sum();
    let norm: f64 = exact.iter().map(|e| (*e as f64).powi(2)).sum();
    (difference / norm.max(f64::MIN_POSITIVE)).sqrt()
}

/// Pearson correlation coefficient.
pub fn pearson(a: &[f32], b: &[f32]) -> f64 {
    let n = a.len().min(b.len()) as f64;
    let mean_a = a.iter().map(|v| *v as f64).sum::<f64>() / n;
    let mean_b = b.iter().map(|v| *v as f64).sum::<f64>() / n;
    let centred_a: Vec<f64> = a.iter().map(|v| *v as f64 - mean_a).collect();
    let centred_b: Vec<f64> = b.iter().map(|v| *v as f64 - mean_b).collect();
    cosine_f64(&centred_a, &centred_b)
}

/// Cosine similarity.
pub fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let a: Vec<f64> = a.iter().map(|v| *v as f64).collect();
    let b: Vec<f64> = b.iter().map(|v| *v as f64).collect();
    cosine_f64(&a, &b)
}

fn cosine_f64(a: &[f64], b: &[f64]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let norm_a: f64 = a.iter().map(|x| x * x).sum::<f64>().sqrt();
    let norm_b: f64 = b.iter().map(|x| x * x).sum::<f64>().sqrt();
    dot / (norm_a * norm_b).max(f64::MIN_POSITIVE)
}

/// Mean of each `patch_size` square of a `[height, width]` map (incomplete borders dropped).
pub fn patch_means(map: &[f32], [height, width]: [usize; 2], patch_size: usize) -> Vec<f64> {
    let (rows, columns) = (height / patch_size, width / patch_size);
    let mut means = vec![0f64; rows * columns];
    for row in 0..rows * patch_size {
        for column in 0..columns * patch_size {
            means[(row / patch_size) * columns + column / patch_size] += map[row * width + column] as f64;
        }
    }
    let area = (patch_size * patch_size) as f64;
    means.iter_mut().for_each(|mean| *mean /= area);
    means
}

/// `|top_k(a) ∩ top_k(b)| / k`.
pub fn top_k_overlap(a: &[f64], b: &[f64], k: usize) -> f64 {
    let top = |values: &[f64]| {
        let mut order: Vec<usize> = (0..values.len()).collect();
        order.sort_by(|&i, &j| values[j].total_cmp(&values[i]).then(i.cmp(&j)));
        order.truncate(k);
        order
    };
    let (top_a, top_b) = (top(a), top(b));
    let shared = top_a.iter().filter(|index| top_b.contains(index)).count();
    shared as f64 / k.min(a.len()).max(1) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identical_maps_are_perfect() {
        let map: Vec<f32> = (0..64).map(|i| (i as f32 * 0.37).sin()).collect();
        let fidelity = Fidelity::compare(&map, &map, [8, 8], &map[..4], &map[..4], 2, 3);
        assert!(fidelity.saliency_relative_l2 < 1e-12);
        assert!((fidelity.saliency_pearson - 1.0).abs() < 1e-12);
        assert!((fidelity.cls_cosine - 1.0).abs() < 1e-12);
        assert_eq!(fidelity.top_k_overlap, 1.0);
    }

    #[test]
    fn anticorrelated_and_disjoint() {
        assert!((pearson(&[1.0, 2.0, 3.0], &[3.0, 2.0, 1.0]) + 1.0).abs() < 1e-12);
        assert_eq!(top_k_overlap(&[3.0, 2.0, 1.0, 0.0], &[0.0, 1.0, 2.0, 3.0], 2), 0.0);
    }
}
