//! Why a kernel launch was refused.

/// A kernel launch refused before anything ran on the device. Every variant names the value
/// and what was expected; callers fall back to another implementation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KernelError {
    /// A parameter outside the kernel's comptime specialisations.
    #[error("unsupported {name} = {value}: the kernel supports {expected}")]
    Unsupported {
        name: &'static str,
        value: String,
        expected: String,
    },
    /// Tensor shapes that do not fit together.
    #[error("shape mismatch: {tensor} has shape {actual:?}, expected {expected}")]
    Shape {
        tensor: &'static str,
        actual: Vec<usize>,
        expected: String,
    },
}
