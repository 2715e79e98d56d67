//! Bounded mutation fuzzing of the file parsers, run by the test suites.
//!
//! [`fuzz`] feeds a parser mutants of one small real file (truncations at every offset of its
//! head and at sampled offsets after it, byte changes, length fields set huge, numbers in text
//! replaced, bytes deleted or duplicated) and fails, listing the mutations, when a mutant makes
//! the parser panic, allocate more than the file can justify, or accept a truncated file where
//! the format cannot be cut short. An abort (a request over 4 GiB, refused) fails the whole
//! test binary, after printing the mutant. Allocations are metered on the parsing thread only:
//! work a parser hands to a thread pool is not counted.
//!
//! The default run takes seconds per file, for CI; `scripts/fuzz.sh` runs longer ones. The
//! environment sets the size of a run: `DISTR_FUZZ_CASES` random mutants per file (default
//! 256), `DISTR_FUZZ_DENSE` leading offsets cut at every byte (default 2048), and
//! `DISTR_FUZZ_SEED` (default 0), printed on failure to replay a case.

mod meter;
mod mutation;
mod scratch;

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::fmt::Display;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Once;
use std::time::Instant;

pub use meter::{describe_case, installed, measure, MeteredAllocator};
pub use mutation::{random_mutants, truncations, Mutation, Rng};
pub use scratch::Scratch;

/// What a parser must do with the mutants of one file.
#[derive(Debug, Clone)]
pub struct Target {
    /// Names the file in messages.
    pub name: String,
    /// The most bytes the parser may hold at once for one mutant.
    pub allocation_budget: usize,
    /// Cuts at or after this many bytes lose nothing of the content and may parse (trailing
    /// whitespace is never content); shorter cuts must be errors. `None`: any cut may parse
    /// (a protobuf message can end after any field, a text after any character).
    pub whole_from: Option<usize>,
}

impl Target {
    /// A target whose every truncation must fail, allowed `allocation_budget` bytes.
    pub fn new(name: impl Into<String>, allocation_budget: usize) -> Self {
        Self { name: name.into(), allocation_budget, whole_from: Some(usize::MAX) }
    }

    /// Accepts every prefix that the parser takes for a whole file.
    pub fn truncation_may_parse(mut self) -> Self {
        self.whole_from = None;
        self
    }

    /// Accepts cuts of `len` bytes or more: what follows is a trailer the content does not
    /// need (a PNG's closing chunk).
    pub fn whole_from(mut self, len: usize) -> Self {
        self.whole_from = Some(len);
        self
    }
}

/// The size of a run, from the environment (see the crate documentation). The three values
/// together replay a run: the sampled cuts draw from the same generator as the mutants.
#[derive(Debug, Clone, Copy)]
pub struct RunSize {
    /// Random mutants per file, and sampled cuts after the dense head (`DISTR_FUZZ_CASES`).
    pub cases: usize,
    /// Leading bytes cut at every offset (`DISTR_FUZZ_DENSE`).
    pub dense: usize,
    /// Seed of the mutations (`DISTR_FUZZ_SEED`), mixed with each target's name.
    pub seed: u64,
}

impl RunSize {
    /// The size the environment asks for; defaults 256 cases, 2048 dense bytes, seed 0.
    pub fn from_env() -> Self {
        let read = |name: &str, default: u64| {
            std::env::var(name).ok().map_or(default, |value| {
                value.parse().unwrap_or_else(|_| panic!("{name}={value} is not a non-negative integer"))
            })
        };
        Self {
            cases: read("DISTR_FUZZ_CASES", 256) as usize,
            dense: read("DISTR_FUZZ_DENSE", 2048) as usize,
            seed: read("DISTR_FUZZ_SEED", 0),
        }
    }
}

/// How the mutants of one file fared.
#[derive(Debug, Default)]
pub struct Summary {
    /// Mutants parsed.
    pub mutants: usize,
    /// Mutants the parser returned an error for.
    pub rejected: usize,
    /// Mutants it parsed (byte changes in data, cuts of trailers).
    pub accepted: usize,
    /// The most bytes one mutant's parse held at once (on the parsing thread).
    pub peak_bytes: usize,
}

/// Runs `parse` on the mutants of `original` (see the crate documentation) and panics with
/// every failing mutation listed; returns how they fared otherwise.
pub fn fuzz<E: Display>(target: &Target, original: &[u8], mut parse: impl FnMut(&[u8]) -> Result<(), E>) -> Summary {
    assert!(
        installed(),
        "the allocation meter is not installed: add `#[global_allocator] static METER: parser_fuzz::MeteredAllocator = parser_fuzz::MeteredAllocator;` to the test binary"
    );
    let size = RunSize::from_env();
    let mut rng = Rng::new(size.seed ^ fnv1a(target.name.as_bytes()));
    let mut cases: Vec<Vec<Mutation>> =
        truncations(original.len(), size.dense, size.cases, &mut rng).into_iter().map(|cut| vec![cut]).collect();
    cases.extend(random_mutants(original, size.cases, &mut rng));

    let content_len = original.len() - original.iter().rev().take_while(|byte| byte.is_ascii_whitespace()).count();
    let started = Instant::now();
    let mut summary = Summary::default();
    let mut failures = Vec::new();
    for changes in &cases {
        let bytes = changes.iter().fold(original.to_vec(), |bytes, change| change.apply(&bytes));
        let described = changes.iter().map(ToString::to_string).collect::<Vec<_>>().join(", then ");
        describe_case(format!("{}: {described}", target.name));
        let (outcome, peak) = measure(|| quiet_panics(|| catch_unwind(AssertUnwindSafe(|| parse(&bytes)))));
        summary.mutants += 1;
        summary.peak_bytes = summary.peak_bytes.max(peak);
        match outcome {
            Err(panic) => failures.push(format!("{described}: panicked{}: {}", PANIC_AT.take(), panic_message(&panic))),
            Ok(Ok(())) => {
                summary.accepted += 1;
                if cuts_content(changes, content_len, target.whole_from) {
                    failures.push(format!("{described}: accepted"));
                }
            }
            Ok(Err(_)) => summary.rejected += 1,
        }
        if peak > target.allocation_budget {
            failures.push(format!("{described}: held {peak} bytes, over the budget of {}", target.allocation_budget));
        }
    }
    eprintln!(
        "fuzz {}: {} mutants of {} bytes, {} rejected, {} accepted, peak {} bytes (budget {}), {:.1} s",
        target.name,
        summary.mutants,
        original.len(),
        summary.rejected,
        summary.accepted,
        summary.peak_bytes,
        target.allocation_budget,
        started.elapsed().as_secs_f64()
    );
    assert!(
        failures.is_empty(),
        "{} of {} mutants of {} failed (replay with DISTR_FUZZ_SEED={} DISTR_FUZZ_CASES={} DISTR_FUZZ_DENSE={}):\n{}",
        failures.len(),
        summary.mutants,
        target.name,
        size.seed,
        size.cases,
        size.dense,
        failures.join("\n")
    );
    summary
}

