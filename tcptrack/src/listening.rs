//! The host's listening TCP sockets, as a pure lookup, so that a connection picked up
//! mid-stream on a live interface gets its client and server right when one end is local: a
//! listening socket names its end the server for certain, and the classic lower-port rule is left
//! for the connections where neither end tells.
//!
//! No I/O here: [`ListeningSockets::parse`] takes the text of the kernel's socket table and the
//! host's addresses, which [`source::sockets`](crate::source::sockets) reads.
//!
//! The table is `/proc/net/tcp` and `/proc/net/tcp6` of the reading process's network
//! namespace; only rows in state `0A` (LISTEN) count. Their addresses are hex dumps of the raw
//! `__be32` words, printed as host-order integers (on x86 an IPv4 address reads reversed, and an
//! IPv6 address is four such words); ports are plain big-endian hex.
//!
//! Matching rules:
//! - A listener bound to a specific address matches exactly that address and port.
//! - A listener bound to a wildcard (`0.0.0.0` or `::`) matches its port on every *local*
//!   address: the host's interface addresses (`getifaddrs`) and, always, any loopback address
//!   (Linux routes all of `127.0.0.0/8` to `lo`).
//! - A `::` wildcard also matches IPv4 endpoints. The table does not say whether the socket set
//!   `IPV6_V6ONLY`; dual-stack is the Linux default (`net.ipv6.bindv6only = 0`), so we assume it.
//!   The price of a wrong guess is small: the socket still listens on that port over IPv6, and
//!   an IPv4 connection to it is rare unless another socket also listens there.
//! - IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`), in the table or in an endpoint, are compared
//!   as the IPv4 address they carry. IPv6 scope ids and flow labels are ignored.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The kernel's `TCP_LISTEN` state, as `/proc/net/tcp*` prints it.
const LISTEN: &str = "0A";

/// The listening TCP endpoints of this host (network namespace), and its local addresses.
#[derive(Debug, Clone, Default)]
pub struct ListeningSockets {
    /// Listeners bound to one address (IPv4-mapped addresses stored as IPv4).
    specific: HashSet<(IpAddr, u16)>,
    /// Ports with a listener on `0.0.0.0`.
    wildcard_v4: HashSet<u16>,
    /// Ports with a listener on `::` (taken to accept IPv4 too).
    wildcard_v6: HashSet<u16>,
    /// The host's own addresses (IPv4-mapped ones stored as IPv4).
    local: HashSet<IpAddr>,
}

impl ListeningSockets {
    /// Builds the set from the text of `/proc/net/tcp` and `/proc/net/tcp6` and the host's
    /// addresses. Lines that do not parse (the header among them) are skipped.
    pub fn parse(tcp: &str, tcp6: &str, local_addrs: impl IntoIterator<Item = IpAddr>) -> Self {
        let rows = tcp.lines().chain(tcp6.lines()).filter_map(parse_listen_row);
        Self::new(rows, local_addrs)
    }

    /// Builds the set from the listening endpoints and the host's addresses.
    pub fn new(
        listeners: impl IntoIterator<Item = (IpAddr, u16)>,
        local_addrs: impl IntoIterator<Item = IpAddr>,
    ) -> Self {
        let mut s = Self {
            local: local_addrs.into_iter().map(canonical).collect(),
            ..Self::default()
        };
        for (ip, port) in listeners {
            match ip {
                IpAddr::V4(v4) if v4.is_unspecified() => {
                    s.wildcard_v4.insert(port);
                }
                IpAddr::V6(v6) if v6.is_unspecified() => {
                    s.wildcard_v6.insert(port);
                }
                _ => {
                    s.specific.insert((canonical(ip), port));
                }
            }
        }
        s
    }

    /// Whether a socket of this host listens on `ep`.
    pub fn is_listening(&self, ep: &SocketAddr) -> bool {
        let ip = canonical(ep.ip());
        let port = ep.port();
        if self.specific.contains(&(ip, port)) {
            return true;
        }
        if !self.is_local(ip) {
            return false;
        }
        match ip {
            IpAddr::V4(_) => self.wildcard_v4.contains(&port) || self.wildcard_v6.contains(&port),
            IpAddr::V6(_) => self.wildcard_v6.contains(&port),
        }
    }

