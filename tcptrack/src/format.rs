//! How numbers, durations and endpoints are written, on screen and in the plain table.

use std::fmt::Write as _;
use std::time::Duration;

/// How speeds are written: bytes per second, 1024-based as the classic writes them, or bits per
/// second, 1000-based as network links are rated (`-b`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Units {
    #[default]
    Bytes,
    Bits,
}

/// A speed in the classic's units (`B/s`, `KB/s`, `MB/s`, 1024-based, and beyond the classic's
/// `LUDICROUS`, `GB/s`), with three significant digits: `1023 B/s`, `4.75 KB/s`, `47.5 MB/s`,
/// `1.91 GB/s`. Digits are cut, never rounded up, so a value never shows as more than it is
/// (`1023.9 KB/s` is `1023 KB/s`, not `1.00 MB/s`).
#[must_use]
pub fn speed(bytes_per_sec: u64) -> String {
    rate(bytes_per_sec, Units::Bytes)
}

/// A speed in `units`: [`speed`] for bytes; for bits `b/s`, `kb/s`, `Mb/s`, `Gb/s`, `Tb/s`
/// (1000-based), three significant digits the same way.
#[must_use]
pub fn rate(bytes_per_sec: u64, units: Units) -> String {
    let (value, base, names): (u128, u128, [&str; 5]) = match units {
        Units::Bytes => (
            u128::from(bytes_per_sec),
            1024,
            ["B/s", "KB/s", "MB/s", "GB/s", "TB/s"],
        ),
        Units::Bits => (
            u128::from(bytes_per_sec) * 8,
            1000,
            ["b/s", "kb/s", "Mb/s", "Gb/s", "Tb/s"],
        ),
    };
    let mut unit = 0;
    let mut scale = 1u128;
    while unit + 1 < names.len() && value >= scale * base {
        scale *= base;
        unit += 1;
    }
    let name = names[unit];
    let whole = value / scale;
    // Hundredths of the unit, cut: exact integer arithmetic, no float rounding up.
    let hundredths = value * 100 / scale;
    if unit == 0 || whole >= 100 {
        format!("{whole} {name}")
    } else if whole >= 10 {
        format!("{whole}.{} {name}", hundredths / 10 % 10)
    } else {
        format!("{whole}.{:02} {name}", hundredths % 100)
    }
}

/// A time in microseconds with three significant digits: `850 µs`, `12.3 ms`, `1.25 s`.
#[must_use]
pub fn micros(us: u32) -> String {
    let us = u64::from(us);
    let (whole, unit, scale) = match us {
        u if u < 1000 => return format!("{u} µs"),
        u if u < 1_000_000 => (u / 1000, "ms", 1000),
        u => (u / 1_000_000, "s", 1_000_000),
    };
    let hundredths = us * 100 / scale;
    if whole >= 100 {
        format!("{whole} {unit}")
    } else if whole >= 10 {
        format!("{whole}.{} {unit}", hundredths / 10 % 10)
    } else {
        format!("{whole}.{:02} {unit}", hundredths % 100)
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

/// An endpoint as the standard library's `Display` writes it (`198.18.0.1:443`,
/// `[fd00::2]:80`), IPv4 without going through `fmt` (a test holds them equal).
#[must_use]
pub fn endpoint(a: std::net::SocketAddr) -> String {
    let mut out = String::with_capacity(21);
    endpoint_into(a, &mut out);
    out
}

/// [`endpoint`], appended to `out`.
pub fn endpoint_into(a: std::net::SocketAddr, out: &mut String) {
    let std::net::SocketAddr::V4(v4) = a else {
        // Writing to a String cannot fail.
        let _ = write!(out, "{a}");
        return;
    };
    let mut digits = itoa::Buffer::new();
    for (i, octet) in v4.ip().octets().into_iter().enumerate() {
        if i > 0 {
            out.push('.');
        }
        out.push_str(digits.format(octet));
    }
    out.push(':');
    out.push_str(digits.format(v4.port()));
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;

    #[test]
    fn speeds_use_1024_based_units_with_three_significant_digits() {
        assert_eq!(speed(0), "0 B/s");
        assert_eq!(speed(1023), "1023 B/s");
        assert_eq!(speed(1024), "1.00 KB/s");
        assert_eq!(speed(4864), "4.75 KB/s");
        assert_eq!(speed(48_640), "47.5 KB/s");
        assert_eq!(speed(486_400), "475 KB/s");
        assert_eq!(speed(1024 * 1024 - 1), "1023 KB/s");
        assert_eq!(speed(5 * 1024 * 1024 + 10), "5.00 MB/s");
        // Four iperf3 streams of 501, 475, 446 and 486 MiB/s: 1908 MiB/s.
        assert_eq!(speed(1908 * 1024 * 1024), "1.86 GB/s");
        assert_eq!(speed(2_050_000_000), "1.90 GB/s");
        assert_eq!(speed(3 * 1024 * 1024 * 1024), "3.00 GB/s");
        assert_eq!(speed(u64::MAX), "16777215 TB/s");
    }

    #[test]
    fn digits_are_cut_never_rounded_up() {
        assert_eq!(speed(10 * 1024 - 1), "9.99 KB/s");
        assert_eq!(speed(100 * 1024 - 1), "99.9 KB/s");
        assert_eq!(speed(1000 * 1024 - 1), "999 KB/s");
    }

    #[test]
    fn bits_are_1000_based() {
        assert_eq!(rate(0, Units::Bits), "0 b/s");
        assert_eq!(rate(124, Units::Bits), "992 b/s");
        assert_eq!(rate(125, Units::Bits), "1.00 kb/s");
        assert_eq!(rate(125_000_000, Units::Bits), "1.00 Gb/s");
        assert_eq!(rate(239_000_000, Units::Bits), "1.91 Gb/s");
        assert_eq!(rate(1_250_000_000_000, Units::Bits), "10.0 Tb/s");
        assert_eq!(rate(u64::MAX, Units::Bits), "147573952 Tb/s");
    }

    #[test]
    fn round_trips_have_three_significant_digits() {
        assert_eq!(micros(850), "850 µs");
        assert_eq!(micros(1_234), "1.23 ms");
        assert_eq!(micros(12_345), "12.3 ms");
        assert_eq!(micros(999_999), "999 ms");
        assert_eq!(micros(1_250_000), "1.25 s");
        assert_eq!(micros(u32::MAX), "4294 s");
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

    #[test]
    fn endpoints_are_written_as_display_writes_them() {
        let mut rng = crate::testing::XorShift(0x9e37_79b9_7f4a_7c15);
        for i in 0..20_000u32 {
            // Addresses and ports of every width, the extremes first.
            let x = rng.next();
            let (ip, port) = match i {
                0 => (0, 0),
                1 => (u32::MAX, u16::MAX),
                _ => ((x & 0xffff_ffff) as u32, (x >> 32 & 0xffff) as u16),
            };
            let v4 = SocketAddr::from((std::net::Ipv4Addr::from(ip), port));
            assert_eq!(endpoint(v4), v4.to_string());
            let v6 = SocketAddr::from((
                std::net::Ipv6Addr::from(u128::from(x) << 64 | u128::from(ip)),
                port,
            ));
            assert_eq!(endpoint(v6), v6.to_string());
        }
    }
}
