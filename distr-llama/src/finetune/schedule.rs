//! The learning-rate schedule: linear warm-up from 0 to the peak, then cosine decay to a
//! floor. Warm-up keeps AdamW's first steps (whose second-moment estimates are still poor)
//! from kicking the pretrained weights far; the cosine tail lets the last steps settle.

use burn::config::Config;

/// Warm-up + cosine schedule over a fixed number of steps.
#[derive(Config, Debug, PartialEq)]
pub struct LearningRateSchedule {
    /// Learning rate at the end of warm-up.
    pub peak: f64,
    /// Steps of the whole run.
    pub total_steps: usize,
    /// Steps of linear warm-up. Default: 10.
    #[config(default = 10)]
    pub warmup_steps: usize,
    /// The final learning rate as a fraction of the peak. Default: 0.1.
    #[config(default = 0.1)]
    pub floor_ratio: f64,
}

impl LearningRateSchedule {
    /// The learning rate of step `step` (0-based).
    pub fn at(&self, step: usize) -> f64 {
        if step < self.warmup_steps {
            return self.peak * (step + 1) as f64 / self.warmup_steps as f64;
        }
        let decay_steps = self.total_steps.saturating_sub(self.warmup_steps).max(1);
        let progress = ((step - self.warmup_steps) as f64 / decay_steps as f64).min(1.0);
        let cosine = 0.5 * (1.0 + (std::f64::consts::PI * progress).cos());
        self.peak * (self.floor_ratio + (1.0 - self.floor_ratio) * cosine)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warms_up_linearly_then_decays_to_the_floor() {
        let schedule = LearningRateSchedule::new(1e-3, 110).with_warmup_steps(10).with_floor_ratio(0.1);
        assert!((schedule.at(0) - 1e-4).abs() < 1e-12);
        assert!((schedule.at(9) - 1e-3).abs() < 1e-12);
        assert!((schedule.at(10) - 1e-3).abs() < 1e-12);
        assert!((schedule.at(60) - 0.55e-3).abs() < 1e-12);
        assert!((schedule.at(110) - 1e-4).abs() < 1e-12);
        assert!((1..110).all(|step| step < 10 || schedule.at(step) <= schedule.at(step - 1)));
    }
}
