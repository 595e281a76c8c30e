//! Classic BPF, as libpcap compiles a filter expression, translated into an eBPF program that
//! runs ahead of the counting program: it decides the packet as libpcap's own interpreter
//! (`bpf_filter`) would on the frame libpcap would capture, then tail-calls the counting program
//! when the packet is selected, or counts it as filtered out and passes it on.
//!
//! Classic BPF is loop-free and jumps only forward, and so is what this makes of it: the
//! verifier walks it in one pass on any kernel from 5.10 on, whatever the expression (a
//! five-primitive filter loads in under 2 ms here, one of 240 primitives in 90 ms).
//!
//! What the translation keeps of libpcap's semantics:
//! - a load beyond the frame rejects the packet (a packet load's bounds are the whole packet:
//!   the linear part is read directly, the rest with `bpf_skb_load_bytes` in TC);
//! - `A` and `X` are 32-bit, arithmetic wraps, a division by zero rejects, a shift by 32 or
//!   more gives 0, jumps compare unsigned 32-bit values;
//! - the scratch memory `M[0..16]` starts at zero;
//! - `len` is the packet's length as libpcap would capture it.
//!
//! In TC, a VLAN tag the NIC (or the kernel's software untagging, which every ingress packet
//! goes through before TC) took out of the frame is in `skb->vlan_tci`, where libpcap puts it
//! back into the frame it captures. The program reads the frame as libpcap would: with the tag
//! at bytes 12 to 16 and everything after it 4 bytes further, and 4 more bytes of length. XDP
//! sees the frame as it is on the wire.
//!
//! The kernel's ancillary loads (`SKF_AD_*`: protocol, packet type, interface, mark, queue,
//! hash, CPU, VLAN fields, random) read the hook's context where it has the field. libpcap emits
//! them only when it compiles for a live Linux socket, with its VLAN code then reading the tag
//! from them rather than from the frame; tcptrack compiles for a frame, as for a capture file.

use std::fmt;

/// One classic BPF instruction (`struct sock_filter`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cbpf {
    pub code: u16,
    pub jt: u8,
    pub jf: u8,
    pub k: u32,
}

impl Cbpf {
    #[must_use]
    pub const fn new(code: u16, jt: u8, jf: u8, k: u32) -> Self {
        Self { code, jt, jf, k }
    }
}

/// One eBPF instruction (`struct bpf_insn`), as the kernel reads it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Insn {
    pub code: u8,
    /// Destination register in the low nibble, source in the high one.
    pub regs: u8,
    pub off: i16,
    pub imm: i32,
}

/// The hook the program runs on: which context it reads the packet from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hook {
    Tc,
    Xdp,
}

/// The file descriptors of the maps the translated program refers to.
#[derive(Clone, Copy, Debug)]
pub struct Maps {
    /// The program array whose slot [`SLOT_COUNT`] holds the counting program.
    pub programs: i32,
    /// The per-CPU counters (`tcptrack_common::counter`).
    pub counters: i32,
}

/// The slot of the filter's program array that the attached program tail-calls: the
/// translated filter.
pub const SLOT_FILTER: u32 = tcptrack_common::FILTER_SLOT;
/// The slot the translated filter tail-calls for a selected packet: the counting program.
pub const SLOT_COUNT: u32 = tcptrack_common::COUNT_SLOT;

/// Why a classic program cannot be translated.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TranslateError {
    #[error("instruction {at} ({code:#06x}) is not classic BPF the kernel path can run")]
    Unsupported { at: usize, code: u16 },
    #[error("instruction {at} reads {what}, which the {hook} hook does not give")]
    Ancillary {
        at: usize,
        what: &'static str,
        hook: &'static str,
    },
    #[error("instruction {at} jumps outside the program")]
    JumpOutside { at: usize },
    #[error("the program ends without returning")]
    NoReturn,
    #[error("the filter is too large for the kernel ({0} instructions)")]
    TooLarge(usize),
}

// Classic BPF's fields (linux/filter.h, libpcap's pcap/bpf.h).
mod c {
    pub const LD: u16 = 0x00;
    pub const LDX: u16 = 0x01;
    pub const ST: u16 = 0x02;
    pub const STX: u16 = 0x03;
    pub const ALU: u16 = 0x04;
    pub const JMP: u16 = 0x05;
    pub const RET: u16 = 0x06;
    pub const MISC: u16 = 0x07;
    pub const W: u16 = 0x00;
    pub const H: u16 = 0x08;
    pub const B: u16 = 0x10;
    pub const IMM: u16 = 0x00;
    pub const ABS: u16 = 0x20;
    pub const IND: u16 = 0x40;
    pub const MEM: u16 = 0x60;
    pub const LEN: u16 = 0x80;
    pub const MSH: u16 = 0xa0;
    pub const K: u16 = 0x00;
    pub const X: u16 = 0x08;
    pub const A: u16 = 0x10;
    pub const JA: u16 = 0x00;
    pub const JEQ: u16 = 0x10;
    pub const JGT: u16 = 0x20;
    pub const JGE: u16 = 0x30;
    pub const JSET: u16 = 0x40;
    pub const NEG: u16 = 0x80;
    pub const TXA: u16 = 0x80;
    /// Where ancillary loads start (`SKF_AD_OFF`, -0x1000 as a 32-bit word).
    pub const AD_OFF: u32 = 0xffff_f000;
    pub const MEMWORDS: u32 = 16;
}

