//! Files the fuzz targets write their mutants to.

use std::path::{Path, PathBuf};

/// A file or directory under the system's temporary directory, named for the test process,
/// removed when dropped: also when a fuzz target fails and unwinds.
#[derive(Debug)]
pub struct Scratch(PathBuf);

impl Scratch {
    /// `<temp>/<prefix>-<process id>-<name>`; nothing is created yet.
    pub fn new(prefix: &str, name: &str) -> Self {
        Self(std::env::temp_dir().join(format!("{prefix}-{}-{}", std::process::id(), name.replace('/', "-"))))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    /// Writes `bytes` as the scratch file and returns its path.
    pub fn write(&self, bytes: &[u8]) -> &Path {
        std::fs::write(&self.0, bytes).unwrap_or_else(|error| panic!("cannot write {}: {error}", self.0.display()));
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0).or_else(|_| std::fs::remove_file(&self.0));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scratch_file_or_directory_is_gone_after_drop() {
        let file = Scratch::new("parser-fuzz-test", "file");
        let path = file.write(b"bytes").to_path_buf();
        assert!(path.exists());
        drop(file);
        assert!(!path.exists());
        let directory = Scratch::new("parser-fuzz-test", "a/dir");
        std::fs::create_dir_all(directory.path().join("inner")).unwrap();
        let path = directory.path().to_path_buf();
        drop(directory);
        assert!(!path.exists());
    }
}
