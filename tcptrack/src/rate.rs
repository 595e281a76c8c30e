//! Speed: payload bytes per second over a window of time, kept in fixed buckets.

use std::time::Duration;

use crate::flow::Timestamp;

/// Most buckets a window is cut into (the `-f` window: 1 s in tenths).
pub const MAX_BUCKETS: usize = 10;

/// How speed is averaged: a window of `buckets` buckets of `bucket` each, aligned to multiples of
/// `bucket` from the clock's origin, so that a capture gives the same speeds every time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateConfig {
    bucket_ns: u64,
    buckets: u8,
}

impl RateConfig {
    /// The classic default: the rate over the last completed second.
    pub const CLASSIC: Self = Self {
        bucket_ns: 1_000_000_000,
        buckets: 1,
    };
    /// The classic `-f`: a 1 s window sliding in tenths of a second.
    pub const FAST: Self = Self {
        bucket_ns: 100_000_000,
        buckets: 10,
    };

    /// A window of `window`, sliding in steps of `step` (at most [`MAX_BUCKETS`] steps; a step
    /// that does not divide the window evenly is widened until it does within that limit).
    ///
    /// Returns `None` for a zero window or step.
    #[must_use]
    pub fn new(window: Duration, step: Duration) -> Option<Self> {
        let window_ns = u64::try_from(window.as_nanos()).ok()?;
        let step_ns = u64::try_from(step.as_nanos()).ok()?;
        if window_ns == 0 || step_ns == 0 {
            return None;
        }
        let wanted = (window_ns / step_ns).clamp(1, MAX_BUCKETS as u64);
        let buckets = (1..=wanted).rev().find(|n| window_ns % n == 0).unwrap_or(1);
        Some(Self {
            bucket_ns: window_ns / buckets,
            buckets: u8::try_from(buckets).ok()?,
        })
    }

    /// Length of the whole window.
    #[must_use]
    pub fn window(self) -> Duration {
        Duration::from_nanos(self.bucket_ns * u64::from(self.buckets))
    }

    fn bucket_of(self, t: Timestamp) -> u64 {
        // 64-bit arithmetic (a 128-bit division per packet showed in profiles); u64 nanoseconds
        // reach the year 2554.
        u64::try_from(t.as_nanos()).map_or(u64::MAX, |ns| ns / self.bucket_ns)
    }
}

/// Bytes counted per bucket for the last few buckets of one connection, each way (client,
/// server): the window's completed buckets and the one being filled.
#[derive(Clone, Debug, Default)]
pub struct RateWindow {
    /// Index (from the clock's origin) of the newest bucket that has been written.
    newest: u64,
    slots: Slots,
}

/// The ring of buckets, `buckets + 1` slots of both directions' bytes.
#[derive(Clone, Debug)]
enum Slots {
    /// The classic's one-bucket window: two slots, in place.
    Two([[u64; 2]; 2]),
    /// Longer windows: on the heap, sized once.
    Many(Box<[[u64; 2]]>),
}

impl Default for Slots {
    fn default() -> Self {
        Self::Two([[0; 2]; 2])
    }
}

impl Slots {
    /// The ring, `n` slots long.
    fn ring(&mut self, n: usize) -> &mut [[u64; 2]] {
        if let Self::Two(_) = self {
            if n != 2 {
                *self = Self::Many(vec![[0; 2]; n].into_boxed_slice());
            }
        }
        match self {
            Self::Two(a) => a,
            Self::Many(b) => b,
        }
    }

    fn get(&self) -> &[[u64; 2]] {
        match self {
            Self::Two(a) => a,
            Self::Many(b) => b,
        }
    }
}

impl RateWindow {
    /// Counts `bytes` sent by side `dir` (0 client, 1 server) at time `t`.
    pub fn add(&mut self, cfg: RateConfig, t: Timestamp, dir: usize, bytes: u64) {
        let n = u64::from(cfg.buckets) + 1;
        let b = cfg.bucket_of(t);
        let ring = self.slots.ring(usize::try_from(n).unwrap_or(2));
        if b > self.newest {
            // Clear the slots of the buckets that were skipped, and the new one.
            let stale = (b - self.newest).min(n);
            for i in 0..stale {
                ring[slot(b - i, n)] = [0; 2];
            }
            self.newest = b;
        }
        // A packet older than the window (out-of-order timestamps) counts in totals only.
        if self.newest - b < n {
            let s = &mut ring[slot(b, n)][dir & 1];
            *s = s.saturating_add(bytes);
        }
    }

    /// Whether the speed is zero at `now` and stays so until bytes are added: every bucket
    /// written is older than the window before `now` (or nothing was ever written).
    #[must_use]
    pub fn is_quiet(&self, cfg: RateConfig, now: Timestamp) -> bool {
        let first = cfg.bucket_of(now).saturating_sub(u64::from(cfg.buckets));
        self.newest < first || self.slots.get().iter().all(|s| *s == [0; 2])
    }