// eBPF's fields (linux/bpf.h).
mod e {
    pub const LDX: u8 = 0x01;
    pub const ST: u8 = 0x02;
    pub const STX: u8 = 0x03;
    pub const ALU: u8 = 0x04;
    pub const JMP: u8 = 0x05;
    pub const JMP32: u8 = 0x06;
    pub const ALU64: u8 = 0x07;
    pub const LD_IMM64: u8 = 0x18;
    pub const W: u8 = 0x00;
    pub const H: u8 = 0x08;
    pub const B: u8 = 0x10;
    pub const DW: u8 = 0x18;
    pub const MEM: u8 = 0x60;
    pub const K: u8 = 0x00;
    pub const X: u8 = 0x08;
    pub const ADD: u8 = 0x00;
    pub const AND: u8 = 0x50;
    pub const OR: u8 = 0x40;
    pub const LSH: u8 = 0x60;
    pub const SUB: u8 = 0x10;
    pub const XOR: u8 = 0xa0;
    pub const NEG: u8 = 0x80;
    pub const JSET: u8 = 0x40;
    pub const MOV: u8 = 0xb0;
    pub const END: u8 = 0xd0;
    pub const TO_BE: u8 = 0x08;
    pub const JA: u8 = 0x00;
    pub const JEQ: u8 = 0x10;
    pub const JGT: u8 = 0x20;
    pub const JGE: u8 = 0x30;
    pub const JNE: u8 = 0x50;
    pub const JLT: u8 = 0xa0;
    pub const CALL: u8 = 0x80;
    pub const EXIT: u8 = 0x90;
    pub const PSEUDO_MAP_FD: u8 = 1;
    // Helpers.
    pub const MAP_LOOKUP_ELEM: i32 = 1;
    pub const GET_PRANDOM_U32: i32 = 7;
    pub const GET_SMP_PROCESSOR_ID: i32 = 8;
    pub const TAIL_CALL: i32 = 12;
    pub const SKB_LOAD_BYTES: i32 = 26;
}

// Registers: r6 the packet's data (its linear part, directly readable), r7 `A`, r8 `X`, r9 the
// end of that data; the context waits on the stack for the helpers and fields that need it.
const R0: u8 = 0;
const R1: u8 = 1;
const R2: u8 = 2;
const R3: u8 = 3;
const R4: u8 = 4;
const DATA: u8 = 6;
const A: u8 = 7;
const X: u8 = 8;
const DATA_END: u8 = 9;
const FP: u8 = 10;

// The stack: `M[k]` at `MEM + 4 k`, a helper's 8-byte landing slot, the first 20 bytes of the
// frame as libpcap sees it when a tag was taken out, the counter index, the context.
const STACK_MEM: i16 = -64;
const STACK_LOAD: i16 = -72;
const STACK_HEAD: i16 = -96;
const STACK_KEY: i16 = -100;
const STACK_CTX: i16 = -112;

// Offsets in the contexts (`struct __sk_buff`, `struct xdp_md`).
mod ctx {
    pub const SKB_LEN: i16 = 0;
    pub const SKB_PKT_TYPE: i16 = 4;
    pub const SKB_MARK: i16 = 8;
    pub const SKB_QUEUE_MAPPING: i16 = 12;
    pub const SKB_PROTOCOL: i16 = 16;
    pub const SKB_VLAN_PRESENT: i16 = 20;
    pub const SKB_VLAN_TCI: i16 = 24;
    pub const SKB_VLAN_PROTO: i16 = 28;
    pub const SKB_IFINDEX: i16 = 40;
    pub const SKB_HASH: i16 = 68;
    pub const SKB_DATA: i16 = 76;
    pub const SKB_DATA_END: i16 = 80;
    pub const XDP_DATA: i16 = 0;
    pub const XDP_DATA_END: i16 = 4;
    pub const XDP_INGRESS_IFINDEX: i16 = 12;
}

/// What a TC program returns to let the packet go on (`TC_ACT_UNSPEC`: the next program of a
/// tcx chain, the next netlink filter), and an XDP one (`XDP_PASS`).
const TC_CONTINUE: i32 = -1;
const XDP_PASS: i32 = 2;

/// Packet offsets in a register up to this are read directly where the packet's linear part
/// holds them (constant offsets up to 32,767, the instruction's own offset).
const DIRECT_MAX: i32 = 0xfff0;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Label(usize);

/// An eBPF program being written, with forward jumps to labels resolved at the end.
struct Asm {
    insns: Vec<Insn>,
    labels: Vec<Option<usize>>,
    fixups: Vec<(usize, Label)>,
}

const fn regs(dst: u8, src: u8) -> u8 {
    (src << 4) | dst
}

impl Asm {
    fn label(&mut self) -> Label {
        self.labels.push(None);
        Label(self.labels.len() - 1)
    }

    fn bind(&mut self, l: Label) {
        self.labels[l.0] = Some(self.insns.len());
    }

    fn raw(&mut self, code: u8, dst: u8, src: u8, off: i16, imm: i32) {
        self.insns.push(Insn {
            code,
            regs: regs(dst, src),
            off,
            imm,
        });
    }

