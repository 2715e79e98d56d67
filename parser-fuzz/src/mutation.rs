//! Mutants of a valid file: what a truncated download, a flipped bit or a hostile header does
//! to it. Deterministic for a seed, so that a failing case can be replayed.

use std::fmt;

/// One change to the original bytes.
#[derive(Debug, Clone, PartialEq)]
pub enum Mutation {
    /// Keep the first `len` bytes.
    Truncate { len: usize },
    /// Replace the byte at `at`.
    SetByte { at: usize, value: u8 },
    /// Overwrite `width` (4 or 8) bytes at `at` with a huge little-endian integer, as a
    /// corrupt length or count field would read.
    HugeInteger { at: usize, width: usize, value: u64 },
    /// Replace the run of ASCII digits at `at` (`len` long) with `text`: the length fields of
    /// text formats.
    Number { at: usize, len: usize, text: &'static str },
    /// Remove `len` bytes at `at`.
    Delete { at: usize, len: usize },
    /// Insert a copy of the `len` bytes at `at` right after them.
    Duplicate { at: usize, len: usize },
}

/// Values a corrupt length field takes: all ones, the sign bit, past 32 bits, a mebibyte.
const HUGE: [u64; 6] = [u64::MAX, u32::MAX as u64, 1 << 31, 1 << 40, (1 << 63) + 1, 0x0010_0000];

/// What a corrupt number in a text file says.
const NUMBERS: [&str; 8] = ["0", "-1", "4294967296", "18446744073709551616", "1e309", "-0", "999999999999", "1.5"];

impl Mutation {
    /// The mutant of `original`.
    pub fn apply(&self, original: &[u8]) -> Vec<u8> {
        let mut bytes = original.to_vec();
        match *self {
            Self::Truncate { len } => bytes.truncate(len),
            Self::SetByte { at, value } => bytes[at] = value,
            Self::HugeInteger { at, width, value } => bytes[at..at + width].copy_from_slice(&value.to_le_bytes()[..width]),
            Self::Number { at, len, text } => {
                bytes.splice(at..at + len, text.bytes());
            }
            Self::Delete { at, len } => {
                bytes.drain(at..at + len);
            }
            Self::Duplicate { at, len } => {
                let copy = original[at..at + len].to_vec();
                bytes.splice(at + len..at + len, copy);
            }
        }
        bytes
    }

    /// The length of the mutant of a file of `len` bytes.
    fn apply_len(&self, len: usize) -> usize {
        match *self {
            Self::Truncate { len: kept } => kept,
            Self::SetByte { .. } | Self::HugeInteger { .. } => len,
            Self::Number { len: digits, text, .. } => len - digits + text.len(),
            Self::Delete { len: removed, .. } => len - removed,
            Self::Duplicate { len: copied, .. } => len + copied,
        }
    }
}

impl fmt::Display for Mutation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Truncate { len } => write!(f, "cut to {len} bytes"),
            Self::SetByte { at, value } => write!(f, "byte {at} set to {value:#04x}"),
            Self::HugeInteger { at, width, value } => write!(f, "{width} bytes at {at} set to {value:#x}"),
            Self::Number { at, len, text } => write!(f, "the {len}-digit number at {at} replaced by {text}"),
            Self::Delete { at, len } => write!(f, "{len} bytes deleted at {at}"),
            Self::Duplicate { at, len } => write!(f, "{len} bytes at {at} duplicated"),
        }
    }
}

/// The truncations of a file of `len` bytes: at every offset up to `dense`, then at `sampled`
/// offsets spread over the rest (and always one byte short of the end).
pub fn truncations(len: usize, dense: usize, sampled: usize, rng: &mut Rng) -> Vec<Mutation> {
    let mut cuts: Vec<usize> = (0..len.min(dense)).collect();
    if len > dense {
        cuts.extend((0..sampled).map(|_| rng.below_in(dense, len)));
        cuts.push(len - 1);
        cuts.sort_unstable();
        cuts.dedup();
    }
    cuts.into_iter().map(|len| Mutation::Truncate { len }).collect()
}

