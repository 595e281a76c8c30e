//! The parser and compiler of the filter expressions the kernel decides, on arbitrary strings
//! (a dictionary of their words helps: `filter.dict`).
//!
//! Besides not panicking:
//! - a program is what the kernel's loop takes: shorter than its array, a well-formed postfix
//!   program over a stack of at most 64 booleans (each operator finds its operands, one value
//!   is left), tests with a known direction, a masked network, an ordered port range;
//! - where libpcap compiles the expression too (tcptrack checks every filter with libpcap first,
//!   so only those reach the kernel), the program decides as libpcap's unoptimized program does
//!   on TCP frames built from the expression's own addresses and ports, their neighbours and a
//!   few others, in both directions and families. The program runs here as `filter_step` in
//!   tcptrack-ebpf runs it.

#![no_main]

use std::cell::RefCell;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use libfuzzer_sys::fuzz_target;
use tcptrack_common::{filter, FilterInsn, FAMILY_IPV4, FAMILY_IPV6, MAX_FILTER_INSNS};

/// What a filter test looks at in a packet.
#[derive(Clone, Copy, Debug)]
struct Packet {
    src: IpAddr,
    dst: IpAddr,
    sport: u16,
    dport: u16,
}

const fn family_of(a: IpAddr) -> u8 {
    match a {
        IpAddr::V4(_) => FAMILY_IPV4,
        IpAddr::V6(_) => FAMILY_IPV6,
    }
}

/// An address as the kernel's key holds it (IPv4 in the first four bytes).
fn bytes_of(a: IpAddr) -> [u8; 16] {
    match a {
        IpAddr::V4(v4) => {
            let mut b = [0u8; 16];
            b[..4].copy_from_slice(&v4.octets());
            b
        }
        IpAddr::V6(v6) => v6.octets(),
    }
}

fn in_net(ins: &FilterInsn, a: IpAddr) -> bool {
    let b = bytes_of(a);
    (0..16).all(|i| b[i] & ins.mask[i] == ins.addr[i])
}

/// Runs `program` on `p` as the kernel does: a stack of booleans, top in bit 0.
fn selects(program: &[FilterInsn], p: &Packet) -> bool {
    let family = family_of(p.src);
    let mut stack: u64 = 0;
    for ins in program {
        let either = |at_src: bool, at_dst: bool| match ins.dir {
            filter::SRC => at_src,
            filter::DST => at_dst,
            _ => at_src || at_dst,
        };
        let bit = match ins.op {
            filter::END => break,
            filter::FAMILY => ins.family == family,
            filter::NET => ins.family == family && either(in_net(ins, p.src), in_net(ins, p.dst)),
            filter::PORT => either(
                (ins.port_lo..=ins.port_hi).contains(&p.sport),
                (ins.port_lo..=ins.port_hi).contains(&p.dport),
            ),
            filter::AND => {
                let top = stack & (stack >> 1) & 1;
                stack = (stack >> 2 << 1) | top;
                continue;
            }
            filter::OR => {
                let top = (stack | (stack >> 1)) & 1;
                stack = (stack >> 2 << 1) | top;
                continue;
            }
            filter::NOT => {
                stack ^= 1;
                continue;
            }
            _ => true,
        };
        stack = (stack << 1) | u64::from(bit);
    }
    stack & 1 == 1
}

/// The program is one the kernel's loop runs as meant.
fn check_shape(expr: &str, program: &[FilterInsn]) {
    assert!(
        !program.is_empty() && program.len() < MAX_FILTER_INSNS as usize,
        "`{expr}`: {} instructions",
        program.len()
    );
    let mut depth = 0usize;
    for ins in program {
        match ins.op {
            filter::TRUE | filter::FAMILY | filter::NET | filter::PORT => {
                assert!(matches!(
                    ins.dir,
                    0 | filter::SRC | filter::DST | filter::ANY
                ));
                depth += 1;
            }
            filter::AND | filter::OR => {
                assert!(depth >= 2, "`{expr}`: an operator without its operands");
                depth -= 1;
            }
            filter::NOT => assert!(depth >= 1, "`{expr}`: not without an operand"),
            op => panic!("`{expr}`: op {op} in a program"),
        }
        assert!(depth <= 64, "`{expr}`: deeper than the kernel's stack");
        if ins.op == filter::NET {
            assert!(matches!(ins.family, FAMILY_IPV4 | FAMILY_IPV6));
            let bits: Vec<bool> = ins
                .mask
                .iter()
                .flat_map(|m| (0..8).map(move |i| m & (0x80 >> i) != 0))
                .collect();
            assert!(
                bits.windows(2).all(|w| w[0] || !w[1]),
                "`{expr}`: a mask with holes"
            );
            assert!(
                (0..16).all(|i| ins.addr[i] & !ins.mask[i] == 0),
                "`{expr}`: unmasked"
            );
            if ins.family == FAMILY_IPV4 {
                assert!(ins.mask[4..].iter().all(|&m| m == 0));
            }
        }
        if ins.op == filter::PORT {
            assert!(ins.port_lo <= ins.port_hi, "`{expr}`: a reversed range");
        }
    }
    assert_eq!(depth, 1, "`{expr}`: leaves {depth} values");
}

