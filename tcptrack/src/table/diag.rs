//! What a connection's packets tell beyond its counts, seen from where they were captured:
//! retransmissions each way and the round-trip time.
//!
//! - A **retransmission** is a segment that carries sequence space (payload, SYN or FIN) starting
//!   before the highest sequence number its sender had already sent: its range was seen before.
//!   A keep-alive (one byte or none, just below that number) is not one. This is tshark's
//!   `tcp.analysis.retransmission` without its out-of-order guess.
//! - The **round-trip time** is the sum of the two legs seen from the capture point: from a
//!   segment of one side to the other side's ACK that covers it, each smoothed as TCP smooths
//!   its own (`srtt = 7/8 srtt + 1/8 sample`). One segment per side is timed at a time, and a
//!   timed segment that is retransmitted gives no sample (Karn). The handshake gives the first
//!   sample of each leg (SYN to SYN/ACK, SYN/ACK to ACK). From an end host, the leg of the
//!   remote side's segments is that host's own ACK delay: small, or the delayed-ACK timer.

use crate::flow::TcpFlags;

/// Whether sequence number `a` comes before `b` (modulo 2^32).
const fn before(a: u32, b: u32) -> bool {
    // The difference, read as signed: negative when `a` is behind.
    a.wrapping_sub(b).cast_signed() < 0
}

/// One side's sending, as the other side and the capture point see it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Sender {
    /// The sequence number after the highest one this side has sent (valid once `seen`).
    next: u32,
    seen: bool,
    retransmits: u32,
    /// The segment being timed: the ACK number that covers it, when it was seen (ns).
    timed: Option<(u32, u64)>,
    /// Smoothed time from this side's segments to the other side's ACK (ns; 0: no sample yet).
    leg_ns: u64,
}

/// Retransmissions and round-trip time of one connection.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Diag {
    /// Client, server (as `Side::index`).
    side: [Sender; 2],
}

impl Diag {
    /// Takes in a segment sent by side `from` (0 client, 1 server) at `at_ns`, with `len` bytes
    /// of payload.
    pub fn segment(
        &mut self,
        from: usize,
        flags: TcpFlags,
        seq: u32,
        ack: u32,
        len: u32,
        at_ns: u64,
    ) {
        let other = 1 - from;
        // Its ACK closes the other side's timed segment.
        if flags.0 & TcpFlags::ACK != 0 {
            let o = &mut self.side[other];
            if let Some((covers, sent)) = o.timed {
                if !before(ack, covers) {
                    let sample = at_ns.saturating_sub(sent);
                    o.leg_ns = if o.leg_ns == 0 {
                        sample
                    } else {
                        o.leg_ns - o.leg_ns / 8 + sample / 8
                    };
                    o.timed = None;
                }
            }
        }
        let syn_fin =
            u32::from(flags.0 & TcpFlags::SYN != 0) + u32::from(flags.0 & TcpFlags::FIN != 0);
        let space = len.wrapping_add(syn_fin);
        if space == 0 {
            return;
        }
        let end = seq.wrapping_add(space);
        let s = &mut self.side[from];
        if s.seen && before(seq, s.next) {
            let keep_alive = syn_fin == 0 && len <= 1 && seq == s.next.wrapping_sub(1);
            if !keep_alive {
                s.retransmits = s.retransmits.saturating_add(1);
                // Karn: an ACK may answer either copy; the timed segment gives no sample.
                if s.timed.is_some_and(|(covers, _)| before(seq, covers)) {
                    s.timed = None;
                }
            }
        } else if s.timed.is_none() {
            s.timed = Some((end, at_ns));
        }
        if !s.seen || before(s.next, end) {
            s.next = end;
            s.seen = true;
        }
    }

    /// The client became the server and the other way round (a connection picked up mid-stream,
    /// its roles told by the listening sockets).
    pub const fn swap_sides(&mut self) {
        let [c, s] = self.side;
        self.side = [s, c];
    }

    /// Segments the client, then the server, sent again.
    #[must_use]
    pub const fn retransmits(&self) -> [u32; 2] {
        [self.side[0].retransmits, self.side[1].retransmits]
    }