    /// `dst = imm` (32-bit, zero-extended).
    fn mov32(&mut self, dst: u8, imm: u32) {
        self.raw(e::ALU | e::MOV | e::K, dst, 0, 0, imm.cast_signed());
    }

    fn mov64_reg(&mut self, dst: u8, src: u8) {
        self.raw(e::ALU64 | e::MOV | e::X, dst, src, 0, 0);
    }

    fn alu32_imm(&mut self, op: u8, dst: u8, imm: u32) {
        self.raw(e::ALU | op | e::K, dst, 0, 0, imm.cast_signed());
    }

    fn alu32_reg(&mut self, op: u8, dst: u8, src: u8) {
        self.raw(e::ALU | op | e::X, dst, src, 0, 0);
    }

    fn alu64_imm(&mut self, op: u8, dst: u8, imm: i32) {
        self.raw(e::ALU64 | op | e::K, dst, 0, 0, imm);
    }

    fn alu64_reg(&mut self, op: u8, dst: u8, src: u8) {
        self.raw(e::ALU64 | op | e::X, dst, src, 0, 0);
    }

    /// `dst = *(size *)(src + off)`.
    fn load(&mut self, size: u8, dst: u8, src: u8, off: i16) {
        self.raw(e::LDX | e::MEM | size, dst, src, off, 0);
    }

    /// `*(size *)(dst + off) = src`.
    fn store(&mut self, size: u8, dst: u8, off: i16, src: u8) {
        self.raw(e::STX | e::MEM | size, dst, src, off, 0);
    }

    /// `*(size *)(dst + off) = imm`.
    fn store_imm(&mut self, size: u8, dst: u8, off: i16, imm: i32) {
        self.raw(e::ST | e::MEM | size, dst, 0, off, imm);
    }

    /// The big-endian value of the low `bits` of `dst` (zero-extended).
    fn swap_to_be(&mut self, dst: u8, bits: i32) {
        self.raw(e::ALU | e::END | e::TO_BE, dst, 0, 0, bits);
    }

    fn jump(&mut self, code: u8, dst: u8, src: u8, imm: i32, to: Label) {
        self.fixups.push((self.insns.len(), to));
        self.raw(code, dst, src, 0, imm);
    }

    fn ja(&mut self, to: Label) {
        self.jump(e::JMP | e::JA, 0, 0, 0, to);
    }

    /// 64-bit comparison of `dst` with `imm` (sign-extended: keep it positive).
    fn jmp_imm(&mut self, op: u8, dst: u8, imm: i32, to: Label) {
        self.jump(e::JMP | op | e::K, dst, 0, imm, to);
    }

    fn jmp_reg(&mut self, op: u8, dst: u8, src: u8, to: Label) {
        self.jump(e::JMP | op | e::X, dst, src, 0, to);
    }

    fn call(&mut self, helper: i32) {
        self.raw(e::JMP | e::CALL, 0, 0, 0, helper);
    }

    fn exit(&mut self) {
        self.raw(e::JMP | e::EXIT, 0, 0, 0, 0);
    }

    /// `dst = the map whose descriptor is fd`.
    fn map(&mut self, dst: u8, fd: i32) {
        self.raw(e::LD_IMM64, dst, e::PSEUDO_MAP_FD, 0, fd);
        self.raw(0, 0, 0, 0, 0);
    }

    fn finish(mut self) -> Result<Vec<Insn>, TranslateError> {
        for (at, to) in std::mem::take(&mut self.fixups) {
            let target = self.labels[to.0].ok_or(TranslateError::NoReturn)?;
            // Labels are bound after what jumps to them: forward only.
            let off = target
                .checked_sub(at + 1)
                .and_then(|d| i16::try_from(d).ok())
                .ok_or(TranslateError::TooLarge(self.insns.len()))?;
            self.insns[at].off = off;
        }
        Ok(self.insns)
    }
}

/// The eBPF size code and bits of a classic load's size.
const fn size_of(code: u16) -> Option<(u8, u32)> {
    match code & 0x18 {
        c::W => Some((e::W, 4)),
        c::H => Some((e::H, 2)),
        c::B => Some((e::B, 1)),
        _ => None,
    }
}

/// Where a load's offset comes from.
#[derive(Clone, Copy)]
enum Offset {
    /// A constant offset (absolute loads, `4*([k]&0xf)`).
    Const(u32),
    /// `X + k`, already in r1 (64-bit, no wrap).
    Reg,
}

struct Translator {
    asm: Asm,
    hook: Hook,
    maps: Maps,
    reject: Label,
    accept: Label,
    /// Whether the copy being written reads a frame whose VLAN tag is in `skb->vlan_tci` (TC
    /// writes the program twice, for frames with and without one).
    tagged: bool,
}

impl Translator {
    fn data_offsets(&self) -> (i16, i16) {
        match self.hook {
            Hook::Tc => (ctx::SKB_DATA, ctx::SKB_DATA_END),
            Hook::Xdp => (ctx::XDP_DATA, ctx::XDP_DATA_END),
        }
    }

    /// `dst = the context` (from the stack).
    fn ctx(&mut self, dst: u8) {
        self.asm.load(e::DW, dst, FP, STACK_CTX);
    }