    /// The server of a connection between `a` and `b`: the end that is a local listening
    /// endpoint, when exactly one is; else, when exactly one end is local (and nobody listens
    /// on it), the other one: the local end is the client. `None` when this host cannot tell
    /// (both ends listening, or both local, or neither).
    pub fn server_of(&self, a: SocketAddr, b: SocketAddr) -> Option<SocketAddr> {
        match (self.is_listening(&a), self.is_listening(&b)) {
            (true, false) => Some(a),
            (false, true) => Some(b),
            (true, true) => None,
            (false, false) => match (
                self.is_local(canonical(a.ip())),
                self.is_local(canonical(b.ip())),
            ) {
                (true, false) => Some(b),
                (false, true) => Some(a),
                _ => None,
            },
        }
    }

    /// Whether `ip` is one of this host's addresses (loopback included).
    #[must_use]
    pub fn is_local_addr(&self, ip: IpAddr) -> bool {
        self.is_local(canonical(ip))
    }

    /// Whether `ip` (already canonical) is one of this host's addresses.
    fn is_local(&self, ip: IpAddr) -> bool {
        ip.is_loopback() || self.local.contains(&ip)
    }
}

/// An IPv4-mapped IPv6 address as the IPv4 address it carries; anything else unchanged.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 @ IpAddr::V4(_) => v4,
    }
}

/// The local endpoint of one `/proc/net/tcp*` row in LISTEN state; `None` for any other line.
fn parse_listen_row(line: &str) -> Option<(IpAddr, u16)> {
    let mut fields = line.split_whitespace();
    let _slot = fields.next()?;
    let local = fields.next()?;
    let _remote = fields.next()?;
    let state = fields.next()?;
    if !state.eq_ignore_ascii_case(LISTEN) {
        return None;
    }
    parse_endpoint(local)
}

/// `ADDR:PORT` as the kernel prints it: 8 (IPv4) or 32 (IPv6) hex digits, a colon, 4 hex digits.
fn parse_endpoint(s: &str) -> Option<(IpAddr, u16)> {
    let (addr, port) = s.split_once(':')?;
    if port.len() != 4 {
        return None;
    }
    let port = u16::from_str_radix(hex(port)?, 16).ok()?;
    let ip = match addr.len() {
        8 => IpAddr::V4(Ipv4Addr::from(word(addr)?.to_ne_bytes())),
        32 => {
            let mut octets = [0u8; 16];
            for (i, chunk) in octets.chunks_exact_mut(4).enumerate() {
                let w = word(addr.get(i * 8..i * 8 + 8)?)?;
                chunk.copy_from_slice(&w.to_ne_bytes());
            }
            IpAddr::V6(Ipv6Addr::from(octets))
        }
        _ => return None,
    };
    Some((ip, port))
}

/// Eight hex digits as the host-order `u32` the kernel printed.
fn word(s: &str) -> Option<u32> {
    if s.len() != 8 {
        return None;
    }
    u32::from_str_radix(hex(s)?, 16).ok()
}

