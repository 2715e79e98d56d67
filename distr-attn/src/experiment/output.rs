//! Output paths checked before the work: a run that takes minutes should not fail at the end
//! because its output cannot be written.

use std::fs::OpenOptions;
use std::path::Path;

use super::ExperimentError;

/// Checks that `path` can be written: its folder exists and accepts a new file, or the file
/// exists and may be overwritten. Leaves nothing behind that was not there.
pub fn check_writable(path: &Path) -> Result<(), ExperimentError> {
    let io_error = |source| ExperimentError::Io { path: path.to_path_buf(), source };
    if path.is_dir() {
        return Err(ExperimentError::Format {
            path: path.to_path_buf(),
            message: "is a directory: expected a file to write".into(),
        });
    }
    if path.exists() {
        return OpenOptions::new().append(true).open(path).map(drop).map_err(io_error);
    }
    OpenOptions::new().write(true).create_new(true).open(path).map_err(io_error)?;
    std::fs::remove_file(path).map_err(io_error)
}

/// Creates the missing folders of `path`, then [`check_writable`]: for outputs, such as
/// checkpoints, whose writers create their folder.
pub fn prepare_file(path: &Path) -> Result<(), ExperimentError> {
    if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|source| ExperimentError::Io { path: dir.to_path_buf(), source })?;
    }
    check_writable(path)
}

/// Checks that `dir` can be created (or is an empty directory) and written into, for outputs
/// that are folders; creates it.
pub fn prepare_dir(dir: &Path) -> Result<(), ExperimentError> {
    let io_error = |source| ExperimentError::Io { path: dir.to_path_buf(), source };
    std::fs::create_dir_all(dir).map_err(io_error)?;
    if std::fs::read_dir(dir).map_err(io_error)?.next().is_some() {
        return Err(ExperimentError::Format {
            path: dir.to_path_buf(),
            message: "is not empty: expected a new or empty directory".into(),
        });
    }
    check_writable(&dir.join(".distr-write-check"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_folders_and_directories_fail_before_the_work() {
        let dir = std::env::temp_dir().join(format!("distr-attn-output-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("out.npy");
        check_writable(&file).unwrap();
        assert!(!file.exists(), "the check leaves no file behind");
        std::fs::write(&file, "kept").unwrap();
        check_writable(&file).unwrap();
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "kept");
        let error = check_writable(&dir.join("no/such/folder/out.npy")).unwrap_err().to_string();
        assert!(error.contains("no/such/folder/out.npy"), "{error}");
        assert!(check_writable(&dir).unwrap_err().to_string().contains("is a directory"));
        assert!(prepare_dir(&dir).unwrap_err().to_string().contains("is not empty"));
        prepare_dir(&dir.join("fresh")).unwrap();
        prepare_file(&dir.join("runs/student.mpk")).unwrap();
        assert!(dir.join("runs").is_dir() && !dir.join("runs/student.mpk").exists());
        std::fs::remove_dir_all(dir).unwrap();
    }
}