    /// Reads `bytes` (1, 2 or 4) at `off` of the frame as the kernel holds it into `dst`,
    /// big-endian; a read beyond the packet rejects it. `Offset::Reg` reads r1.
    fn physical(&mut self, dst: u8, size: u8, bytes: u32, off: Offset) {
        let slow = self.asm.label();
        let loaded = self.asm.label();
        let n = i32::try_from(bytes).unwrap_or(4);
        match off {
            // A constant offset is the load's own (16 bits, signed).
            Offset::Const(k)
                if k.checked_add(bytes)
                    .is_some_and(|end| end <= i16::MAX.unsigned_abs().into()) =>
            {
                let (k32, k16) = (i32::try_from(k).unwrap_or(0), i16::try_from(k).unwrap_or(0));
                self.asm.mov64_reg(R4, DATA);
                self.asm.alu64_imm(e::ADD, R4, k32 + n);
                self.asm.jmp_reg(e::JGT, R4, DATA_END, slow);
                self.asm.load(size, dst, DATA, k16);
                self.asm.ja(loaded);
                self.asm.bind(slow);
                self.asm.mov32(R1, k);
            }
            Offset::Const(k) => {
                // Beyond what is ever read directly: the helper's bounds.
                self.asm.mov32(R1, k);
                self.asm.bind(slow);
            }
            Offset::Reg => {
                self.asm.jmp_imm(e::JGT, R1, DIRECT_MAX, slow);
                self.asm.mov64_reg(R2, DATA);
                self.asm.alu64_reg(e::ADD, R2, R1);
                self.asm.mov64_reg(R4, R2);
                self.asm.alu64_imm(e::ADD, R4, n);
                self.asm.jmp_reg(e::JGT, R4, DATA_END, slow);
                self.asm.load(size, dst, R2, 0);
                self.asm.ja(loaded);
                self.asm.bind(slow);
            }
        }
        // The slow path, offset in r1: beyond the linear part (TC), or beyond the packet.
        match self.hook {
            Hook::Tc => {
                self.asm.jmp_imm(e::JGT, R1, 0xffff, self.reject);
                self.asm.mov64_reg(R2, R1);
                self.ctx(R1);
                self.asm.mov64_reg(R3, FP);
                self.asm.alu64_imm(e::ADD, R3, STACK_LOAD.into());
                self.asm.mov32(R4, bytes);
                self.asm.call(e::SKB_LOAD_BYTES);
                self.asm.jmp_imm(e::JNE, R0, 0, self.reject);
                self.asm.load(size, dst, FP, STACK_LOAD);
            }
            // Without fragments (the program does not take them), XDP's data is the whole
            // packet.
            Hook::Xdp => self.asm.ja(self.reject),
        }
        self.asm.bind(loaded);
        match bytes {
            4 => self.asm.swap_to_be(dst, 32),
            2 => self.asm.swap_to_be(dst, 16),
            _ => {}
        }
    }

    /// Reads `bytes` at the constant offset `k` of the frame's head kept on the stack (with the
    /// tag put back), byte by byte, big-endian (stack reads must be aligned).
    fn head_load(&mut self, dst: u8, bytes: u32, k: u32) {
        for i in 0..bytes {
            let at = STACK_HEAD + i16::try_from(k + i).unwrap_or(0);
            if i == 0 {
                self.asm.load(e::B, dst, FP, at);
            } else {
                self.asm.alu32_imm(e::LSH, dst, 8);
                self.asm.load(e::B, R2, FP, at);
                self.asm.alu32_reg(e::OR, dst, R2);
            }
        }
    }

    /// Reads `bytes` at `off` of the frame as libpcap would capture it into `dst`.
    fn packet(&mut self, dst: u8, code: u16, off: Offset) -> Result<(), TranslateError> {
        let Some((size, bytes)) = size_of(code) else {
            return Err(TranslateError::Unsupported { at: 0, code });
        };
        if !self.tagged {
            self.physical(dst, size, bytes, off);
            return Ok(());
        }
        // The tag is out of the frame: libpcap's bytes 12 to 16 are the tag, and what follows
        // them is 4 bytes further back in the kernel's frame.
        match off {
            Offset::Const(k) => {
                if k.checked_add(bytes).is_some_and(|end| end <= 12) {
                    self.physical(dst, size, bytes, off);
                } else if k >= 16 {
                    self.physical(dst, size, bytes, Offset::Const(k - 4));
                } else {
                    self.head_load(dst, bytes, k);
                }
            }
            Offset::Reg => {
                let done = self.asm.label();
                let after = self.asm.label();
                let before = self.asm.label();
                self.asm.jmp_imm(e::JGE, R1, 16, after);
                self.asm
                    .jmp_imm(e::JLT, R1, 13 - i32::try_from(bytes).unwrap_or(4), before);
                // Across the tag: from the head, offset by offset.
                for k in 13 - bytes..16 {
                    let next = self.asm.label();
                    self.asm
                        .jmp_imm(e::JNE, R1, i32::try_from(k).unwrap_or(0), next);
                    self.head_load(dst, bytes, k);
                    self.asm.ja(done);
                    self.asm.bind(next);
                }
                self.asm.ja(self.reject);
                self.asm.bind(after);
                self.asm.alu64_imm(e::SUB, R1, 4);
                self.asm.bind(before);
                self.physical(dst, size, bytes, Offset::Reg);
                self.asm.bind(done);
            }
        }
        Ok(())
    }