/// Whether `changes` is one truncation that removes content: cuts into the first
/// `content_len` bytes (the file without its trailing whitespace) before `whole_from`.
fn cuts_content(changes: &[Mutation], content_len: usize, whole_from: Option<usize>) -> bool {
    match (changes, whole_from) {
        ([Mutation::Truncate { len }], Some(whole_from)) => *len < content_len.min(whole_from),
        _ => false,
    }
}

thread_local! {
    static QUIET: Cell<bool> = const { Cell::new(false) };
    /// Where the last quiet panic of this thread happened (" at file:line:column").
    static PANIC_AT: RefCell<String> = const { RefCell::new(String::new()) };
}

/// Runs `work` with this thread's panics recorded instead of printed (with a backtrace each,
/// thousands of mutants would bury the report); other threads' panics print as before.
fn quiet_panics<R>(work: impl FnOnce() -> R) -> R {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if QUIET.with(Cell::get) {
                let at = info.location().map(|l| format!(" at {}:{}:{}", l.file(), l.line(), l.column()));
                PANIC_AT.set(at.unwrap_or_default());
            } else {
                previous(info);
            }
        }));
    });
    QUIET.set(true);
    let result = work();
    QUIET.set(false);
    result
}

fn panic_message(panic: &Box<dyn Any + Send>) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "(no message)".into())
}

/// Mixes the target's name into the seed, so that two files fuzzed with one seed do not get
/// the same positions.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &byte| (hash ^ byte as u64).wrapping_mul(0x0100_0000_01b3))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[global_allocator]
    static METER: MeteredAllocator = MeteredAllocator;

    /// A length-prefixed record: one byte of length, then that many bytes.
    fn parse_record(bytes: &[u8]) -> Result<Vec<u8>, String> {
        let (&len, rest) = bytes.split_first().ok_or("empty")?;
        rest.get(..len as usize).map(<[u8]>::to_vec).ok_or_else(|| "truncated".to_string())
    }

    #[test]
    fn a_careful_parser_passes() {
        let original = [5, 1, 2, 3, 4, 5];
        let summary = fuzz(&Target::new("record", 1024), &original, |bytes| parse_record(bytes).map(drop));
        assert!(summary.rejected > 0 && summary.accepted > 0);
    }

    #[test]
    #[should_panic(expected = "panicked")]
    fn a_panicking_parser_is_caught() {
        let original = [5, 1, 2, 3, 4, 5];
        fuzz(&Target::new("record", 1024), &original, |bytes| Ok::<_, String>(drop(bytes[..1 + bytes[0] as usize].to_vec())));
    }

    #[test]
    #[should_panic(expected = "over the budget")]
    fn an_allocation_sized_by_a_field_is_caught() {
        let original = [0u8, 0, 0, 0, 1, 2, 3, 4];
        fuzz(&Target::new("sized", 1024), &original, |bytes| {
            let len = u32::from_le_bytes(bytes.get(..4).ok_or("short")?.try_into().unwrap());
            let buffer = vec![0u8; (len as usize).min(1 << 24)];
            Ok::<_, &str>(drop(std::hint::black_box(buffer)))
        });
    }

    #[test]
    #[should_panic(expected = "accepted")]
    fn an_accepted_truncation_is_caught() {
        fuzz(&Target::new("lenient", 1024), b"abcdef", |_| Ok::<_, String>(()));
    }

    #[test]
    fn cuts_in_a_trailer_or_in_trailing_whitespace_may_parse() {
        let needs_four = |bytes: &[u8]| if bytes.len() >= 4 { Ok(()) } else { Err("short") };
        fuzz(&Target::new("trailer", 1024).whole_from(4), b"abcdefgh", needs_four);
        fuzz(&Target::new("whitespace", 1024), b"abcd \n", needs_four);
    }

    #[test]
    fn the_meter_counts_what_a_thread_holds_at_its_peak() {
        let ((), peak) = measure(|| {
            let a = vec![0u8; 10_000];
            drop(std::hint::black_box(a));
            let b = vec![0u8; 3_000];
            drop(std::hint::black_box(b));
        });
        assert!((10_000..11_000).contains(&peak), "{peak}");
    }
}
