//! Filter expressions on arbitrary strings (a dictionary of their words helps: `filter.dict`),
//! compiled by libpcap as tcptrack compiles them, then translated into the kernel's eBPF for TC
//! and XDP (`tcptrack::ebpf::cbpf`).
//!
//! Besides not panicking: whatever libpcap compiles translates (a refusal would send a valid
//! filter away from the kernel path), and the translation is what the verifier walks in one
//! pass: every jump goes forward to the start of an instruction inside the program, registers
//! are the eleven of eBPF, and the program ends in `exit`. What the programs decide is the
//! kernel's to say: `tcptrack/tests/kernel_filter.rs` runs them against libpcap.

#![no_main]

use libfuzzer_sys::fuzz_target;
use tcptrack::ebpf::cbpf::{translate, Hook, Insn, Maps};

/// eBPF's jump classes and the two jump ops that do not jump.
const JMP: u8 = 0x05;
const JMP32: u8 = 0x06;
const CALL: u8 = 0x80;
const EXIT: u8 = 0x90;
const LD_IMM64: u8 = 0x18;

fn check(expr: &str, hook: Hook, insns: &[Insn]) {
    // Where each instruction starts (the second half of a 64-bit load is none).
    let mut starts = vec![true; insns.len()];
    let mut i = 0;
    while i < insns.len() {
        if insns[i].code == LD_IMM64 {
            assert!(i + 1 < insns.len(), "`{expr}` ({hook}): a cut 64-bit load");
            starts[i + 1] = false;
            i += 1;
        }
        i += 1;
    }
    for (at, insn) in insns.iter().enumerate() {
        if !starts[at] {
            continue;
        }
        assert!(
            insn.regs & 0x0f <= 10 && (insn.regs >> 4 <= 10 || insn.code == LD_IMM64),
            "`{expr}` ({hook}): instruction {at} names a register eBPF has not"
        );
        let class = insn.code & 0x07;
        let op = insn.code & 0xf0;
        if (class == JMP || class == JMP32) && op != CALL && op != EXIT {
            let to = at as i64 + 1 + i64::from(insn.off);
            assert!(
                insn.off >= 0 && to < insns.len() as i64 && starts[to as usize],
                "`{expr}` ({hook}): instruction {at} jumps to {to} of {}",
                insns.len()
            );
        }
    }
    assert_eq!(
        insns.last().map(|i| i.code),
        Some(JMP | EXIT),
        "`{expr}` ({hook}): the program does not end in exit"
    );
}

fuzz_target!(|data: &[u8]| {
    let Ok(expr) = std::str::from_utf8(data) else {
        return;
    };
    // libpcap's grammar has no NUL: it would read a shorter expression.
    if expr.contains('\0') {
        return;
    }
    let Ok(program) = tcptrack::filter::compile(expr, pcap::Linktype::ETHERNET) else {
        return;
    };
    let maps = Maps {
        programs: 3,
        counters: 4,
    };
    for hook in [Hook::Tc, Hook::Xdp] {
        let insns = translate(&program, hook, maps)
            .unwrap_or_else(|e| panic!("`{expr}` ({hook}): libpcap compiled it, {e}"));
        check(expr, hook, &insns);
    }
});
