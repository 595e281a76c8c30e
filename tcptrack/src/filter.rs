//! Filter expressions the kernel can decide: a subset of tcpdump's syntax (`host`, `net`,
//! `port`, `portrange`, each with `src` or `dst`; `ip`, `ip6`, `tcp`; `and`, `or`, `not`,
//! parentheses), compiled to the postfix program the kernel runs per packet. Anything else is
//! left to libpcap.

use std::net::IpAddr;

use tcptrack_common::{filter, FilterInsn, FAMILY_IPV4, FAMILY_IPV6, MAX_FILTER_INSNS};

/// A parsed expression.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Expr {
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Not(Box<Expr>),
    Test(FilterInsn),
}

/// Which end a primitive looks at, and what kind it is: tcpdump lets a bare value reuse the
/// previous primitive's qualifiers (`port 80 or 443`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Host,
    Net,
    Port,
    PortRange,
}

struct Parser<'a> {
    tokens: Vec<&'a str>,
    at: usize,
    last: Option<(u8, Kind)>,
}

fn tokenize(expr: &str) -> Vec<&str> {
    let mut out = Vec::new();
    for word in expr.split_whitespace() {
        let mut rest = word;
        while !rest.is_empty() {
            if let Some(r) = rest.strip_prefix('(').or_else(|| rest.strip_prefix(')')) {
                out.push(&rest[..1]);
                rest = r;
                continue;
            }
            if let Some(r) = rest.strip_prefix('!') {
                out.push("!");
                rest = r;
                continue;
            }
            let end = rest.find(['(', ')']).unwrap_or(rest.len());
            out.push(&rest[..end]);
            rest = &rest[end..];
        }
    }
    out
}

/// A number that reads as plain decimal (no sign, no leading zero). libpcap reads `010` as
/// octal (8) and `0x10` as hex: such numbers are left to it.
fn decimal<T: std::str::FromStr>(s: &str) -> Option<T> {
    let plain = s.bytes().all(|b| b.is_ascii_digit()) && !(s.len() > 1 && s.starts_with('0'));
    plain.then(|| s.parse().ok()).flatten()
}

fn net(addr: IpAddr, prefix: u8) -> Option<FilterInsn> {
    let (family, bytes, max) = match addr {
        IpAddr::V4(v4) => {
            let mut b = [0u8; 16];
            b[..4].copy_from_slice(&v4.octets());
            (FAMILY_IPV4, b, 32)
        }
        IpAddr::V6(v6) => (FAMILY_IPV6, v6.octets(), 128),
    };
    if prefix > max {
        return None;
    }
    let mut mask = [0u8; 16];
    for (i, m) in mask.iter_mut().enumerate() {
        let bits = u32::from(prefix)
            .saturating_sub(u32::try_from(i).ok()? * 8)
            .min(8);
        *m = if bits == 0 { 0 } else { 0xffu8 << (8 - bits) };
    }
    let mut masked = bytes;
    for (b, m) in masked.iter_mut().zip(mask) {
        *b &= m;
    }
    // tcpdump refuses a network with host bits set ("non-network bits set"): so do we, by
    // leaving it to libpcap, which says so.
    if masked != bytes {
        return None;
    }
    Some(FilterInsn {
        op: filter::NET,
        family,
        addr: masked,
        mask,
        ..FilterInsn::default()
    })
}

impl<'a> Parser<'a> {
    fn peek(&self) -> Option<&'a str> {
        self.tokens.get(self.at).copied()
    }

    fn next(&mut self) -> Option<&'a str> {
        let t = self.peek();
        self.at += 1;
        t
    }

    /// A sequence of terms joined by `and` and `or`, which bind alike, from left to right, as in
    /// libpcap (`a or b and c` is `(a or b) and c`).
    fn expr(&mut self) -> Option<Expr> {
        let mut e = self.not()?;
        loop {
            let and = match self.peek() {
                Some("and" | "&&") => true,
                Some("or" | "||") => false,
                _ => return Some(e),
            };
            self.at += 1;
            let (a, b) = (Box::new(e), Box::new(self.not()?));
            e = if and { Expr::And(a, b) } else { Expr::Or(a, b) };
        }
    }

    fn not(&mut self) -> Option<Expr> {
        match self.peek()? {
            "not" | "!" => {
                self.at += 1;
                Some(Expr::Not(Box::new(self.not()?)))
            }
            "(" => {
                self.at += 1;
                // After the parentheses, a bare value takes the qualifiers from before them, as
                // libpcap's grammar has it: `src port 22 or (dst port 80) or 23` is src port 23.
                let before = self.last;
                let e = self.expr()?;
                self.last = before;
                (self.next()? == ")").then_some(e)
            }
            _ => self.primitive(),
        }
    }

    fn value(&mut self, dir: u8, kind: Kind) -> Option<Expr> {
        let v = self.next()?;
        self.last = Some((dir, kind));
        let mut ins = match kind {
            Kind::Host => {
                let addr: IpAddr = v.parse().ok()?;
                net(addr, if addr.is_ipv4() { 32 } else { 128 })?
            }
            Kind::Net => {
                let (a, p) = v.split_once('/')?;
                net(a.parse().ok()?, decimal(p)?)?
            }
            Kind::Port => {
                let p: u16 = decimal(v)?;
                FilterInsn {
                    op: filter::PORT,
                    port_lo: p,
                    port_hi: p,
                    ..FilterInsn::default()
                }
            }
            Kind::PortRange => {
                let (lo, hi) = v.split_once('-')?;
                let (lo, hi): (u16, u16) = (decimal(lo)?, decimal(hi)?);
                if lo > hi {
                    return None;
                }
                FilterInsn {
                    op: filter::PORT,
                    port_lo: lo,
                    port_hi: hi,
                    ..FilterInsn::default()
                }
            }
        };
        ins.dir = dir;
        Some(Expr::Test(ins))
    }

    fn primitive(&mut self) -> Option<Expr> {
        let t = self.peek()?;
        let family = |f| FilterInsn {
            op: filter::FAMILY,
            family: f,
            ..FilterInsn::default()
        };
        match t {
            "tcp" => {
                self.at += 1;
                return Some(Expr::Test(FilterInsn {
                    op: filter::TRUE,
                    ..FilterInsn::default()
                }));
            }
            "ip" => {
                self.at += 1;
                return Some(Expr::Test(family(FAMILY_IPV4)));
            }
            "ip6" => {
                self.at += 1;
                return Some(Expr::Test(family(FAMILY_IPV6)));
            }
            _ => {}
        }
        let dir = match t {
            "src" => filter::SRC,
            "dst" => filter::DST,
            _ => filter::ANY,
        };
        if dir != filter::ANY {
            self.at += 1;
        }
        let kind = match self.peek()? {
            "host" => Kind::Host,
            "net" => Kind::Net,
            "port" => Kind::Port,
            "portrange" => Kind::PortRange,
            // A bare value: the previous primitive's qualifiers (`port 80 or 443`).
            _ if dir == filter::ANY => {
                let (d, k) = self.last?;
                return self.value(d, k);
            }
            _ => return None,
        };
        self.at += 1;
        self.value(dir, kind)
    }
}

