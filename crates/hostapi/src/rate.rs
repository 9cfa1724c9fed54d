//! Token buckets that bound what one function may make the node do: log bytes per second and
//! host-service calls per second. The node enforces both; the agent applies the same log budget
//! before it frames a line, so a flood is dropped where it starts and costs the node nothing (the
//! node's own budget still holds an agent that does not). A bucket holds up to `burst` tokens and refills at `rate`
//! per second; what finds it empty is refused (a log line dropped and counted, a host call failed
//! with a rate-limit error). Time is passed in, so the tests need no clock.

use std::time::Instant;

/// One bucket.
#[derive(Debug)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket refilling at `rate` per second up to `burst` (at least `rate`). A rate of 0
    /// means no limit.
    pub fn new(rate: u64, burst: u64, now: Instant) -> Self {
        let burst = burst.max(rate) as f64;
        Self {
            rate: rate as f64,
            burst,
            tokens: burst,
            last: now,
        }
    }

    /// Takes `n` tokens if there are that many at `now`.
    pub fn take(&mut self, n: u64, now: Instant) -> bool {
        if self.rate == 0.0 {
            return true;
        }
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        let n = n as f64;
        if self.tokens >= n {
            self.tokens -= n;
            true
        } else {
            false
        }
    }
}

/// The log budget of one function, and what it dropped since it last said so.
#[derive(Debug)]
pub struct LogBudget {
    bucket: TokenBucket,
    pub dropped_lines: u64,
    pub dropped_bytes: u64,
    reported: Instant,
}

/// How often, at most, a function's dropped log lines are reported.
pub const DROP_REPORT_PERIOD: std::time::Duration = std::time::Duration::from_secs(1);

impl LogBudget {
    pub fn new(rate: u64, burst: u64, now: Instant) -> Self {
        Self {
            bucket: TokenBucket::new(rate, burst, now),
            dropped_lines: 0,
            dropped_bytes: 0,
            reported: now,
        }
    }

    /// May a line of `len` bytes go out at `now`? Counts it when not.
    pub fn admit(&mut self, len: usize, now: Instant) -> bool {
        // A line costs at least one token, so a flood of empty lines is bounded too.
        if self.bucket.take((len as u64).max(1), now) {
            return true;
        }
        self.dropped_lines += 1;
        self.dropped_bytes += len as u64;
        false
    }

    /// Counts lines dropped elsewhere (by the agent, before they were framed).
    pub fn add_dropped(&mut self, lines: u64, bytes: u64) {
        self.dropped_lines = self.dropped_lines.saturating_add(lines);
        self.dropped_bytes = self.dropped_bytes.saturating_add(bytes);
    }

    /// `(lines, bytes)` dropped since the last report, when there are some and the last report
    /// is at least [`DROP_REPORT_PERIOD`] old (or `force`); resets the counts.
    pub fn report(&mut self, now: Instant, force: bool) -> Option<(u64, u64)> {
        if self.dropped_lines == 0
            || (!force && now.saturating_duration_since(self.reported) < DROP_REPORT_PERIOD)
        {
            return None;
        }
        self.reported = now;
        let r = (self.dropped_lines, self.dropped_bytes);
        self.dropped_lines = 0;
        self.dropped_bytes = 0;
        Some(r)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_bucket_allows_its_burst_then_its_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(10, 20, t0);
        assert_eq!((0..25).filter(|_| b.take(1, t0)).count(), 20);
        // Half a second later: five more.
        let t1 = t0 + Duration::from_millis(500);
        assert_eq!((0..25).filter(|_| b.take(1, t1)).count(), 5);
        // Long idle refills only up to the burst.
        let t2 = t1 + Duration::from_secs(3600);
        assert_eq!((0..100).filter(|_| b.take(1, t2)).count(), 20);
    }

    #[test]
    fn rate_zero_is_unlimited() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(0, 0, t0);
        assert!((0..10_000).all(|_| b.take(1_000_000, t0)));
    }

    #[test]
    fn a_log_budget_counts_what_it_drops_and_reports_once_a_period() {
        let t0 = Instant::now();
        let mut l = LogBudget::new(100, 100, t0);
        assert!(l.admit(60, t0));
        assert!(!l.admit(60, t0));
        assert_eq!(l.report(t0 + Duration::from_millis(10), false), None);
        assert_eq!(l.report(t0 + DROP_REPORT_PERIOD, false), Some((1, 60)));
        assert_eq!(l.report(t0 + DROP_REPORT_PERIOD * 3, true), None);
        assert!(!l.admit(1000, t0 + DROP_REPORT_PERIOD * 3));
        assert_eq!(l.report(t0 + DROP_REPORT_PERIOD * 3, true), Some((1, 1000)));
    }
}
