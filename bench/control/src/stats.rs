//! Small statistics over measured durations: nearest-rank percentiles,
//! medians and maxima, in milliseconds.

use std::time::Duration;

/// Measured durations, kept sorted once [`Samples::sort`] has run.
#[derive(Debug, Default, Clone)]
pub struct Samples(Vec<Duration>);

impl Samples {
    /// Adds one measurement.
    pub fn push(&mut self, d: Duration) {
        self.0.push(d);
    }

    /// Adds every measurement of another set.
    pub fn extend(&mut self, other: Samples) {
        self.0.extend(other.0);
    }

    /// How many measurements there are.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Sorts the measurements (needed before [`Samples::percentile_ms`]).
    pub fn sort(&mut self) {
        self.0.sort_unstable();
    }

    /// The nearest-rank percentile `q` (0 < q <= 1) in milliseconds, of
    /// sorted samples; 0 when there are none.
    pub fn percentile_ms(&self, q: f64) -> f64 {
        if self.0.is_empty() {
            return 0.0;
        }
        let rank = (q * self.0.len() as f64).ceil() as usize;
        let index = rank.clamp(1, self.0.len()) - 1;
        ms(self.0[index])
    }

    /// The median in milliseconds (of sorted samples).
    pub fn median_ms(&self) -> f64 {
        self.percentile_ms(0.5)
    }

    /// The largest sample in milliseconds (of sorted samples).
    pub fn max_ms(&self) -> f64 {
        self.0.last().copied().map_or(0.0, ms)
    }
}

/// CPU time (user + system) a process has used so far, from
/// `/proc/<pid>/stat`; `None` where that is not readable.
pub fn cpu_time(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may hold
    // spaces: state is the first, utime the 12th, stime the 13th.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // The kernel reports USER_HZ ticks, 100 per second on Linux.
    Some(Duration::from_millis(ticks * 10))
}

/// A duration in (fractional) milliseconds.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let mut s = Samples::default();
        for i in (1..=100).rev() {
            s.push(Duration::from_millis(i));
        }
        s.sort();
        assert_eq!(s.median_ms(), 50.0);
        assert_eq!(s.percentile_ms(0.99), 99.0);
        assert_eq!(s.max_ms(), 100.0);
        assert_eq!(Samples::default().median_ms(), 0.0);
    }
}