fn emit(e: &Expr, out: &mut Vec<FilterInsn>) {
    match e {
        Expr::And(a, b) | Expr::Or(a, b) => {
            emit(a, out);
            emit(b, out);
            let op = if matches!(e, Expr::And(..)) {
                filter::AND
            } else {
                filter::OR
            };
            out.push(FilterInsn {
                op,
                ..FilterInsn::default()
            });
        }
        Expr::Not(a) => {
            emit(a, out);
            out.push(FilterInsn {
                op: filter::NOT,
                ..FilterInsn::default()
            });
        }
        Expr::Test(t) => out.push(*t),
    }
}

/// The kernel program for `expr`, or `None` when the expression is outside the subset the
/// kernel decides (or too long for it): libpcap decides those.
#[must_use]
pub fn compile(expr: &str) -> Option<Vec<FilterInsn>> {
    let tokens = tokenize(expr);
    if tokens.is_empty() {
        return None;
    }
    let mut p = Parser {
        tokens,
        at: 0,
        last: None,
    };
    let e = p.expr()?;
    if p.at != p.tokens.len() {
        return None;
    }
    let mut out = Vec::new();
    emit(&e, &mut out);
    // The program ends with END, within the map.
    (out.len() < MAX_FILTER_INSNS as usize).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by fuzzing (`fuzz/fuzz_targets/filter.rs`): `port 043` compiled to port 43, where
    /// libpcap (which decides on the other paths) reads octal, port 35.
    #[test]
    fn octal_and_hex_numbers_are_left_to_libpcap() {
        for expr in [
            "port 80 or 043",
            "port 010",
            "port 0x50",
            "port +80",
            "portrange 010-20",
            "portrange 10-020",
            "net 10.0.0.0/08",
        ] {
            assert_eq!(compile(expr), None, "`{expr}`");
        }
        assert!(compile("port 0").is_some());
        assert!(compile("portrange 0-100").is_some());
        assert!(compile("net 0.0.0.0/0").is_some());
    }

    /// Found by fuzzing: a bare value after parentheses took the qualifiers of the last
    /// primitive inside them (`dst port`), where libpcap takes those from before them.
    #[test]
    fn a_bare_value_after_parentheses_takes_the_qualifiers_from_before_them() {
        let port = |dir, p| FilterInsn {
            op: filter::PORT,
            dir,
            port_lo: p,
            port_hi: p,
            ..FilterInsn::default()
        };
        let or = FilterInsn {
            op: filter::OR,
            ..FilterInsn::default()
        };
        assert_eq!(
            compile("src port 22 or (dst port 80) or 22"),
            Some(vec![
                port(filter::SRC, 22),
                port(filter::DST, 80),
                or,
                port(filter::SRC, 22),
                or
            ])
        );
        // Inside them, a bare value still takes those of the primitive before it.
        assert_eq!(
            compile("src port 22 or (dst port 80 or 81)"),
            Some(vec![
                port(filter::SRC, 22),
                port(filter::DST, 80),
                port(filter::DST, 81),
                or,
                or
            ])
        );
    }

    /// Found by fuzzing: `and` bound tighter than `or`, as in most languages, where libpcap
    /// binds them alike from left to right: `port 22 or port 80 and host 198.18.0.1` is
    /// `(port 22 or port 80) and host 198.18.0.1`.
    #[test]
    fn and_and_or_bind_alike_from_left_to_right() {
        assert_eq!(
            compile("port 22 or port 80 and host 198.18.0.1"),
            compile("(port 22 or port 80) and host 198.18.0.1")
        );
        assert_eq!(
            compile("port 22 and port 80 or host 198.18.0.1"),
            compile("(port 22 and port 80) or host 198.18.0.1")
        );
        assert_ne!(
            compile("port 22 or port 80 and host 198.18.0.1"),
            compile("port 22 or (port 80 and host 198.18.0.1)")
        );
    }
}