    /// `dst = the packet's length as libpcap would capture it`.
    fn length(&mut self, dst: u8) {
        self.ctx(R1);
        match self.hook {
            Hook::Tc => {
                self.asm.load(e::W, dst, R1, ctx::SKB_LEN);
                if self.tagged {
                    self.asm.alu32_imm(e::ADD, dst, 4);
                }
            }
            Hook::Xdp => {
                self.asm.load(e::W, dst, R1, ctx::XDP_DATA_END);
                self.asm.load(e::W, R2, R1, ctx::XDP_DATA);
                self.asm.alu32_reg(e::SUB, dst, R2);
            }
        }
    }

    /// An ancillary load (`SKF_AD_*`, Linux's extensions to classic BPF) into `A`.
    fn ancillary(&mut self, at: usize, k: u32) -> Result<(), TranslateError> {
        let what = k.wrapping_sub(c::AD_OFF);
        let hook = match self.hook {
            Hook::Tc => "TC",
            Hook::Xdp => "XDP",
        };
        let unsupported = |what| TranslateError::Ancillary { at, what, hook };
        self.ctx(R1);
        match (self.hook, what) {
            // SKF_AD_PROTOCOL: the EtherType, host order.
            (Hook::Tc, 0) => {
                self.asm.load(e::W, A, R1, ctx::SKB_PROTOCOL);
                self.asm.swap_to_be(A, 16);
            }
            (Hook::Tc, 4) => self.asm.load(e::W, A, R1, ctx::SKB_PKT_TYPE),
            (Hook::Tc, 8) => self.asm.load(e::W, A, R1, ctx::SKB_IFINDEX),
            (Hook::Xdp, 8) => self.asm.load(e::W, A, R1, ctx::XDP_INGRESS_IFINDEX),
            (Hook::Tc, 20) => self.asm.load(e::W, A, R1, ctx::SKB_MARK),
            (Hook::Tc, 24) => self.asm.load(e::W, A, R1, ctx::SKB_QUEUE_MAPPING),
            (Hook::Tc, 32) => self.asm.load(e::W, A, R1, ctx::SKB_HASH),
            (_, 36) => {
                self.asm.call(e::GET_SMP_PROCESSOR_ID);
                self.asm.alu32_reg(e::MOV, A, R0);
            }
            // SKF_AD_ALU_XOR_X.
            (_, 40) => self.asm.alu32_reg(e::XOR, A, X),
            (Hook::Tc, 44) => self.asm.load(e::W, A, R1, ctx::SKB_VLAN_TCI),
            (Hook::Tc, 48) => self.asm.load(e::W, A, R1, ctx::SKB_VLAN_PRESENT),
            (_, 56) => {
                self.asm.call(e::GET_PRANDOM_U32);
                self.asm.alu32_reg(e::MOV, A, R0);
            }
            (Hook::Tc, 60) => {
                self.asm.load(e::W, A, R1, ctx::SKB_VLAN_PROTO);
                self.asm.swap_to_be(A, 16);
            }
            (_, 4) => return Err(unsupported("the packet type")),
            (_, 44 | 48 | 60) => return Err(unsupported("the VLAN tag's fields")),
            _ => return Err(unsupported("a kernel extension")),
        }
        Ok(())
    }

    /// The start: the context put aside, registers, scratch memory, the packet's data; in TC,
    /// a jump to `tagged` when the frame's VLAN tag is in `skb->vlan_tci`.
    fn prologue(&mut self, memory: &[bool; c::MEMWORDS as usize], tagged: Label) {
        self.asm.store(e::DW, FP, STACK_CTX, R1);
        self.asm.mov32(A, 0);
        self.asm.mov32(X, 0);
        for (k, used) in (0i16..).zip(memory) {
            if *used {
                self.asm.store_imm(e::W, FP, STACK_MEM + 4 * k, 0);
            }
        }
        let (data, data_end) = self.data_offsets();
        self.asm.load(e::W, DATA, R1, data);
        self.asm.load(e::W, DATA_END, R1, data_end);
        if self.hook == Hook::Tc {
            self.asm.load(e::W, R2, R1, ctx::SKB_VLAN_PRESENT);
            self.asm.jmp_imm(e::JNE, R2, 0, tagged);
        }
    }

    /// The head of a frame whose tag is in `skb->vlan_tci`, as libpcap sees it, on the stack:
    /// bytes 0..16 of the frame, then bytes 12..16 moved to 16..20 and the tag (TPID, TCI)
    /// written in their place. A frame of fewer than 16 bytes carries nothing a filter on TCP
    /// could select: rejected.
    fn tagged_head(&mut self) {
        self.ctx(R1);
        self.asm.mov32(R2, 0);
        self.asm.mov64_reg(R3, FP);
        self.asm.alu64_imm(e::ADD, R3, STACK_HEAD.into());
        self.asm.mov32(R4, 16);
        self.asm.call(e::SKB_LOAD_BYTES);
        self.asm.jmp_imm(e::JNE, R0, 0, self.reject);
        self.asm.load(e::W, R1, FP, STACK_HEAD + 12);
        self.asm.store(e::W, FP, STACK_HEAD + 16, R1);
        self.ctx(R1);
        self.asm.load(e::W, R2, R1, ctx::SKB_VLAN_PROTO);
        self.asm.swap_to_be(R2, 16);
        self.asm.alu32_imm(e::LSH, R2, 16);
        self.asm.load(e::W, R3, R1, ctx::SKB_VLAN_TCI);
        self.asm.alu32_imm(e::AND, R3, 0xffff);
        self.asm.alu32_reg(e::OR, R2, R3);
        self.asm.swap_to_be(R2, 32);
        self.asm.store(e::W, FP, STACK_HEAD + 12, R2);
    }