/// `s` if it is all hex digits (`from_str_radix` alone would take a leading `+`).
fn hex(s: &str) -> Option<&str> {
    (!s.is_empty() && s.bytes().all(|b| b.is_ascii_hexdigit())).then_some(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 0.0.0.0:22 (wildcard), 127.0.0.1:3306 and 10.0.2.15:8080 (specific) listen; two
    /// ESTABLISHED rows and a TIME_WAIT row; then malformed lines that must be skipped.
    const TCP: &str = "\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 20481 1 0000000000000000 100 0 0 10 0
   1: 0100007F:0CEA 00000000:0000 0A 00000000:00000000 00:00000000 00000000   106        0 23111 1 0000000000000000 100 0 0 10 0
   2: 0F02000A:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 24817 1 0000000000000000 100 0 0 10 0
   3: 0F02000A:0016 0202000A:D4F2 01 00000000:00000000 02:000A7F0C 00000000     0        0 30511 4 0000000000000000 20 4 31 10 -1
   4: 0F02000A:9C40 2231D9AC:01BB 01 00000000:00000000 02:00000A3B 00000000  1000        0 31877 2 0000000000000000 22 4 30 10 -1
   5: 0F02000A:9C41 2231D9AC:01BB 06 00000000:00000000 03:00001770 00000000     0        0 0 3 0000000000000000
garbage
   6: ZZZZZZZZ:0050 00000000:0000 0A
   7: 00000000:0051
   8: 00000000 00000000:0000 0A
   9: 0000000:00052 00000000:0000 0A
  10: +0000000:0053 00000000:0000 0A
  11: 00000000:+054 00000000:0000 0A
  12: 00000000:é055 00000000:0000 0A

";

    /// [::1]:631, [::]:80 (wildcard), [2001:db8::10]:443 and ::ffff:192.168.1.5:5432 (v4-mapped)
    /// listen; one ESTABLISHED row; then malformed lines.
    const TCP6: &str = "\
  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000001000000:0277 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 22012 1 0000000000000000 100 0 0 10 0
   1: 00000000000000000000000000000000:0050 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000    33        0 25001 1 0000000000000000 100 0 0 10 0
   2: B80D0120000000000000000010000000:01BB 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 25102 1 0000000000000000 100 0 0 10 0
   3: 0000000000000000FFFF00000501A8C0:1538 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000   114        0 25230 1 0000000000000000 100 0 0 10 0
   4: B80D0120000000000000000010000000:01BB B80D0120000000000000000099000000:C350 01 00000000:00000000 02:00000F3C 00000000     0        0 26001 2 0000000000000000 20 4 30 10 -1
   5: B80D012000000000000000001000000:01BC 00000000000000000000000000000000:0000 0A
   6: B80D0120000000000000000010000000Z:01BD 00000000000000000000000000000000:0000 0A
";

    fn ep(s: &str) -> SocketAddr {
        s.parse().expect("test endpoint")
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("test address")
    }

    fn sample() -> ListeningSockets {
        ListeningSockets::parse(
            TCP,
            TCP6,
            [
                ip("10.0.2.15"),
                ip("127.0.0.1"),
                ip("2001:db8::10"),
                ip("::1"),
            ],
        )
    }

    #[test]
    fn parses_listeners_only() {
        let s = sample();
        let specific: HashSet<(IpAddr, u16)> = [
            (ip("127.0.0.1"), 3306),
            (ip("10.0.2.15"), 8080),
            (ip("::1"), 631),
            (ip("2001:db8::10"), 443),
            (ip("192.168.1.5"), 5432),
        ]
        .into_iter()
        .collect();
        assert_eq!(s.specific, specific);
        assert_eq!(s.wildcard_v4, [22].into_iter().collect());
        assert_eq!(s.wildcard_v6, [80].into_iter().collect());
    }

    #[test]
    fn endpoint_decoding() {
        assert_eq!(
            parse_endpoint("0100007F:0CEA"),
            Some((ip("127.0.0.1"), 3306))
        );
        assert_eq!(
            parse_endpoint("B80D0120000000000000000010000000:01BB"),
            Some((ip("2001:db8::10"), 443))
        );
        assert_eq!(
            parse_endpoint("0000000000000000FFFF00000501A8C0:1538"),
            Some((ip("::ffff:192.168.1.5"), 5432))
        );
        for bad in [
            "",
            ":",
            "0100007F",
            "0100007F:",
            "0100007F:CEA",
            "0100007F:0CEAA",
        ] {
            assert_eq!(parse_endpoint(bad), None, "{bad:?}");
        }
        assert_eq!(parse_listen_row(""), None);
        assert_eq!(
            parse_listen_row("  sl  local_address rem_address   st"),
            None
        );
    }

    #[test]
    fn is_listening_specific_and_wildcard() {
        let s = sample();
        // Specific listeners: exactly their address.
        assert!(s.is_listening(&ep("127.0.0.1:3306")));
        assert!(!s.is_listening(&ep("10.0.2.15:3306")));
        assert!(s.is_listening(&ep("10.0.2.15:8080")));
        assert!(!s.is_listening(&ep("127.0.0.1:8080")));
        assert!(s.is_listening(&ep("[::1]:631")));
        assert!(!s.is_listening(&ep("127.0.0.1:631")));
        assert!(s.is_listening(&ep("[2001:db8::10]:443")));
        assert!(s.is_listening(&ep("[2001:db8::10%3]:443")));
        // v4-mapped listener matches the IPv4 endpoint and the mapped one.
        assert!(s.is_listening(&ep("192.168.1.5:5432")));
        assert!(s.is_listening(&ep("[::ffff:192.168.1.5]:5432")));
        // IPv4 wildcard: local IPv4 addresses and any loopback; not IPv6, not foreign.
        assert!(s.is_listening(&ep("10.0.2.15:22")));
        assert!(s.is_listening(&ep("127.0.0.5:22")));
        assert!(s.is_listening(&ep("[::ffff:10.0.2.15]:22")));
        assert!(!s.is_listening(&ep("[2001:db8::10]:22")));
        assert!(!s.is_listening(&ep("192.0.2.7:22")));
        // IPv6 wildcard: local IPv6 and (dual-stack) local IPv4; not foreign.
        assert!(s.is_listening(&ep("[2001:db8::10]:80")));
        assert!(s.is_listening(&ep("[::1]:80")));
        assert!(s.is_listening(&ep("10.0.2.15:80")));
        assert!(!s.is_listening(&ep("[2001:db8::99]:80")));
        assert!(!s.is_listening(&ep("8.8.8.8:80")));
        // ESTABLISHED / TIME_WAIT rows and malformed rows are not listeners.
        assert!(!s.is_listening(&ep("10.0.2.15:40000")));
        assert!(!s.is_listening(&ep("10.0.2.15:40001")));
        assert!(!s.is_listening(&ep("[2001:db8::99]:50000")));
        for port in [81, 82, 83, 84, 85, 444, 445] {
            assert!(!s.is_listening(&ep(&format!("10.0.2.15:{port}"))), "{port}");
            assert!(
                !s.is_listening(&ep(&format!("[2001:db8::10]:{port}"))),
                "{port}"
            );
        }
    }

    #[test]
    fn server_of_cases() {
        let s = sample();
        // One end listening, in either order.
        let (client, server) = (ep("10.0.2.2:54514"), ep("10.0.2.15:22"));
        assert_eq!(s.server_of(client, server), Some(server));
        assert_eq!(s.server_of(server, client), Some(server));
        // Local listener on the higher port: the lower-port rule would get this one wrong.
        let (client, server) = (ep("10.0.2.2:80"), ep("10.0.2.15:8080"));
        assert_eq!(s.server_of(client, server), Some(server));
        let (client, server) = (ep("[2001:db8::99]:50000"), ep("[2001:db8::10]:443"));
        assert_eq!(s.server_of(server, client), Some(server));
        let (client, server) = (ep("192.168.1.9:6000"), ep("[::ffff:192.168.1.5]:5432"));
        assert_eq!(s.server_of(client, server), Some(server));
        // Both ends listening.
        assert_eq!(s.server_of(ep("10.0.2.15:22"), ep("10.0.2.15:8080")), None);
        assert_eq!(s.server_of(ep("127.0.0.1:3306"), ep("127.0.0.1:22")), None);
        // Neither end listens, one is local: the local end is the client, whatever the ports.
        assert_eq!(
            s.server_of(ep("10.0.2.15:40000"), ep("172.217.49.34:443")),
            Some(ep("172.217.49.34:443"))
        );
        assert_eq!(
            s.server_of(ep("10.0.2.15:5555"), ep("172.217.49.34:40000")),
            Some(ep("172.217.49.34:40000"))
        );
        assert_eq!(
            s.server_of(ep("172.217.49.34:40000"), ep("[::ffff:10.0.2.15]:5555")),
            Some(ep("172.217.49.34:40000"))
        );
        // Both local, nobody listening: no telling.
        assert_eq!(
            s.server_of(ep("127.0.0.1:5000"), ep("10.0.2.15:6000")),
            None
        );
        // A wildcard port on a non-local address tells nothing.
        assert_eq!(s.server_of(ep("192.0.2.7:22"), ep("192.0.2.8:50000")), None);
        assert_eq!(
            s.server_of(ep("8.8.8.8:80"), ep("198.51.100.1:50000")),
            None
        );
    }

    #[test]
    fn empty_and_garbage_input() {
        let s = ListeningSockets::parse("", "", []);
        assert!(!s.is_listening(&ep("127.0.0.1:22")));
        let s = ListeningSockets::parse("\0\n:::\n 0: : : 0A\n", "é:é é 0A", [ip("::")]);
        assert_eq!(s.server_of(ep("127.0.0.1:1"), ep("127.0.0.1:2")), None);
    }
}
