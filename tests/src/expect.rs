//! What a test expects of a connection, computed from the frames it generated.

use std::ops::AddAssign;
use std::time::Duration;

use crate::run::Record;

/// What one side sent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    /// TCP payload bytes.
    pub payload: u64,
    /// Frame bytes on the wire.
    pub bytes: u64,
    pub packets: u64,
}

impl AddAssign for Tally {
    fn add_assign(&mut self, o: Self) {
        self.payload += o.payload;
        self.bytes += o.bytes;
        self.packets += o.packets;
    }
}

/// What each side of a connection sent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Expected {
    pub client: Tally,
    pub server: Tally,
}

impl Expected {
    /// The same counts with client and server swapped (for a connection whose roles tcptrack
    /// decides otherwise than the session builder named them).
    #[must_use]
    pub const fn swapped(self) -> Self {
        Self {
            client: self.server,
            server: self.client,
        }
    }
}

impl AddAssign for Expected {
    fn add_assign(&mut self, o: Self) {
        self.client += o.client;
        self.server += o.server;
    }
}

/// Asserts every counter of `rec`, both directions and totals.
#[track_caller]
pub fn assert_counts(rec: &Record, exp: &Expected) {
    let seen = Expected {
        client: Tally {
            payload: rec.client_payload_bytes,
            bytes: rec.client_bytes,
            packets: rec.client_packets,
        },
        server: Tally {
            payload: rec.server_payload_bytes,
            bytes: rec.server_bytes,
            packets: rec.server_packets,
        },
    };
    assert_eq!(seen, *exp, "counters of {} -> {}", rec.client, rec.server);
    assert_eq!(
        (rec.payload_bytes, rec.bytes, rec.packets),
        (
            exp.client.payload + exp.server.payload,
            exp.client.bytes + exp.server.bytes,
            exp.client.packets + exp.server.packets
        ),
        "totals (payload, bytes, packets) of {} -> {}",
        rec.client,
        rec.server
    );
}

/// `ts` (from the Unix epoch) as RFC 3339 UTC with nanoseconds: `2023-11-14T22:13:20.000000000Z`.
#[must_use]
pub fn rfc3339(ts: Duration) -> String {
    let secs = ts.as_secs();
    let days = i64::try_from(secs / 86_400).expect("date within range");
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:09}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        ts.subsec_nanos()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_known_dates() {
        assert_eq!(
            rfc3339(Duration::from_secs(1_700_000_000)),
            "2023-11-14T22:13:20.000000000Z"
        );
        assert_eq!(rfc3339(Duration::ZERO), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(
            rfc3339(Duration::new(951_782_400 + 86_399, 5)),
            "2000-02-29T23:59:59.000000005Z"
        );
    }
}