    /// The two ends: a selected packet goes on to the counting program; one left out is
    /// counted as such and passes.
    fn epilogue(&mut self) {
        let pass = match self.hook {
            Hook::Tc => TC_CONTINUE,
            Hook::Xdp => XDP_PASS,
        };
        self.asm.bind(self.accept);
        self.ctx(R1);
        self.asm.map(R2, self.maps.programs);
        self.asm.mov32(R3, SLOT_COUNT);
        self.asm.call(e::TAIL_CALL);
        // Only when the slot is empty (never, once loaded): pass, uncounted.
        self.asm.mov32(R0, pass.cast_unsigned());
        self.asm.exit();
        self.asm.bind(self.reject);
        let out = self.asm.label();
        self.asm.map(R1, self.maps.counters);
        self.asm.mov64_reg(R2, FP);
        self.asm.alu64_imm(e::ADD, R2, STACK_KEY.into());
        self.asm.store_imm(
            e::W,
            FP,
            STACK_KEY,
            tcptrack_common::counter::FILTERED_OUT.cast_signed(),
        );
        self.asm.call(e::MAP_LOOKUP_ELEM);
        self.asm.jmp_imm(e::JEQ, R0, 0, out);
        self.asm.load(e::DW, R1, R0, 0);
        self.asm.alu64_imm(e::ADD, R1, 1);
        self.asm.store(e::DW, R0, 0, R1);
        self.asm.bind(out);
        self.asm.mov32(R0, pass.cast_unsigned());
        self.asm.exit();
    }
}

