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
            unsafe {
                libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED);
            }
        }
    }

    /// Number of mappings handled, for the sandbox report.
    pub fn mappings(&self) -> usize {
        self.ranges.len()
    }
}
