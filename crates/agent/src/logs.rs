//! The function's log budget, applied where lines are made: a line the budget refuses is counted
//! and never framed, so a `console.log` flood costs neither the pipe nor the node. What a call
//! dropped goes to the node in one `LogsDropped` frame with the call's reply (and, for lines
//! made outside calls, when the agent ends); the node adds it to its own count, which it reports
//! in a `logs_dropped` event at most once per
//! [`DROP_REPORT_PERIOD`](nex_hostapi::rate::DROP_REPORT_PERIOD).

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use nex_hostapi::rate::LogBudget;
use nex_proto::agent_wire::{FromAgent, LogLevel};

/// Shared by every thread of the agent that makes log lines.
pub struct LogGate {
    budget: Mutex<LogBudget>,
    /// Lines were dropped since the last [`LogGate::flush`]: one load per call when none were.
    dropped: AtomicBool,
}

impl LogGate {
    /// A budget of `rate` bytes per second with bursts up to `burst`; a rate of 0 lets
    /// everything through.
    pub fn new(rate: u64, burst: u64) -> Self {
        Self {
            budget: Mutex::new(LogBudget::new(rate, burst, Instant::now())),
            dropped: AtomicBool::new(false),
        }
    }

    fn budget(&self) -> std::sync::MutexGuard<'_, LogBudget> {
        self.budget.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Pushes `text` as a log frame of call `id` when the budget admits it; counts it when not.
    pub fn line(&self, id: u64, level: LogLevel, text: String, out: &mut Vec<FromAgent>) {
        if self.budget().admit(text.len(), Instant::now()) {
            out.push(FromAgent::Log { id, level, text });
        } else {
            self.dropped.store(true, Ordering::Relaxed);
        }
    }

    /// A `LogsDropped` frame with what was dropped and not yet said, if anything (after each
    /// call, and when the agent ends).
    pub fn flush(&self) -> Option<FromAgent> {
        if !self.dropped.swap(false, Ordering::Relaxed) {
            return None;
        }
        self.budget()
            .report(Instant::now(), true)
            .map(|(lines, bytes)| FromAgent::LogsDropped { lines, bytes })
    }
}

/// Turns guest stderr (or console output) into log frames, one per line, within `gate`.
pub fn log_frames(gate: &LogGate, id: u64, level: LogLevel, text: &[u8], out: &mut Vec<FromAgent>) {
    for line in String::from_utf8_lossy(text).lines() {
        if !line.is_empty() {
            gate.line(id, level, line.to_owned(), out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(frames: &[FromAgent]) -> (usize, u64, u64) {
        let mut logs = 0;
        let (mut lines, mut bytes) = (0, 0);
        for f in frames {
            match f {
                FromAgent::Log { .. } => logs += 1,
                FromAgent::LogsDropped { lines: l, bytes: b } => {
                    lines += l;
                    bytes += b;
                }
                other => panic!("unexpected frame {other:?}"),
            }
        }
        (logs, lines, bytes)
    }

    #[test]
    fn a_flood_is_cut_at_the_burst_and_every_dropped_line_is_counted() {
        let gate = LogGate::new(1000, 4000);
        let mut out = Vec::new();
        let line = "x".repeat(1000);
        for _ in 0..100 {
            gate.line(1, LogLevel::Info, line.clone(), &mut out);
        }
        out.extend(gate.flush());
        let (logs, lines, bytes) = count(&out);
        // The burst lets four lines through (a few more if the clock moved meanwhile).
        assert!((4..=6).contains(&logs), "{logs}");
        assert_eq!(logs as u64 + lines, 100);
        assert_eq!(bytes, lines * 1000);
        assert!(gate.flush().is_none(), "reported twice");
    }

    #[test]
    fn zero_is_no_limit_and_empty_lines_are_skipped() {
        let gate = LogGate::new(0, 0);
        let mut out = Vec::new();
        let text = "a\n\nb\n".repeat(10_000);
        log_frames(&gate, 2, LogLevel::Info, text.as_bytes(), &mut out);
        assert_eq!(count(&out), (20_000, 0, 0));
        assert!(gate.flush().is_none());
    }
}