impl Translator {
    /// One copy of `program`'s instructions.
    #[expect(
        clippy::too_many_lines,
        reason = "one match over the classic instruction set reads best whole"
    )]
    fn body(&mut self, program: &[Cbpf]) -> Result<(), TranslateError> {
        let at: Vec<Label> = program.iter().map(|_| self.asm.label()).collect();
        let target = |from: usize, by: u32| -> Result<Label, TranslateError> {
            let to = usize::try_from(by)
                .ok()
                .and_then(|by| (from + 1).checked_add(by))
                .filter(|to| *to < program.len())
                .ok_or(TranslateError::JumpOutside { at: from })?;
            Ok(at[to])
        };
        let mem_slot = |n: usize, k: u32| -> Result<i16, TranslateError> {
            if k >= c::MEMWORDS {
                return Err(TranslateError::Unsupported {
                    at: n,
                    code: program[n].code,
                });
            }
            Ok(STACK_MEM + 4 * i16::try_from(k).unwrap_or(0))
        };
        for (n, i) in program.iter().enumerate() {
            self.asm.bind(at[n]);
            let unsupported = || TranslateError::Unsupported {
                at: n,
                code: i.code,
            };
            let class = i.code & 0x07;
            match class {
                c::LD | c::LDX => {
                    let dst = if class == c::LD { A } else { X };
                    match (class, i.code & 0xe0) {
                        (_, c::IMM) if i.code & 0x18 == c::W => self.asm.mov32(dst, i.k),
                        (_, c::MEM) if i.code & 0x18 == c::W => {
                            self.asm.load(e::W, dst, FP, mem_slot(n, i.k)?);
                        }
                        (_, c::LEN) if i.code & 0x18 == c::W => self.length(dst),
                        (c::LD, c::ABS) if i.k >= c::AD_OFF => {
                            if i.code & 0x18 != c::W {
                                return Err(unsupported());
                            }
                            self.ancillary(n, i.k)?;
                        }
                        (c::LD, c::ABS) => {
                            self.packet(A, i.code, Offset::Const(i.k))
                                .map_err(|_| unsupported())?;
                        }
                        (c::LD, c::IND) => {
                            // X + k in 64 bits: no wrap, and anything past 16 bits is beyond
                            // the packet.
                            self.asm.mov32(R1, i.k);
                            self.asm.alu64_reg(e::ADD, R1, X);
                            self.packet(A, i.code, Offset::Reg)
                                .map_err(|_| unsupported())?;
                        }
                        (c::LDX, c::MSH) if i.code & 0x18 == c::B => {
                            self.packet(X, c::B, Offset::Const(i.k))
                                .map_err(|_| unsupported())?;
                            self.asm.alu32_imm(e::AND, X, 0xf);
                            self.asm.alu32_imm(e::LSH, X, 2);
                        }
                        _ => return Err(unsupported()),
                    }
                }
                c::ST => self.asm.store(e::W, FP, mem_slot(n, i.k)?, A),
                c::STX => self.asm.store(e::W, FP, mem_slot(n, i.k)?, X),
                c::ALU => {
                    let op = i.code & 0xf0;
                    let by_x = i.code & 0x08 == c::X;
                    match op {
                        c::NEG => self.asm.raw(e::ALU | e::NEG, A, 0, 0, 0),
                        // ADD, SUB, MUL, OR, AND, XOR: as eBPF does them in 32 bits.
                        0x00 | 0x10 | 0x20 | 0x40 | 0x50 | 0xa0 => {
                            if by_x {
                                self.asm.alu32_reg(op.try_into().unwrap_or(0), A, X);
                            } else {
                                self.asm.alu32_imm(op.try_into().unwrap_or(0), A, i.k);
                            }
                        }
                        // DIV, MOD: by zero, libpcap rejects the packet.
                        0x30 | 0x90 => {
                            let op8: u8 = op.try_into().unwrap_or(0);
                            if by_x {
                                self.asm.jmp_imm(e::JEQ, X, 0, self.reject);
                                self.asm.alu32_reg(op8, A, X);
                            } else if i.k == 0 {
                                self.asm.ja(self.reject);
                            } else {
                                self.asm.alu32_imm(op8, A, i.k);
                            }
                        }
                        // LSH, RSH: by 32 or more, 0.
                        0x60 | 0x70 => {
                            let op8: u8 = op.try_into().unwrap_or(0);
                            if by_x {
                                let small = self.asm.label();
                                let shifted = self.asm.label();
                                self.asm.jmp_imm(e::JLT, X, 32, small);
                                self.asm.mov32(A, 0);
                                self.asm.ja(shifted);
                                self.asm.bind(small);
                                self.asm.alu32_reg(op8, A, X);
                                self.asm.bind(shifted);
                            } else if i.k >= 32 {
                                self.asm.mov32(A, 0);
                            } else {
                                self.asm.alu32_imm(op8, A, i.k);
                            }
                        }
                        _ => return Err(unsupported()),
                    }
                }
                c::JMP => {
                    let op = i.code & 0xf0;
                    if op == c::JA {
                        self.asm.ja(target(n, i.k)?);
                        continue;
                    }
                    let op8: u8 = match op {
                        c::JEQ => e::JEQ,
                        c::JGT => e::JGT,
                        c::JGE => e::JGE,
                        c::JSET => e::JSET,
                        _ => return Err(unsupported()),
                    };
                    let (yes, no) = (target(n, i.jt.into())?, target(n, i.jf.into())?);
                    // Unsigned 32-bit comparisons (JMP32: the immediate is not sign-extended).
                    if i.code & 0x08 == c::X {
                        self.asm.jump(e::JMP32 | op8 | e::X, A, X, 0, yes);
                    } else {
                        self.asm
                            .jump(e::JMP32 | op8 | e::K, A, 0, i.k.cast_signed(), yes);
                    }
                    if i.jf != 0 {
                        self.asm.ja(no);
                    }
                }
                c::RET => match i.code & 0x18 {
                    c::K => self
                        .asm
                        .ja(if i.k == 0 { self.reject } else { self.accept }),
                    c::A => {
                        self.asm.jmp_imm(e::JEQ, A, 0, self.reject);
                        self.asm.ja(self.accept);
                    }
                    _ => return Err(unsupported()),
                },
                c::MISC => {
                    if i.code & 0xf8 == c::TXA {
                        self.asm.alu32_reg(e::MOV, A, X);
                    } else if i.code & 0xf8 == 0 {
                        self.asm.alu32_reg(e::MOV, X, A);
                    } else {
                        return Err(unsupported());
                    }
                }
                _ => return Err(unsupported()),
            }
        }
        Ok(())
    }
}

/// Translates `program` (libpcap's classic BPF for an Ethernet link) into the eBPF filter
/// program of `hook`.
///
/// # Errors
/// An instruction the kernel path cannot run (an ancillary load the hook has no field for), a
/// malformed program (libpcap never makes one), or a program too large for the kernel.
pub fn translate(program: &[Cbpf], hook: Hook, maps: Maps) -> Result<Vec<Insn>, TranslateError> {
    // Falling off the end is not classic BPF (its last instruction returns).
    if program.last().is_none_or(|last| last.code & 0x07 != c::RET) {
        return Err(TranslateError::NoReturn);
    }
    let mut asm = Asm {
        insns: Vec::with_capacity(program.len() * 32 + 64),
        labels: Vec::new(),
        fixups: Vec::new(),
    };
    let reject = asm.label();
    let accept = asm.label();
    let tagged = asm.label();
    let mut t = Translator {
        asm,
        hook,
        maps,
        reject,
        accept,
        tagged: false,
    };
    let mut memory = [false; c::MEMWORDS as usize];
    for i in program {
        let class = i.code & 0x07;
        let mode = i.code & 0xe0;
        if (class == c::LD || class == c::LDX) && mode == c::MEM
            || class == c::ST
            || class == c::STX
        {
            if let Some(m) = memory.get_mut(i.k as usize) {
                *m = true;
            }
        }
    }
    t.prologue(&memory, tagged);
    t.body(program)?;
    if hook == Hook::Tc {
        // The same program for a frame whose VLAN tag is in skb->vlan_tci: every packet then
        // runs a copy without a check of the tag per load.
        t.asm.bind(tagged);
        t.tagged_head();
        t.tagged = true;
        t.body(program)?;
    }
    t.epilogue();
    t.asm.finish()
}

