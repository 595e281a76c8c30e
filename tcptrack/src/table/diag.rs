//! What a connection's packets tell beyond its counts, seen from where they were captured:
//! retransmissions each way and the round-trip time.
//!
//! - A **retransmission** is told as tshark tells `tcp.analysis.retransmission`: a segment that
//!   carries sequence space (payload, SYN or FIN) starting before the highest sequence number its
//!   sender had sent. It is a fast retransmission when the other side had sent two duplicate
//!   ACKs for that number (no data, same ACK number and open window; counted until the ACK
//!   number changes) within the last 20 ms;
//!   otherwise, one that comes sooner than the first round trip (tshark's: from the last SYN
//!   to the first segment with the ACK flag alone, at least a microsecond; 3 ms until there is
//!   one) after the segment that took the
//!   sequence furthest, and does not end there, is taken as out of order, not a
//!   retransmission. A
//!   keep-alive (one byte or none, just below that number) is not one either.
//! - The **round-trip time** is the sum of the two legs seen from the capture point: from a
//!   segment of one side to the other side's ACK that covers it, each smoothed as TCP smooths
//!   its own (`srtt = 7/8 srtt + 1/8 sample`). One segment per side is timed at a time, and a
//!   timed segment that is retransmitted gives no sample (Karn). The handshake gives the first
//!   sample of each leg (SYN to SYN/ACK, SYN/ACK to ACK). From an end host, the leg of the
//!   remote side's segments is that host's own ACK delay: small, or the delayed-ACK timer.
//!
//! Times are kept in microseconds since the connection was first seen, in 32 bits (wrapping
//! after 71 minutes, which only the differences of nearby times, taken modulo 2^32, survive).

use crate::flow::TcpFlags;

/// Whether sequence number `a` comes before `b` (modulo 2^32).
const fn before(a: u32, b: u32) -> bool {
    // The difference, read as signed: negative when `a` is behind.
    a.wrapping_sub(b).cast_signed() < 0
}

/// How long after the last duplicate ACK a segment may come and be a fast retransmission.
const FAST_RETRANSMIT_US: u32 = 20_000;
/// How soon after the furthest segment one must come to be out of order, when the handshake's
/// round trip is unknown.
const OUT_OF_ORDER_US: u32 = 3_000;

/// One side's sending, as the other side and the capture point see it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Sender {
    /// The sequence number after the highest one this side has sent (valid once `seen`).
    next: u32,
    /// When `next` last moved.
    next_at: u32,
    retransmits: u32,
    /// The segment being timed (while `timing`): the ACK number that covers it, and when.
    timed_covers: u32,
    timed_at: u32,
    /// Smoothed time from this side's segments to the other side's ACK (µs; 0: no sample yet).
    leg_us: u32,
    /// This side's last ACK number, how many pure ACKs repeated it, and when the last came.
    last_ack: u32,
    last_ack_at: u32,
    last_window: u16,
    dup_acks: u8,
    flags: u8,
}

/// [`Sender::flags`]: `next` is valid; a segment is being timed; packets were seen one by one
/// (not only as a kernel's sums); the client's: a SYN was seen.
const SEEN: u8 = 1;
const TIMING: u8 = 2;
const WATCHED: u8 = 4;
const SYN_SEEN: u8 = 8;

impl Sender {
    const fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }

    const fn set(&mut self, flag: u8, on: bool) {
        if on {
            self.flags |= flag;
        } else {
            self.flags &= !flag;
        }
    }
}

/// Retransmissions and round-trip time of one connection.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Diag {
    /// Client, server (as `Side::index`).
    side: [Sender; 2],
    /// When the client's SYN was seen, and the handshake's round trip (SYN to the ACK of the
    /// SYN/ACK; 0: unknown).
    syn_at: u32,
    first_rtt_us: u32,
}

/// One segment, as [`Diag::segment`] takes it.
#[derive(Clone, Copy, Debug)]
pub struct Segment {
    pub flags: TcpFlags,
    pub seq: u32,
    pub ack: u32,
    /// Payload bytes.
    pub len: u32,
    /// The advertised window.
    pub window: u16,
    /// When, in µs since the connection was first seen (modulo 2^32).
    pub at: u32,
}

