//! A one-line upload progress bar on stderr, shown only where a person watches: stderr is a
//! terminal, no `--json`, and the upload is large enough to take a moment.

use std::io::{IsTerminal, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nex_client::UploadProgress;

/// Uploads smaller than this finish before a bar would be seen.
pub const MIN_BYTES: u64 = 1024 * 1024;

/// Whether to show a bar for an upload of `size` bytes.
pub fn wanted(json: bool, stderr_is_terminal: bool, size: u64) -> bool {
    !json && stderr_is_terminal && size >= MIN_BYTES
}

/// `label [#####.....]  50%  1.0/2.0 MiB`, `width` cells of bar.
pub fn render(label: &str, sent: u64, total: u64, width: usize) -> String {
    let total = total.max(1);
    let sent = sent.min(total);
    let filled = (sent as u128 * width as u128 / total as u128) as usize;
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    format!(
        "{label} [{}{}] {:>3}%  {:.1}/{:.1} MiB",
        "#".repeat(filled),
        ".".repeat(width - filled),
        sent * 100 / total,
        mib(sent),
        mib(total)
    )
}

/// A progress callback drawing the bar for uploading `label` (of `size` bytes), or `None` where
/// no bar is wanted. Redraws at most every 100 ms, and always at the end (then ends the line).
pub fn upload_bar(json: bool, label: &str, size: u64) -> Option<UploadProgress> {
    if !wanted(json, std::io::stderr().is_terminal(), size) {
        return None;
    }
    let label = format!("uploading {label}");
    let last: Mutex<Option<Instant>> = Mutex::new(None);
    Some(Arc::new(move |sent, total| {
        let mut last = last.lock().unwrap_or_else(|e| e.into_inner());
        let done = sent >= total;
        if !done && last.is_some_and(|t| t.elapsed() < Duration::from_millis(100)) {
            return;
        }
        *last = Some(Instant::now());
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\r{}", render(&label, sent, total, 30));
        if done {
            let _ = writeln!(err);
        }
        let _ = err.flush();
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bar_only_for_people_and_large_uploads() {
        assert!(wanted(false, true, MIN_BYTES));
        assert!(!wanted(true, true, MIN_BYTES), "--json");
        assert!(!wanted(false, false, MIN_BYTES), "a pipe");
        assert!(!wanted(false, true, MIN_BYTES - 1), "small");
    }

    #[test]
    fn the_bar_fills_with_the_upload() {
        assert_eq!(render("up", 0, 4 << 20, 4), "up [....]   0%  0.0/4.0 MiB");
        assert_eq!(
            render("up", 2 << 20, 4 << 20, 4),
            "up [##..]  50%  2.0/4.0 MiB"
        );
        assert_eq!(
            render("up", 4 << 20, 4 << 20, 4),
            "up [####] 100%  4.0/4.0 MiB"
        );
    }
}