impl fmt::Display for Hook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Tc => "TC",
            Self::Xdp => "XDP",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAPS: Maps = Maps {
        programs: 3,
        counters: 4,
    };

    fn ret(k: u32) -> Cbpf {
        Cbpf::new(c::RET | c::K, 0, 0, k)
    }

    #[test]
    fn a_return_goes_to_the_counting_program_or_the_filtered_out_count() {
        for (k, accept) in [(262_144, true), (0, false)] {
            let p = translate(&[ret(k)], Hook::Tc, MAPS).expect("translates");
            // The prologue, then one jump: to the tail call, or to the counter's update.
            let jump = p
                .iter()
                .enumerate()
                .find(|(_, i)| i.code == e::JMP | e::JA)
                .map(|(at, i)| at + 1 + usize::try_from(i.off).expect("forward"))
                .expect("a jump");
            let helper = p[jump..]
                .iter()
                .find(|i| i.code == e::JMP | e::CALL)
                .map(|i| i.imm);
            let expected = if accept {
                e::TAIL_CALL
            } else {
                e::MAP_LOOKUP_ELEM
            };
            assert_eq!(helper, Some(expected), "ret #{k}");
        }
    }

    #[test]
    fn comparisons_are_unsigned_32_bit_and_loads_big_endian() {
        // ldh [12]; jgt #0x80000000 (not sign-extended); ret
        let p = [
            Cbpf::new(c::LD | c::H | c::ABS, 0, 0, 12),
            Cbpf::new(c::JMP | c::JGT | c::K, 0, 1, 0x8000_0000),
            ret(1),
            ret(0),
        ];
        let insns = translate(&p, Hook::Xdp, MAPS).expect("translates");
        assert!(insns
            .iter()
            .any(|i| i.code == e::JMP32 | e::JGT | e::K && i.imm == i32::MIN));
        assert!(insns
            .iter()
            .any(|i| i.code == e::ALU | e::END | e::TO_BE && i.imm == 16 && i.regs == A));
    }

    #[test]
    fn what_cannot_run_is_said() {
        let jump_out = [Cbpf::new(c::JMP | c::JA, 0, 0, 5), ret(0)];
        assert_eq!(
            translate(&jump_out, Hook::Tc, MAPS),
            Err(TranslateError::JumpOutside { at: 0 })
        );
        let no_return = [Cbpf::new(c::LD | c::IMM, 0, 0, 1)];
        assert_eq!(
            translate(&no_return, Hook::Tc, MAPS),
            Err(TranslateError::NoReturn)
        );
        let memory = [Cbpf::new(c::ST, 0, 0, 16), ret(0)];
        assert!(matches!(
            translate(&memory, Hook::Tc, MAPS),
            Err(TranslateError::Unsupported { at: 0, .. })
        ));
        // The packet type: a field of TC's context, not of XDP's.
        let pkttype = [
            Cbpf::new(c::LD | c::W | c::ABS, 0, 0, c::AD_OFF + 4),
            ret(0),
        ];
        assert!(translate(&pkttype, Hook::Tc, MAPS).is_ok());
        let e = translate(&pkttype, Hook::Xdp, MAPS).expect_err("XDP has no packet type");
        assert_eq!(
            e.to_string(),
            "instruction 0 reads the packet type, which the XDP hook does not give"
        );
    }

    #[test]
    fn far_offsets_go_through_the_helper() {
        // ldb [40000]: beyond the 16-bit offset of a direct load.
        let p = [Cbpf::new(c::LD | c::B | c::ABS, 0, 0, 40_000), ret(1)];
        let insns = translate(&p, Hook::Tc, MAPS).expect("translates");
        assert!(!insns
            .iter()
            .any(|i| i.code == e::LDX | e::MEM | e::B && i.regs == regs(A, DATA)));
        assert!(insns
            .iter()
            .any(|i| i.code == e::ALU | e::MOV | e::K && i.regs == R1 && i.imm == 40_000));
        assert!(insns
            .iter()
            .any(|i| i.code == e::JMP | e::CALL && i.imm == e::SKB_LOAD_BYTES));
        // ldb [3000]: read directly, at its own offset.
        let p = [Cbpf::new(c::LD | c::B | c::ABS, 0, 0, 3000), ret(1)];
        let insns = translate(&p, Hook::Tc, MAPS).expect("translates");
        assert!(insns
            .iter()
            .any(|i| i.code == e::LDX | e::MEM | e::B && i.regs == regs(A, DATA) && i.off == 3000));
    }

    #[test]
    fn scratch_memory_starts_at_zero_only_where_used() {
        let p = [
            Cbpf::new(c::LD | c::MEM, 0, 0, 3),
            Cbpf::new(c::ST, 0, 0, 9),
            ret(1),
        ];
        let insns = translate(&p, Hook::Xdp, MAPS).expect("translates");
        let zeroed: Vec<i16> = insns
            .iter()
            .filter(|i| i.code == e::ST | e::MEM | e::W && i.regs == FP && i.imm == 0)
            .map(|i| i.off)
            .collect();
        assert_eq!(zeroed, [STACK_MEM + 12, STACK_MEM + 36]);
    }
}
