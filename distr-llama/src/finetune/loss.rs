//! The two training objectives: next-token cross-entropy on the text, and distillation from
//! the same model with exact attention (no labels: the teacher's distribution is the target).

use burn::tensor::activation::log_softmax;
use burn::tensor::backend::Backend;
use burn::tensor::{FloatDType, Int, Tensor};
use clap::ValueEnum;
use serde::{Deserialize, Serialize};

/// What the fine-tuning minimises.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Loss {
    /// Mean next-token negative log-likelihood of the training text.
    Lm,
    /// Mean `KL(teacher || student)` over every position's next-token distribution, the
    /// teacher being the starting model with exact attention.
    Distill,
}

/// Mean `-log p(tokens[t + 1] | tokens[..=t])` of logits `[batch, seq, vocab]` for tokens
/// `[batch, seq]`: a scalar `[1]`, in f32 whatever the logits' float type.
pub fn language_model_loss<B: Backend>(logits: Tensor<B, 3>, tokens: Tensor<B, 2, Int>) -> Tensor<B, 1> {
    let [batch, seq, vocab] = logits.dims();
    let predictions = logits.narrow(1, 0, seq - 1).reshape([batch * (seq - 1), vocab]);
    let targets = tokens.narrow(1, 1, seq - 1).reshape([batch * (seq - 1), 1]);
    log_softmax(predictions.cast(FloatDType::F32), 1).gather(1, targets).mean().neg()
}

/// Mean over positions of `KL(softmax(teacher) || softmax(student))`, logits
/// `[batch, seq, vocab]`: a scalar `[1]`.
pub fn distillation_loss<B: Backend>(student: Tensor<B, 3>, teacher: Tensor<B, 3>) -> Tensor<B, 1> {
    let [batch, seq, vocab] = student.dims();
    let teacher_log_probs = log_softmax(teacher.reshape([batch * seq, vocab]).cast(FloatDType::F32), 1);
    let student_log_probs = log_softmax(student.reshape([batch * seq, vocab]).cast(FloatDType::F32), 1);
    let teacher_probs = teacher_log_probs.clone().exp();
    (teacher_probs * (teacher_log_probs - student_log_probs)).sum_dim(1).mean()
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::TensorData;
    use distr_attn::backends::NdArrayBackend as B;

    fn scalar(tensor: Tensor<B, 1>) -> f32 {
        tensor.into_data().convert::<f32>().into_vec::<f32>().unwrap()[0]
    }

    #[test]
    fn cross_entropy_matches_a_plain_computation() {
        let device = Default::default();
        let logits = vec![0.5f32, -1.0, 2.0, 0.0, 1.0, 1.0, 3.0, -2.0, 0.2];
        let tokens = [2i64, 0, 1];
        let loss = language_model_loss(
            Tensor::<B, 3>::from_data(TensorData::new(logits.clone(), [1, 3, 3]), &device),
            Tensor::<B, 2, Int>::from_data(TensorData::new(tokens.to_vec(), [1, 3]), &device),
        );
        let nll = |row: &[f32], target: usize| {
            let log_sum = row.iter().map(|v| v.exp()).sum::<f32>().ln();
            log_sum - row[target]
        };
        let expected = (nll(&logits[0..3], 0) + nll(&logits[3..6], 1)) / 2.0;
        assert!((scalar(loss) - expected).abs() < 1e-6);
    }

    #[test]
    fn distillation_is_zero_for_equal_logits_and_matches_kl_otherwise() {
        let device = Default::default();
        let teacher = vec![0.5f32, -1.0, 2.0, 0.0, 1.0, 1.0];
        let student = vec![0.0f32, 0.0, 1.0, 1.0, 0.5, -0.5];
        let tensor = |v: &Vec<f32>| Tensor::<B, 3>::from_data(TensorData::new(v.clone(), [1, 2, 3]), &device);
        assert!(scalar(distillation_loss(tensor(&teacher), tensor(&teacher))).abs() < 1e-6);
        let p = |v: &[f32]| {
            let total: f32 = v.iter().map(|x| x.exp()).sum();
            v.iter().map(|x| x.exp() / total).collect::<Vec<f32>>()
        };
        let kl = |t: &[f32], s: &[f32]| {
            let (pt, ps) = (p(t), p(s));
            pt.iter().zip(&ps).map(|(a, b)| a * (a.ln() - b.ln())).sum::<f32>()
        };
        let expected = (kl(&teacher[0..3], &student[0..3]) + kl(&teacher[3..6], &student[3..6])) / 2.0;
        assert!((scalar(distillation_loss(tensor(&student), tensor(&teacher))) - expected).abs() < 1e-6);
    }
}