/// `count` random mutants of `original` (one to three changes each), their positions biased
/// towards the start, where headers and length fields live.
pub fn random_mutants(original: &[u8], count: usize, rng: &mut Rng) -> Vec<Vec<Mutation>> {
    let numbers = digit_runs(original);
    (0..count)
        .map(|_| {
            let mut changes = Vec::new();
            let mut len = original.len();
            for _ in 0..1 + rng.below(3) {
                if len == 0 {
                    break;
                }
                // Later changes index into the mutant: number runs only hold in the original.
                let change = random_change(len, if changes.is_empty() { &numbers } else { &[] }, rng);
                len = change.apply_len(len);
                changes.push(change);
            }
            changes
        })
        .collect()
}

fn random_change(len: usize, numbers: &[(usize, usize)], rng: &mut Rng) -> Mutation {
    loop {
        let at = biased_position(len, rng);
        let span = (1 + rng.below(64)).min(len - at);
        match rng.below(6) {
            0 | 1 => return Mutation::SetByte { at, value: rng.next() as u8 },
            2 => {
                let width = if rng.below(2) == 0 { 4 } else { 8 };
                if at + width <= len {
                    return Mutation::HugeInteger { at, width, value: HUGE[rng.below(HUGE.len())] };
                }
            }
            3 if !numbers.is_empty() => {
                let (at, len) = numbers[rng.below(numbers.len())];
                return Mutation::Number { at, len, text: NUMBERS[rng.below(NUMBERS.len())] };
            }
            4 => return Mutation::Delete { at, len: span },
            5 => return Mutation::Duplicate { at, len: span },
            _ => {}
        }
    }
}

/// Half the positions in the first KiB, a quarter in the first 64 KiB, a quarter anywhere.
fn biased_position(len: usize, rng: &mut Rng) -> usize {
    let window = match rng.below(4) {
        0 | 1 => 1 << 10,
        2 => 1 << 16,
        _ => len,
    };
    rng.below(window.min(len))
}

/// `(start, len)` of every run of ASCII digits.
fn digit_runs(bytes: &[u8]) -> Vec<(usize, usize)> {
    let mut runs = Vec::new();
    let mut start = None;
    for (i, byte) in bytes.iter().chain(std::iter::once(&b' ')).enumerate() {
        match (byte.is_ascii_digit(), start) {
            (true, None) => start = Some(i),
            (false, Some(s)) => {
                runs.push((s, i - s));
                start = None;
            }
            _ => {}
        }
    }
    runs
}

/// SplitMix64: small, seedable, and the same everywhere.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..bound` (`bound > 0`).
    pub fn below(&mut self, bound: usize) -> usize {
        (self.next() % bound as u64) as usize
    }

    fn below_in(&mut self, low: usize, high: usize) -> usize {
        low + self.below(high - low)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_mutant_applies_to_the_original() {
        let original: Vec<u8> = b"{\"n\": 12345, \"s\": \"abc\"}".iter().copied().cycle().take(3000).collect();
        let mut rng = Rng::new(7);
        for changes in random_mutants(&original, 2000, &mut rng) {
            let mut bytes = original.clone();
            for change in &changes {
                let expected = change.apply_len(bytes.len());
                bytes = change.apply(&bytes);
                assert_eq!(bytes.len(), expected, "{change}");
            }
        }
    }

    #[test]
    fn truncations_cover_the_head_densely_and_end_one_short() {
        let cuts = truncations(10_000, 100, 50, &mut Rng::new(1));
        let lens: Vec<usize> = cuts.iter().map(|cut| cut.apply_len(10_000)).collect();
        assert!((0..100).all(|len| lens.contains(&len)));
        assert_eq!(lens.last(), Some(&9_999));
        assert!(lens.len() > 140 && lens.iter().all(|&len| len < 10_000));
    }

    #[test]
    fn number_runs_are_found_and_replaced() {
        assert_eq!(digit_runs(b"a12 345b6"), vec![(1, 2), (4, 3), (8, 1)]);
        let mutant = Mutation::Number { at: 4, len: 3, text: "-1" }.apply(b"a12 345b6");
        assert_eq!(mutant, b"a12 -1b6");
    }
}
