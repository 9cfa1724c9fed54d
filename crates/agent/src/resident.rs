//! Keeps an idle agent's resident set to the code it actually runs.
//!
//! The agent is the whole `nex` binary (about 19 MB of machine code) plus libc. When a page of a
//! file mapping faults, Linux maps up to 16 neighbouring pages that are already in the page cache
//! ("fault-around"), so an agent that touched a few hundred scattered pages of code shows several
//! megabytes of the binary in its RSS. Those pages are shared with every other process running
//! `nex` and cost no memory of their own, but they make RSS overstate what one function costs.
//!
//! [`Trim::prepare`] finds the read-only file mappings (code, read-only data; never mappings with
//! written pages, such as relocated data) while `/proc` is still visible. [`Trim::apply`], once
//! the workload is loaded, drops the pages loading touched (argument parsing, the init path, the
//! compiler for an uncached module) from this process's page tables (`MADV_DONTNEED`; they stay
//! in the page cache, so nothing is read from disk again): the first calls fault back the pages
//! calls use, with their fault-around neighbours.
//!
//! [`IdleTrim`] does it again whenever the agent has had no frame for a while (the node's
//! `idle_trim_after`, [`IDLE_AFTER`] by default): a function
//! nobody calls gives back the code pages its last calls touched and the heap malloc holds free,
//! and the next call faults the code back from the page cache (`nex-bench` measures the first
//! call after a pause: no cost visible next to waking the processes after it). A busy agent never trims; an idle one sleeps without wake-ups until the next
//! frame.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

/// How long an agent goes without frames before it trims again, unless the node says otherwise.
pub const IDLE_AFTER: Duration = Duration::from_secs(5);

/// Read-only file mappings of this process, found before the sandbox hides `/proc`.
#[derive(Debug, Default)]
pub struct Trim {
    ranges: Vec<(usize, usize)>,
}

impl Trim {
    /// Finds the mappings. Best effort: on any error there is nothing to trim.
    pub fn prepare() -> Self {
        let Ok(smaps) = std::fs::read_to_string("/proc/self/smaps") else {
            return Self::default();
        };
        let mut ranges = Vec::new();
        let mut current: Option<(usize, usize)> = None;
        for line in smaps.lines() {
            if let Some((range, rest)) = line.split_once(' ')
                && let Some((start, end)) = range.split_once('-')
                && let (Ok(start), Ok(end)) = (
                    usize::from_str_radix(start, 16),
                    usize::from_str_radix(end, 16),
                )
            {
                // `perms offset dev inode path`: private, not writable, backed by a file.
                let fields: Vec<&str> = rest.split_whitespace().collect();
                let file_backed = fields.len() >= 5 && fields[4].starts_with('/');
                let read_only = fields
                    .first()
                    .is_some_and(|p| !p.contains('w') && p.ends_with('p'));
                current = (file_backed && read_only).then_some((start, end));
                continue;
            }
            // Pages that were written (copy-on-write, e.g. relocations) hold data of their own:
            // dropping them would lose it. Keep such mappings as they are.
            if let Some(kb) = line.strip_prefix("Anonymous:")
                && let Some((start, end)) = current.take()
                && kb.trim().trim_end_matches("kB").trim() == "0"
            {
                ranges.push((start, end));
            }
        }
        Self { ranges }
    }

    /// Drops the pages of the prepared mappings from this process's page tables.
    pub fn apply(&self) {
        for &(start, end) in &self.ranges {
            // SAFETY: these mappings are private, read-only and had no written (anonymous) pages:
            // every page equals the file's, so zapping the page-table entries loses nothing and
            // the next access maps the same page-cache page again.
            let _ = unsafe {
                rustix::mm::madvise(
                    start as *mut std::ffi::c_void,
                    end - start,
                    rustix::mm::Advice::LinuxDontNeed,
                )
            };
        }
    }

    /// Number of mappings handled, for the sandbox report.
    pub fn mappings(&self) -> usize {
        self.ranges.len()
    }
}

/// Trims the agent's resident set each time it falls idle.
pub struct IdleTrim {
    shared: Arc<IdleShared>,
    thread: Option<std::thread::Thread>,
}

/// Looks per `idle_after` period of the trimming thread.
const IDLE_STEPS: u32 = 5;

struct IdleShared {
    /// Frames seen; the trimming thread compares it over [`IDLE_AFTER`].
    activity: AtomicU64,
    /// The last trim has not been followed by any frame yet (the thread is parked).
    trimmed: AtomicBool,
}

impl IdleTrim {
    /// Starts the trimming thread; a zero `idle_after` never trims. Best effort: without a
    /// thread nothing is trimmed.
    pub fn start(trim: Trim, idle_after: Duration) -> Self {
        let shared = Arc::new(IdleShared {
            activity: AtomicU64::new(0),
            trimmed: AtomicBool::new(!idle_after.is_zero()),
        });
        if idle_after.is_zero() {
            return Self {
                shared,
                thread: None,
            };
        }
        let s = shared.clone();
        let thread = std::thread::Builder::new()
            .name("nex-idle-trim".into())
            .spawn(move || {
                loop {
                    // Parked until the first frame after the last trim.
                    while s.trimmed.load(Ordering::Acquire) {
                        std::thread::park();
                    }
                    // Look in fifths of `idle_after`, so the trim comes between `idle_after`
                    // and a fifth more after the last frame (one whole period per look let it
                    // come up to twice as late).
                    let mut seen = s.activity.load(Ordering::Relaxed);
                    let mut quiet = 0;
                    while quiet < IDLE_STEPS {
                        std::thread::sleep(idle_after / IDLE_STEPS);
                        let now = s.activity.load(Ordering::Relaxed);
                        quiet = if now == seen { quiet + 1 } else { 0 };
                        seen = now;
                    }
                    trim.apply();
                    // SAFETY: `malloc_trim` only returns free heap memory to the kernel.
                    unsafe {
                        libc::malloc_trim(0);
                    }
                    s.trimmed.store(true, Ordering::Release);
                }
            })
            .ok()
            .map(|h| h.thread().clone());
        Self { shared, thread }
    }

    /// Notes a frame: called by the reader for each one, so it must stay cheap (one atomic add,
    /// and one swap that wakes the trimming thread only on the first frame after a trim).
    pub fn activity(&self) {
        self.shared.activity.fetch_add(1, Ordering::Relaxed);
        if self.shared.trimmed.load(Ordering::Relaxed)
            && self.shared.trimmed.swap(false, Ordering::AcqRel)
            && let Some(t) = &self.thread
        {
            t.unpark();
        }
    }
}
