//! How numbers, durations and endpoints are written, on screen and in the plain table.

use std::fmt::Write as _;
use std::time::Duration;

/// A speed as the classic column shows it, 1024-based, whole units: `N B/s`, `N KB/s`,
/// `N MB/s`, and beyond the classic's `LUDICROUS`, `N GB/s`.
#[must_use]
pub fn speed(bytes_per_sec: u64) -> String {
    const K: u64 = 1024;
    match bytes_per_sec {
        b if b < K => format!("{b} B/s"),
        b if b < K * K => format!("{} KB/s", b / K),
        b if b < K * K * K => format!("{} MB/s", b / (K * K)),
        b => format!("{} GB/s", b / (K * K * K)),
    }
}

/// Idle time as the classic column shows it: `Ns` under a minute, `Nm` under an hour, `Nh` after.
#[must_use]
pub fn idle(d: Duration) -> String {
    let s = d.as_secs();
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = match s {
        s if s < 60 => write!(out, "{s}s"),
        s if s < 3600 => write!(out, "{}m", s / 60),
        s => write!(out, "{}h", s / 3600),
    };
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;

    #[test]
    fn speeds_use_1024_based_whole_units() {
        assert_eq!(speed(0), "0 B/s");
        assert_eq!(speed(1023), "1023 B/s");
        assert_eq!(speed(1024), "1 KB/s");
        assert_eq!(speed(1024 * 1024 - 1), "1023 KB/s");
        assert_eq!(speed(5 * 1024 * 1024 + 10), "5 MB/s");
        assert_eq!(speed(3 * 1024 * 1024 * 1024), "3 GB/s");
        assert_eq!(speed(u64::MAX), "17179869183 GB/s");
    }

    #[test]
    fn idle_switches_units_at_a_minute_and_an_hour() {
        assert_eq!(idle(Duration::from_millis(999)), "0s");
        assert_eq!(idle(Duration::from_secs(59)), "59s");
        assert_eq!(idle(Duration::from_secs(60)), "1m");
        assert_eq!(idle(Duration::from_secs(3599)), "59m");
        assert_eq!(idle(Duration::from_secs(3600)), "1h");
        assert_eq!(idle(Duration::from_secs(100_000)), "27h");
    }

    #[test]
    fn endpoints_print_as_rfc5952_in_brackets() {
        // The standard library's Display is what every output uses; pin its form here.
        let v6: SocketAddr = "[fd00:0:0:0:0:0:0:2]:58745".parse().expect("valid");
        assert_eq!(v6.to_string(), "[fd00::2]:58745");
        let v6: SocketAddr = "[2001:db8:0:0:1:0:0:1]:80".parse().expect("valid");
        assert_eq!(v6.to_string(), "[2001:db8::1:0:0:1]:80");
        let v4: SocketAddr = "198.18.0.1:443".parse().expect("valid");
        assert_eq!(v4.to_string(), "198.18.0.1:443");
    }
}