    /// The round-trip time in microseconds, once both legs have a sample.
    #[must_use]
    pub const fn rtt_us(&self) -> Option<u64> {
        let [c, s] = [self.side[0].leg_ns, self.side[1].leg_ns];
        if c == 0 || s == 0 {
            return None;
        }
        Some((c + s) / 1000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SYN: TcpFlags = TcpFlags(TcpFlags::SYN);
    const SYN_ACK: TcpFlags = TcpFlags(TcpFlags::SYN | TcpFlags::ACK);
    const ACK: TcpFlags = TcpFlags(TcpFlags::ACK);
    const MS: u64 = 1_000_000;

    /// A handshake seen 10 ms from the client and 40 ms from the server: client 1000, server
    /// 5000 as initial sequence numbers.
    fn handshake() -> Diag {
        let mut d = Diag::default();
        d.segment(0, SYN, 1000, 0, 0, 0);
        d.segment(1, SYN_ACK, 5000, 1001, 0, 80 * MS);
        d.segment(0, ACK, 1001, 5001, 0, 100 * MS);
        d
    }

    #[test]
    fn the_handshake_gives_both_legs() {
        let d = handshake();
        // SYN to SYN/ACK: 80 ms; SYN/ACK to ACK: 20 ms.
        assert_eq!(d.rtt_us(), Some(100_000));
        assert_eq!(d.retransmits(), [0, 0]);
        assert_eq!(Diag::default().rtt_us(), None);
    }

    #[test]
    fn data_and_its_acks_smooth_the_legs() {
        let mut d = handshake();
        // The server's data, acknowledged 4 ms later by the client, eight times.
        let mut seq = 5001;
        for i in 0..8 {
            let t = (200 + i * 10) * MS;
            d.segment(1, ACK, seq, 1001, 1000, t);
            seq += 1000;
            d.segment(0, ACK, 1001, seq, 0, t + 4 * MS);
        }
        // 20 ms smoothed towards 4 ms: 20 * (7/8)^8 + 4 * (1 - (7/8)^8) = 9.4 ms; plus 80.
        let rtt = d.rtt_us().expect("both legs");
        assert!((89_000..90_000).contains(&rtt), "{rtt}");
    }

    #[test]
    fn a_segment_sent_again_is_a_retransmission_and_gives_no_sample() {
        let mut d = handshake();
        d.segment(0, ACK, 1001, 5001, 500, 200 * MS);
        d.segment(0, ACK, 1501, 5001, 500, 201 * MS);
        // The first is lost: sent again, then both acknowledged.
        d.segment(0, ACK, 1001, 5001, 500, 400 * MS);
        d.segment(1, ACK, 5001, 2001, 0, 410 * MS);
        assert_eq!(d.retransmits(), [1, 0]);
        // The timed segment (the first) was sent again: no 210 ms sample.
        assert_eq!(d.rtt_us(), Some(100_000));
        // Overlapping the end of what was sent is a retransmission too.
        d.segment(0, ACK, 1901, 5001, 200, 500 * MS);
        assert_eq!(d.retransmits(), [2, 0]);
        // A SYN sent again.
        let mut s = Diag::default();
        s.segment(0, SYN, 7, 0, 0, 0);
        s.segment(0, SYN, 7, 0, 0, MS);
        assert_eq!(s.retransmits(), [1, 0]);
    }

    #[test]
    fn keep_alives_and_pure_acks_are_not_retransmissions() {
        let mut d = handshake();
        d.segment(0, ACK, 1001, 5001, 100, 200 * MS);
        // Keep-alives: one byte, or none, just below what was sent.
        d.segment(0, ACK, 1100, 5001, 1, 300 * MS);
        d.segment(0, ACK, 1100, 5001, 0, 301 * MS);
        // Pure ACKs, again and again.
        for _ in 0..3 {
            d.segment(1, ACK, 5001, 1101, 0, 310 * MS);
        }
        assert_eq!(d.retransmits(), [0, 0]);
    }

    #[test]
    fn sequence_numbers_wrap() {
        let mut d = Diag::default();
        d.segment(0, SYN, u32::MAX - 10, 0, 0, 0);
        d.segment(1, SYN_ACK, 1, u32::MAX - 9, 0, MS);
        d.segment(0, ACK, u32::MAX - 9, 2, 100, 2 * MS);
        // 90 bytes later the numbers wrap; nothing is sent again.
        d.segment(0, ACK, 90, 2, 100, 3 * MS);
        assert_eq!(d.retransmits(), [0, 0]);
        d.segment(0, ACK, u32::MAX - 9, 2, 100, 4 * MS);
        assert_eq!(d.retransmits(), [1, 0]);
    }
}