/// Numbers the way a reader of the expression might take a word: decimal, octal, hex.
fn numbers(word: &str) -> Vec<u32> {
    let mut out = Vec::new();
    if let Ok(n) = word.parse::<u32>() {
        out.push(n);
    }
    if let Some(hex) = word.strip_prefix("0x").or_else(|| word.strip_prefix("0X")) {
        out.extend(u32::from_str_radix(hex, 16).ok());
    } else if word.len() > 1 && word.starts_with('0') {
        out.extend(u32::from_str_radix(word, 8).ok());
    }
    out
}

/// Addresses and ports worth trying on the expression `expr`.
fn literals(expr: &str) -> (Vec<IpAddr>, Vec<IpAddr>, Vec<u16>) {
    let (mut v4, mut v6, mut ports) = (Vec::new(), Vec::new(), Vec::new());
    let words = expr.split(|c: char| c.is_whitespace() || matches!(c, '(' | ')' | '!'));
    for word in words {
        let addr_part = word.split('/').next().unwrap_or(word);
        if let Ok(a) = addr_part.parse::<IpAddr>() {
            let mut b = bytes_of(a);
            let len = if a.is_ipv4() { 4 } else { 16 };
            let mut with = |b: [u8; 16]| match a {
                IpAddr::V4(_) => v4.push(IpAddr::from([b[0], b[1], b[2], b[3]])),
                IpAddr::V6(_) => v6.push(IpAddr::from(b)),
            };
            with(b);
            b[len - 1] ^= 1;
            with(b);
            b[0] ^= 0x80;
            with(b);
        }
        for part in word.split(['-', '/']) {
            for n in numbers(part) {
                for p in [n, n.wrapping_add(1), n.wrapping_sub(1)] {
                    ports.extend(u16::try_from(p).ok());
                }
            }
        }
    }
    v4.extend([Ipv4Addr::new(198, 18, 0, 1), Ipv4Addr::new(198, 18, 0, 2)].map(IpAddr::from));
    v6.extend(
        [
            Ipv6Addr::LOCALHOST,
            Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 2),
        ]
        .map(IpAddr::from),
    );
    ports.extend([80, 443, 0, 65535]);
    for list in [&mut v4, &mut v6] {
        dedup(list);
        list.truncate(4);
    }
    dedup(&mut ports);
    ports.truncate(5);
    (v4, v6, ports)
}

fn dedup<T: PartialEq + Copy>(v: &mut Vec<T>) {
    let mut seen = Vec::with_capacity(v.len());
    v.retain(|x| {
        let new = !seen.contains(x);
        seen.push(*x);
        new
    });
}

/// An Ethernet frame of a TCP segment from `p.src` to `p.dst` (checksums left out: filters
/// do not read them).
fn frame(p: &Packet) -> Vec<u8> {
    let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1];
    match (p.src, p.dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            f.extend([0x08, 0x00, 0x45, 0, 0, 40, 0, 0, 0x40, 0, 64, 6, 0, 0]);
            f.extend(s.octets());
            f.extend(d.octets());
        }
        (s, d) => {
            f.extend([0x86, 0xdd, 0x60, 0, 0, 0, 0, 20, 6, 64]);
            f.extend(bytes_of(s));
            f.extend(bytes_of(d));
        }
    }
    f.extend(p.sport.to_be_bytes());
    f.extend(p.dport.to_be_bytes());
    f.extend([0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x10, 0xff, 0xff, 0, 0, 0, 0]);
    f
}

thread_local! {
    static DEAD: RefCell<Option<pcap::Capture<pcap::Dead>>> = const { RefCell::new(None) };
}

fn libpcap(expr: &str) -> Option<pcap::BpfProgram> {
    DEAD.with(|d| {
        let mut d = d.borrow_mut();
        if d.is_none() {
            *d = pcap::Capture::dead(pcap::Linktype::ETHERNET).ok();
        }
        // Unoptimized: libpcap's optimizer has bugs of its own (1.10.3 drops `port 2` from
        // `src port 2 or 1 and port 8 or 2`), and the grammar's meaning is what is compared.
        d.as_ref()?.compile(expr, false).ok()
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(expr) = std::str::from_utf8(data) else {
        return;
    };
    let Some(program) = tcptrack::filter::compile(expr) else {
        return;
    };
    check_shape(expr, &program);
    // libpcap's grammar has no NUL: it would read a shorter expression.
    if expr.contains('\0') {
        return;
    }
    let Some(bpf) = libpcap(expr) else {
        return;
    };
    let (v4, v6, ports) = literals(expr);
    for addrs in [&v4, &v6] {
        for &src in addrs {
            for &dst in addrs {
                for &sport in &ports {
                    for &dport in &ports {
                        let p = Packet {
                            src,
                            dst,
                            sport,
                            dport,
                        };
                        assert_eq!(
                            selects(&program, &p),
                            bpf.filter(&frame(&p)),
                            "`{expr}` on {p:?}: the kernel's program, then libpcap"
                        );
                    }
                }
            }
        }
    }
});
