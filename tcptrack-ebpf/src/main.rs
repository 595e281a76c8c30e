//! tcptrack's kernel side. For now: a TC program that counts the packets it sees, TCP apart,
//! and always lets them pass. The per-connection flow counting builds on it.
#![no_std]
#![no_main]

use aya_ebpf::{
    bindings::TC_ACT_PIPE,
    macros::{classifier, map},
    maps::PerCpuArray,
    programs::TcContext,
};
use tcptrack_common::counter;

const ETH_HLEN: usize = 14;
const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86DD;
const IPPROTO_TCP: u8 = 6;

#[map(name = "PACKETS_SEEN")]
static PACKETS_SEEN: PerCpuArray<u64> = PerCpuArray::with_max_entries(counter::SLOTS, 0);

#[classifier]
pub fn tcptrack_tc(ctx: TcContext) -> i32 {
    // Never change or drop a packet, whatever happens while looking at it.
    let _ = try_tcptrack_tc(&ctx);
    TC_ACT_PIPE
}

fn bump(slot: u32) {
    if let Some(v) = PACKETS_SEEN.get_ptr_mut(slot) {
        // Per-CPU slot: no other CPU writes it.
        unsafe { *v += 1 };
    }
}

fn try_tcptrack_tc(ctx: &TcContext) -> Result<(), i64> {
    bump(counter::PACKETS);
    let ether_type = u16::from_be(ctx.load::<u16>(12)?);
    let proto = match ether_type {
        ETH_P_IP => ctx.load::<u8>(ETH_HLEN + 9)?,
        ETH_P_IPV6 => ctx.load::<u8>(ETH_HLEN + 6)?,
        _ => return Ok(()),
    };
    if proto == IPPROTO_TCP {
        bump(counter::TCP);
    }
    Ok(())
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
