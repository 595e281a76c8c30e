//! tcptrack's kernel side: count bytes, packets and flags per TCP connection and direction into
//! a per-CPU cache of slots and, for a connection whose slots others hold, a per-CPU hash of
//! the refresh interval; and send control packets (SYN, FIN, RST) to userspace through a ring
//! buffer. Every packet passes unchanged, whatever happens while looking at it; nothing is
//! logged per packet.
//!
//! The stages of a packet, a module each: [`packet`] (reading headers in place), [`parse`]
//! (Ethernet to TCP), [`key`] (the connection's key in canonical order), [`count`] (into the
//! flow [`cache`] or the interval's flow map), [`events`] (control packets to userspace); the
//! maps in [`maps`]; who opens a connection in [`openers`]. This file holds the programs.
#![no_std]
#![no_main]

mod cache;
mod count;
mod events;
mod key;
mod maps;
mod openers;
mod packet;
mod parse;

use aya_ebpf::{
    bindings::{xdp_action, TC_ACT_UNSPEC},
    helpers::bpf_skb_vlan_push,
    macros::{classifier, xdp},
    programs::{TcContext, XdpContext},
};
use tcptrack_common::FILTER_SLOT;

use count::stage;
use maps::{bump, FILTER_TC, FILTER_XDP, PROBE};

/// What a TC program returns for every packet: `TC_ACT_UNSPEC`, which tcx reads as
/// `TCX_NEXT` (run the next program of the chain, then the default action) and netlink TC as
/// "go on with the next filter". Anything else would end the chain: `TC_ACT_PIPE` or
/// `TC_ACT_OK` here would hide every packet from the programs attached after this one.
const TC_CONTINUE: i32 = TC_ACT_UNSPEC;

#[classifier]
pub fn tcptrack_tc(ctx: TcContext) -> i32 {
    count::tc::<{ stage::EVENTS }>(&ctx);
    TC_CONTINUE
}

/// What is attached when a filter runs in the kernel: on to the filter userspace translated,
/// which goes on to `tcptrack_tc` for the packets it selects.
#[classifier]
pub fn tcptrack_tc_f(ctx: TcContext) -> i32 {
    // SAFETY: a tail call into the filter's slot; it returns only if the slot is empty (never
    // once userspace loaded the filter): the packet then passes, uncounted.
    unsafe { FILTER_TC.tail_call(&ctx, FILTER_SLOT) };
    TC_CONTINUE
}

#[xdp]
pub fn tcptrack_xdp(ctx: XdpContext) -> u32 {
    count::xdp(&ctx);
    xdp_action::XDP_PASS
}

/// `tcptrack_tc_f`'s XDP twin.
#[xdp]
pub fn tcptrack_xdp_f(ctx: XdpContext) -> u32 {
    // SAFETY: as in `tcptrack_tc_f`.
    unsafe { FILTER_XDP.tail_call(&ctx, FILTER_SLOT) };
    xdp_action::XDP_PASS
}

/// Reads the kernel's clocks for userspace (run with BPF_PROG_TEST_RUN at each poll, never
/// attached): see `count::clocks`.
#[classifier]
pub fn tcptrack_clocks(_ctx: TcContext) -> i32 {
    count::clocks();
    TC_CONTINUE
}

/// Does nothing but pass the packet: the baseline the benchmarks measure the counting program
/// against (never attached by tcptrack).
#[classifier]
pub fn tcptrack_empty(_ctx: TcContext) -> i32 {
    TC_CONTINUE
}

// `tcptrack_tc` stopped after each of its stages (see `count::stage`): the benchmarks' ablation,
// never attached by tcptrack.

#[classifier]
pub fn stage_parse(ctx: TcContext) -> i32 {
    count::tc::<{ stage::PARSE }>(&ctx);
    TC_CONTINUE
}

#[classifier]
pub fn stage_key(ctx: TcContext) -> i32 {
    count::tc::<{ stage::KEY }>(&ctx);
    TC_CONTINUE
}

#[classifier]
pub fn stage_clock(ctx: TcContext) -> i32 {
    count::tc::<{ stage::CLOCK }>(&ctx);
    TC_CONTINUE
}

#[classifier]
pub fn stage_lookup(ctx: TcContext) -> i32 {
    count::tc::<{ stage::LOOKUP }>(&ctx);
    TC_CONTINUE
}

#[classifier]
pub fn stage_update(ctx: TcContext) -> i32 {
    count::tc::<{ stage::UPDATE }>(&ctx);
    TC_CONTINUE
}

/// `tcptrack_tc` with every header read by `bpf_skb_load_bytes`, as it reads headers beyond a
/// packet's linear data (which BPF_PROG_TEST_RUN cannot make): the tests hold its counts to
/// `tcptrack_tc`'s (never attached by tcptrack).
#[classifier]
pub fn probe_copied(ctx: TcContext) -> i32 {
    count::tc_copied(&ctx);
    TC_CONTINUE
}

/// Counts every packet it sees and passes it on, like any well-behaved program of a tcx chain
/// (a CNI's datapath, a firewall, another monitor). The tests attach it before and after
/// tcptrack's programs to show that tcptrack hides nothing from the rest of the chain (never
/// attached by tcptrack; its name does not start with `tcptrack_`).
#[classifier]
pub fn probe_count(_ctx: TcContext) -> i32 {
    bump(&PROBE, 0);
    TC_CONTINUE
}

/// Gives the packet VLAN tag 7 the way a NIC, or the kernel's untagging before TC ingress,
/// does (out of the frame, in `skb->vlan_tci`), then goes on to the filter as
/// `tcptrack_tc_f` does: the tests run libpcap's decisions on the tagged frame against the
/// filter's there (never attached by tcptrack; its name does not start with `tcptrack_`).
#[classifier]
pub fn probe_vlan_7(ctx: TcContext) -> i32 {
    // SAFETY: the helper on this program's own packet; the tail call as in `tcptrack_tc_f`.
    unsafe {
        if bpf_skb_vlan_push(ctx.skb.skb, 0x8100u16.to_be(), 7) == 0 {
            FILTER_TC.tail_call(&ctx, FILTER_SLOT);
        }
    }
    TC_CONTINUE
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
