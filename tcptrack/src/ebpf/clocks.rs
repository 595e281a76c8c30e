//! The programs' clock: they stamp packets with the kernel's tick count (jiffies), which is a
//! load from memory where the coarse monotonic clock is a helper call. Ticks begin at fixed
//! steps of the monotonic clock (the kernel advances the count by whole ticks of it), so
//! userspace reads ticks as the monotonic clock (what the events and the rest of tcptrack use)
//! once it has seen where one begins: from readings of both taken in a row across a tick, and
//! checked at each poll with one more.

use std::time::{Duration, Instant};

/// One reading of the kernel's clocks (see `tcptrack_common::MAP_CLOCKS`): the monotonic
/// clock, the tick count, the monotonic clock again.
pub type Reading = [u64; 3];

/// How late a tick's count may be seen, beyond the tick itself: the kernel advances it from
/// the timer interrupt, which a busy or virtual machine may serve late.
const LATE: u64 = 2_000_000;

/// The kernel's tick count read as the monotonic clock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ticks {
    /// A tick count ...
    at: u64,
    /// ... and when its tick began, by the monotonic clock in ns (a few microseconds early at
    /// most: the reading before the count moved).
    ns: u64,
    /// A tick's length.
    tick_ns: u64,
}

impl Ticks {
    /// From two readings in a row where the tick count moved by one: the tick began after the
    /// first reading started and before the second ended; it is taken to begin at the first's
    /// start, so that a packet is never read as later than it was counted.
    #[must_use]
    pub fn from_edge(first: Reading, second: Reading, tick: Duration) -> Option<Self> {
        (second[1] == first[1].wrapping_add(1)).then(|| Self {
            at: second[1],
            ns: first[0],
            tick_ns: u64::try_from(tick.as_nanos()).unwrap_or(u64::MAX),
        })
    }

    /// From one reading alone: its tick taken to have begun a tick before the reading, which
    /// reads ticks a tick early at most (where no edge was seen).
    #[must_use]
    pub fn about([start, ticks, _]: Reading, tick: Duration) -> Self {
        let tick_ns = u64::try_from(tick.as_nanos()).unwrap_or(u64::MAX);
        Self {
            at: ticks,
            ns: start.saturating_sub(tick_ns),
            tick_ns,
        }
    }

    /// Whether `r` agrees: its tick count's tick began before its end, and less than a tick
    /// (and a late interrupt) before its start. Not after a suspend, or a tick seen late.
    #[must_use]
    pub fn agrees(&self, [start, ticks, end]: Reading) -> bool {
        let began = self.ns(ticks);
        began <= end && began + self.tick_ns + LATE > start
    }

    /// The monotonic time, in ns, at which tick count `ticks` began (0, no packet: 0).
    #[must_use]
    pub const fn ns(&self, ticks: u64) -> u64 {
        if ticks == 0 {
            return 0;
        }
        if ticks <= self.at {
            self.ns
                .saturating_sub((self.at - ticks).saturating_mul(self.tick_ns))
        } else {
            self.ns
                .saturating_add((ticks - self.at).saturating_mul(self.tick_ns))
        }
    }
}

/// Finds where a tick begins from readings taken in a row by `read`, for at most three ticks
/// (the count moves once a tick; a reading takes microseconds). `None`: the count did not
/// move by one between two readings in that time (the thread was kept off the CPU).
///
/// # Errors
/// `read` failed.
pub fn find<E>(
    tick: Duration,
    mut read: impl FnMut() -> Result<Reading, E>,
) -> Result<Option<Ticks>, E> {
    let until = Instant::now() + 3 * tick;
    let mut last = read()?;
    while Instant::now() < until {
        let r = read()?;
        if let Some(t) = Ticks::from_edge(last, r, tick) {
            return Ok(Some(t));
        }
        last = r;
    }
    Ok(None)
}

/// The length of the kernel's tick: the resolution of its coarse monotonic clock.
///
/// # Errors
/// The kernel does not say (it always does on Linux).
pub fn tick() -> std::io::Result<Duration> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_getres writes one timespec we own.
    if unsafe { libc::clock_getres(libc::CLOCK_MONOTONIC_COARSE, &raw mut ts) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let ns = u64::try_from(ts.tv_nsec).unwrap_or(0);
    let s = u64::try_from(ts.tv_sec).unwrap_or(0);
    Ok(Duration::from_secs(s) + Duration::from_nanos(ns))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TICK: Duration = Duration::from_millis(4);

    #[test]
    fn ticks_read_as_the_monotonic_clock_from_where_one_began() {
        let t = Ticks::from_edge(
            [999_999_000, 4999, 999_999_500],
            [1_000_001_000, 5000, 1_000_001_400],
            TICK,
        )
        .expect("an edge");
        assert_eq!(t.ns(5000), 999_999_000);
        assert_eq!(t.ns(4990), 999_999_000 - 40_000_000);
        assert_eq!(t.ns(5001), 1_003_999_000);
        assert_eq!(t.ns(0), 0, "no packet");
        assert_eq!(t.ns(1), 0, "before the clock's start: no wrap");
        // No edge: the count did not move, or moved by two.
        assert!(Ticks::from_edge([1, 7, 2], [3, 7, 4], TICK).is_none());
        assert!(Ticks::from_edge([1, 7, 2], [3, 9, 4], TICK).is_none());
        // Readings that agree: within the tick the count names; one from after a suspend
        // (the count a hundred ticks behind) does not, nor one whose tick began after it.
        assert!(t.agrees([1_000_500_000, 5000, 1_000_500_100]));
        assert!(t.agrees([1_005_000_000, 5001, 1_005_000_100]));
        assert!(!t.agrees([1_400_000_000, 5001, 1_400_000_100]));
        assert!(!t.agrees([999_000_000, 5000, 999_000_100]));
    }

    #[test]
    fn an_edge_is_found_where_the_count_moves_and_not_where_it_is_stuck() {
        let mut clock = 0u64;
        let found = find(TICK, || {
            clock += 1_000;
            Ok::<_, ()>([clock, 10 + clock / 4_000_000, clock + 500])
        })
        .expect("readings")
        .expect("an edge");
        assert_eq!(found.ns(11), 3_999_000);
        let stuck = find(TICK, || Ok::<_, ()>([1, 7, 2])).expect("readings");
        assert_eq!(stuck, None);
        // From one reading: a tick early at most.
        let about = Ticks::about([10_000_000, 7, 10_000_100], TICK);
        assert_eq!(about.ns(7), 6_000_000);
    }

    #[test]
    fn the_tick_is_a_few_milliseconds() {
        let t = tick().expect("clock_getres");
        assert!(
            t >= Duration::from_micros(500) && t <= Duration::from_millis(10),
            "{t:?}"
        );
    }
}
