//! An allocation meter: the global allocator of a test binary that counts, per thread, the
//! bytes a parser holds at its peak, so that a fuzz case can assert that a file of a few
//! kilobytes never made its parser allocate gigabytes.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::{Cell, RefCell};
use std::io::Write;

/// Above this, one request made while metering is refused outright (the process aborts with
/// Rust's "memory allocation of N bytes failed", after the case is printed) rather than
/// served: serving it could take the machine's memory before the case could report it.
const REFUSED_ABOVE: usize = u32::MAX as usize;

thread_local! {
    static ARMED: Cell<bool> = const { Cell::new(false) };
    static LIVE: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
    /// What this thread is parsing, printed when a request is refused.
    static CASE: RefCell<String> = const { RefCell::new(String::new()) };
}

/// The system allocator, metered on threads that are inside [`measure`].
///
/// Install it in the test binary that fuzzes:
/// `#[global_allocator] static METER: parser_fuzz::MeteredAllocator = parser_fuzz::MeteredAllocator;`
pub struct MeteredAllocator;

fn record(delta: isize) {
    // `try_with`: the thread-locals are gone while a thread is being torn down.
    let _ = ARMED.try_with(|armed| {
        if armed.get() {
            LIVE.with(|live| {
                let now = live.get() + delta;
                live.set(now);
                PEAK.with(|peak| peak.set(peak.get().max(now)));
            });
        }
    });
}

fn refused(size: usize) -> bool {
    let refused = size > REFUSED_ABOVE && ARMED.try_with(Cell::get).unwrap_or(false);
    if refused {
        // No allocation here: the case was formatted before metering began.
        let _ = CASE.try_with(|case| {
            let mut stderr = std::io::stderr();
            let _ = stderr.write_all(b"parser-fuzz: refused an allocation of more than 4 GiB while parsing the mutant: ");
            let _ = stderr.write_all(case.borrow().as_bytes());
            let _ = stderr.write_all(b"\n");
        });
    }
    refused
}

/// Names the case that the next [`measure`] on this thread runs, for the report of a refused
/// allocation.
pub fn describe_case(description: String) {
    CASE.set(description);
}

// SAFETY: every call is forwarded to `System` with the caller's layout; the meter only counts.
unsafe impl GlobalAlloc for MeteredAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if refused(layout.size()) {
            return std::ptr::null_mut();
        }
        record(layout.size() as isize);
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if refused(layout.size()) {
            return std::ptr::null_mut();
        }
        record(layout.size() as isize);
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        record(-(layout.size() as isize));
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if refused(new_size) {
            return std::ptr::null_mut();
        }
        record(new_size as isize - layout.size() as isize);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// Runs `work` on this thread and returns its result with the most bytes it held allocated at
/// any moment (allocations made by other threads are not counted).
pub fn measure<R>(work: impl FnOnce() -> R) -> (R, usize) {
    LIVE.with(|live| live.set(0));
    PEAK.with(|peak| peak.set(0));
    ARMED.with(|armed| armed.set(true));
    // Disarmed again should `work` panic (the fuzz harness catches panics inside it).
    struct Disarm;
    impl Drop for Disarm {
        fn drop(&mut self) {
            ARMED.with(|armed| armed.set(false));
        }
    }
    let guard = Disarm;
    let result = work();
    drop(guard);
    (result, PEAK.with(Cell::get).max(0) as usize)
}

/// Whether [`MeteredAllocator`] is this process's global allocator.
pub fn installed() -> bool {
    let (_, peak) = measure(|| std::hint::black_box(Vec::<u8>::with_capacity(4096)));
    peak >= 4096
}