impl Diag {
    /// Takes in a segment sent by side `from` (0 client, 1 server).
    pub fn segment(&mut self, from: usize, g: Segment) {
        self.side[0].set(WATCHED, true);
        let other = 1 - (from & 1);
        let from = from & 1;
        if g.flags.0 & TcpFlags::ACK != 0 {
            self.ack(from, other, g);
        }
        let syn = g.flags.0 & TcpFlags::SYN != 0;
        let syn_fin = u32::from(syn) + u32::from(g.flags.0 & TcpFlags::FIN != 0);
        if syn && g.flags.0 & TcpFlags::ACK == 0 {
            // The most recent SYN, as tshark keeps it.
            self.syn_at = g.at;
            self.side[0].set(SYN_SEEN, true);
        }
        let space = g.len.wrapping_add(syn_fin);
        if space == 0 {
            return;
        }
        let end = g.seq.wrapping_add(space);
        let (ooo_us, rev) = (self.out_of_order_us(), self.side[other]);
        let s = &mut self.side[from];
        if s.has(SEEN) && before(g.seq, s.next) {
            let keep_alive = syn_fin == 0 && g.len <= 1 && g.seq == s.next.wrapping_sub(1);
            let fast = rev.dup_acks >= 2
                && rev.last_ack == g.seq
                && g.at.wrapping_sub(rev.last_ack_at) < FAST_RETRANSMIT_US;
            let out_of_order = !fast && g.at.wrapping_sub(s.next_at) < ooo_us && s.next != end;
            if !keep_alive && !out_of_order {
                s.retransmits = s.retransmits.saturating_add(1);
                // Karn: an ACK may answer either copy; the timed segment gives no sample.
                if s.has(TIMING) && before(g.seq, s.timed_covers) {
                    s.set(TIMING, false);
                }
            }
        } else if !s.has(TIMING) {
            s.set(TIMING, true);
            (s.timed_covers, s.timed_at) = (end, g.at);
        }
        if !s.has(SEEN) || before(s.next, end) {
            s.set(SEEN, true);
            (s.next, s.next_at) = (end, g.at);
        }
    }

    /// The ACK of a segment from `from`: closes the other side's timed segment, counts
    /// duplicates, and ends the handshake's round trip.
    fn ack(&mut self, from: usize, other: usize, g: Segment) {
        let pure = g.len == 0 && g.flags.0 & (TcpFlags::SYN | TcpFlags::FIN | TcpFlags::RST) == 0;
        if self.first_rtt_us == 0 && self.side[0].has(SYN_SEEN) && g.flags.0 == TcpFlags::ACK {
            // tshark's first round trip: from the last SYN to the first segment with the ACK
            // flag alone; none until that is at least a microsecond.
            self.first_rtt_us = g.at.wrapping_sub(self.syn_at);
        }
        let f = &mut self.side[from];
        // tshark's duplicate ACK: no data, the same ACK number and (open) window, at the
        // sender's next sequence number. Only a new ACK number starts the count again: a
        // window update between duplicates does not.
        let dup = pure
            && g.window != 0
            && f.last_ack == g.ack
            && f.last_window == g.window
            && (!f.has(SEEN) || g.seq == f.next);
        if dup {
            f.dup_acks = f.dup_acks.saturating_add(1);
        } else if f.last_ack != g.ack {
            f.dup_acks = 0;
        }
        (f.last_ack, f.last_window, f.last_ack_at) = (g.ack, g.window, g.at);
        let o = &mut self.side[other];
        if o.has(TIMING) && !before(g.ack, o.timed_covers) {
            let sample = g.at.wrapping_sub(o.timed_at).max(1);
            o.leg_us = if o.leg_us == 0 {
                sample
            } else {
                o.leg_us - o.leg_us / 8 + sample / 8
            };
            o.set(TIMING, false);
        }
    }

    fn out_of_order_us(&self) -> u32 {
        if self.first_rtt_us == 0 {
            OUT_OF_ORDER_US
        } else {
            self.first_rtt_us
        }
    }

    /// The client became the server and the other way round (a connection picked up mid-stream,
    /// its roles told by the listening sockets).
    pub const fn swap_sides(&mut self) {
        let [c, s] = self.side;
        self.side = [s, c];
    }

    /// Segments the client, then the server, sent again; `None` when no packet was seen one by
    /// one (a kernel's sums tell nothing of sequence numbers).
    #[must_use]
    pub const fn retransmits(&self) -> Option<[u32; 2]> {
        if self.side[0].has(WATCHED) || self.side[1].has(WATCHED) {
            Some([self.side[0].retransmits, self.side[1].retransmits])
        } else {
            None
        }
    }

    /// The round-trip time in microseconds, once both legs have a sample.
    #[must_use]
    pub const fn rtt_us(&self) -> Option<u32> {
        let [c, s] = [self.side[0].leg_us, self.side[1].leg_us];
        if c == 0 || s == 0 {
            return None;
        }
        Some(c.saturating_add(s))
    }
}

#[cfg(test)]
mod tests;