    /// Bytes per second each way (client, server) over the last completed window before `now`.
    #[must_use]
    pub fn rates(&self, cfg: RateConfig, now: Timestamp) -> [u64; 2] {
        let n = u64::from(cfg.buckets);
        let ring = n + 1;
        let slots = self.slots.get();
        let current = cfg.bucket_of(now);
        let first = current.saturating_sub(n);
        if self.newest < first {
            // Nothing in the window: no division (most connections of a busy table are idle).
            return [0; 2];
        }
        let mut sum = [0u128; 2];
        for b in first..current {
            // A slot holds bucket `b` only if `b` is among the newest written.
            if b <= self.newest && self.newest - b < ring {
                if let Some(s) = slots.get(slot(b, ring)) {
                    sum[0] += u128::from(s[0]);
                    sum[1] += u128::from(s[1]);
                }
            }
        }
        let window_ns = u128::from(cfg.bucket_ns) * u128::from(n);
        sum.map(|s| u64::try_from(s * 1_000_000_000 / window_ns).unwrap_or(u64::MAX))
    }

    /// Bytes per second both ways over the last completed window before `now`.
    #[must_use]
    pub fn rate(&self, cfg: RateConfig, now: Timestamp) -> u64 {
        let [c, s] = self.rates(cfg, now);
        c.saturating_add(s)
    }
}

fn slot(bucket: u64, n: u64) -> usize {
    // n <= MAX_BUCKETS + 1, so the remainder always fits.
    usize::try_from(bucket % n).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    #[test]
    fn classic_rate_is_the_last_completed_second() {
        let cfg = RateConfig::CLASSIC;
        let mut w = RateWindow::default();
        w.add(cfg, ms(10_100), 0, 1000);
        w.add(cfg, ms(10_900), 0, 500);
        // Still inside second 10: nothing completed yet.
        assert_eq!(w.rate(cfg, ms(10_950)), 0);
        // In second 11, second 10 is the last completed one.
        assert_eq!(w.rate(cfg, ms(11_000)), 1500);
        w.add(cfg, ms(11_500), 0, 7);
        assert_eq!(w.rate(cfg, ms(11_999)), 1500);
        assert_eq!(w.rate(cfg, ms(12_000)), 7);
        // A silent second shows zero.
        assert_eq!(w.rate(cfg, ms(13_000)), 0);
    }

    #[test]
    fn fast_rate_slides_in_tenths() {
        let cfg = RateConfig::FAST;
        let mut w = RateWindow::default();
        for i in 0..10u64 {
            w.add(cfg, ms(5_000 + i * 100 + 50), 0, 100);
        }
        // At 6.0 s the window is [5.0, 6.0): ten buckets of 100 bytes.
        assert_eq!(w.rate(cfg, ms(6_000)), 1000);
        w.add(cfg, ms(6_020), 0, 100);
        // At 6.05 s the window is still [5.0, 6.0): the bucket being filled does not count.
        assert_eq!(w.rate(cfg, ms(6_050)), 1000);
        for i in 1..10u64 {
            w.add(cfg, ms(6_000 + i * 100 + 50), 0, 100);
        }
        // At 7.05 s the window is [6.0, 7.0).
        assert_eq!(w.rate(cfg, ms(7_050)), 1000);
        // At 7.55 s the window [6.5, 7.5) holds the last five buckets only.
        assert_eq!(w.rate(cfg, ms(7_550)), 500);
        assert_eq!(w.rate(cfg, ms(8_000)), 0);
    }

    #[test]
    fn gaps_longer_than_the_window_clear_every_slot() {
        let cfg = RateConfig::FAST;
        let mut w = RateWindow::default();
        w.add(cfg, ms(1_000), 0, 999);
        w.add(cfg, ms(60_000), 0, 1);
        assert_eq!(w.rate(cfg, ms(60_100)), 1);
    }

    #[test]
    fn out_of_order_packets_within_the_window_still_count() {
        let cfg = RateConfig::FAST;
        let mut w = RateWindow::default();
        w.add(cfg, ms(2_500), 0, 10);
        w.add(cfg, ms(2_250), 0, 5);
        w.add(cfg, ms(100), 0, 1_000_000); // older than the window: totals only
        assert_eq!(w.rate(cfg, ms(3_000)), 15);
    }

    #[test]
    fn each_way_is_counted_apart_in_both_kinds_of_window() {
        for cfg in [RateConfig::CLASSIC, RateConfig::FAST] {
            let mut w = RateWindow::default();
            w.add(cfg, ms(1_050), 0, 300);
            w.add(cfg, ms(1_060), 1, 700);
            assert_eq!(w.rates(cfg, ms(2_000)), [300, 700], "{cfg:?}");
            assert_eq!(w.rate(cfg, ms(2_000)), 1_000, "{cfg:?}");
        }
        // The classic's window stays in place: no heap.
        let mut w = RateWindow::default();
        w.add(RateConfig::CLASSIC, ms(1), 0, 1);
        assert!(matches!(w.slots, Slots::Two(_)));
        assert!(std::mem::size_of::<RateWindow>() <= 48);
    }

    #[test]
    fn custom_windows_divide_evenly() {
        let c = RateConfig::new(Duration::from_secs(3), ms(500)).expect("valid");
        assert_eq!(c.window(), Duration::from_secs(3));
        assert_eq!(c.buckets, 6);
        let c = RateConfig::new(Duration::from_secs(5), ms(100)).expect("valid");
        assert_eq!((c.buckets, c.bucket_ns), (10, 500_000_000));
        let c = RateConfig::new(ms(700), ms(300)).expect("valid");
        assert_eq!(c.window(), ms(700));
        assert!(RateConfig::new(Duration::ZERO, ms(1)).is_none());
    }
}
