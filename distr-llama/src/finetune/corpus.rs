//! Training text as fixed-length token sequences, batched in a seeded shuffled order.

use std::path::{Path, PathBuf};

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;

use crate::error::{LlamaError, Result};
use crate::tokenizer::Tokenizer;

/// The files named by `paths`: files as given, directories searched recursively for `.md` and
/// `.txt` files (sorted, so the corpus does not depend on directory order).
pub fn text_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            let mut found = Vec::new();
            collect_texts(path, &mut found)?;
            if found.is_empty() {
                return Err(LlamaError::Config(format!("no .md or .txt file under `{}`", path.display())));
            }
            found.sort();
            files.extend(found);
        } else if path.is_file() {
            files.push(path.clone());
        } else {
            return Err(LlamaError::Io {
                path: path.clone(),
                source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such file or directory"),
            });
        }
    }
    Ok(files)
}

fn collect_texts(dir: &Path, found: &mut Vec<PathBuf>) -> Result<()> {
    for entry in std::fs::read_dir(dir).map_err(LlamaError::io(dir))? {
        let path = entry.map_err(LlamaError::io(dir))?.path();
        if path.is_dir() {
            collect_texts(&path, found)?;
        } else if path.extension().is_some_and(|ext| ext == "md" || ext == "txt") {
            found.push(path);
        }
    }
    Ok(())
}

/// The token ids of every file in `files`, one after another.
pub fn tokenize_files(tokenizer: &dyn Tokenizer, files: &[PathBuf]) -> Result<Vec<u32>> {
    let mut ids = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(file).map_err(LlamaError::io(file))?;
        ids.extend(tokenizer.encode(&text)?);
    }
    Ok(ids)
}

/// Non-overlapping sequences of `seq_len` tokens cut from a token stream.
#[derive(Debug, Clone)]
pub struct TokenCorpus {
    sequences: Vec<Vec<u32>>,
    order: Vec<usize>,
}

impl TokenCorpus {
    /// Cuts `ids` into sequences of `seq_len` tokens (the tail that does not fill one is
    /// dropped) and shuffles their order with `seed`.
    pub fn new(ids: &[u32], seq_len: usize, seed: u64) -> Result<Self> {
        if seq_len < 2 {
            return Err(LlamaError::Config(format!("sequence length {seq_len}: need at least 2 tokens")));
        }
        let sequences: Vec<Vec<u32>> = ids.chunks_exact(seq_len).map(<[u32]>::to_vec).collect();
        if sequences.is_empty() {
            return Err(LlamaError::Config(format!(
                "the training text has {} tokens, fewer than one sequence of {seq_len}",
                ids.len()
            )));
        }
        let mut order: Vec<usize> = (0..sequences.len()).collect();
        order.shuffle(&mut StdRng::seed_from_u64(seed));
        Ok(Self { sequences, order })
    }

    pub fn num_sequences(&self) -> usize {
        self.sequences.len()
    }

    /// The `batch_size` sequences of batch `index`; the shuffled order wraps around, so any
    /// number of steps can be drawn (an epoch is `num_sequences / batch_size` batches).
    pub fn batch(&self, index: usize, batch_size: usize) -> Vec<&[u32]> {
        (0..batch_size)
            .map(|i| self.sequences[self.order[(index * batch_size + i) % self.order.len()]].as_slice())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_cover_every_sequence_once_per_epoch() {
        let ids: Vec<u32> = (0..41).collect();
        let corpus = TokenCorpus::new(&ids, 4, 7).unwrap();
        assert_eq!(corpus.num_sequences(), 10);
        let mut firsts: Vec<u32> = (0..5).flat_map(|b| corpus.batch(b, 2)).map(|s| s[0]).collect();
        firsts.sort();
        assert_eq!(firsts, (0..10).map(|i| 4 * i).collect::<Vec<_>>());
        assert_eq!(corpus.batch(5, 2), corpus.batch(0, 2));
        assert!(TokenCorpus::new(&ids, 64, 0).is_err());
    }
}
