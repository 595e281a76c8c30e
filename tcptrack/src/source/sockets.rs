//! Reads the host's listening TCP sockets (of the reading process's network namespace) and the
//! host's interface addresses (`getifaddrs`). The listeners come from sock_diag, which the
//! kernel filters by state: the cost is the listeners', not the connections' (reading
//! `/proc/net/tcp` with 60,000 connections took 0.2 s of a core). `/proc/net/tcp{,6}` serve
//! where sock_diag is missing. Matching endpoints against them is pure, and lives in
//! [`crate::listening`].

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::listening::ListeningSockets;

/// Reads the listening sockets of this network namespace and the host's interface addresses.
///
/// A missing `/proc/net/tcp6` (IPv6 disabled) counts as empty.
///
/// # Errors
/// `/proc/net/tcp` or `/proc/net/tcp6` cannot be read, or `getifaddrs` fails.
pub fn read_listening() -> io::Result<ListeningSockets> {
    let local = interface_addrs()?;
    let mut listeners = Vec::new();
    let diag = [libc::AF_INET, libc::AF_INET6]
        .iter()
        .try_for_each(|&family| diag_listeners(family, &mut listeners));
    if diag.is_ok() {
        return Ok(ListeningSockets::new(listeners, local));
    }
    let tcp = std::fs::read_to_string("/proc/net/tcp")?;
    let tcp6 = match std::fs::read_to_string("/proc/net/tcp6") {
        Ok(s) => s,
        Err(e) if e.kind() == io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e),
    };
    Ok(ListeningSockets::parse(&tcp, &tcp6, local))
}

/// `SOCK_DIAG_BY_FAMILY`, `NETLINK_SOCK_DIAG`, and the netlink message types and flags used.
const SOCK_DIAG_BY_FAMILY: u16 = 20;
const NETLINK_SOCK_DIAG: i32 = 4;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_DUMP: u16 = 0x300;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
/// `TCP_LISTEN` in the kernel's state numbering.
const TCP_LISTEN: u32 = 10;
/// `struct nlmsghdr` and `struct inet_diag_req_v2`; `inet_diag_msg`'s address offsets.
const NLMSG_HDR: usize = 16;
const DIAG_REQ: usize = 56;
const DIAG_MSG_MIN: usize = 72;

/// Appends the TCP listeners of `family` (`AF_INET` or `AF_INET6`) to `out`, asking sock_diag.
fn diag_listeners(family: i32, out: &mut Vec<(IpAddr, u16)>) -> io::Result<()> {
    diag_dump(family, 1 << TCP_LISTEN, 0, |m, _| {
        let (ip, port) = endpoint(m, 8, 4);
        out.push((ip, port));
    })
}

/// A local TCP socket with a peer, as the kernel's own TCP keeps it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LocalSocket {
    pub local: SocketAddr,
    pub remote: SocketAddr,
    /// Smoothed round-trip time (µs), as `ss -ti` shows it.
    pub rtt_us: u32,
    /// Segments this socket sent again.
    pub retransmits: u32,
    /// The socket's inode, which names it in `/proc/PID/fd`.
    pub inode: u32,
}

/// Every TCP socket of this network namespace that has a peer (all states but LISTEN and
/// TIME_WAIT), with the kernel's TCP info.
///
/// # Errors
/// sock_diag is missing or refuses.
pub fn read_connected() -> io::Result<Vec<LocalSocket>> {
    // Every state but LISTEN (10), TIME_WAIT (6) and CLOSE (7), in the kernel's numbering.
    let states: u32 = (1..=11u32)
        .filter(|s| ![6, 7, TCP_LISTEN].contains(s))
        .fold(0, |m, s| m | 1 << s);
    let mut out = Vec::new();
    for family in [libc::AF_INET, libc::AF_INET6] {
        diag_dump(family, states, INET_DIAG_INFO_EXT, |m, attrs| {
            let (lip, lport) = endpoint(m, 8, 4);
            let (rip, rport) = endpoint(m, 24, 6);
            let info = attr(attrs, INET_DIAG_INFO);
            let u32_at = |b: &[u8], i: usize| {
                b.get(i..i + 4)
                    .and_then(|s| s.try_into().ok())
                    .map_or(0, u32::from_ne_bytes)
            };
            out.push(LocalSocket {
                local: SocketAddr::new(lip, lport),
                remote: SocketAddr::new(rip, rport),
                rtt_us: info.map_or(0, |i| u32_at(i, TCPI_RTT)),
                retransmits: info.map_or(0, |i| u32_at(i, TCPI_TOTAL_RETRANS)),
                inode: u32_at(m, 68),
            });
        })?;
    }
    Ok(out)
}

/// `INET_DIAG_INFO`: the attribute holding `struct tcp_info`, and its request bit.
const INET_DIAG_INFO: u16 = 2;
const INET_DIAG_INFO_EXT: u8 = 1 << (INET_DIAG_INFO - 1);
/// Offsets in `struct tcp_info`: eight bytes of u8 fields, then u32s (`tcpi_rtt` the 16th,
/// `tcpi_total_retrans` the 24th).
const TCPI_RTT: usize = 8 + 4 * 15;
const TCPI_TOTAL_RETRANS: usize = 8 + 4 * 23;

/// An address and port of `inet_diag_msg` `m`: the address (16 bytes) at `addr`, the port
/// (big-endian) at `port`; the family at 0 says how much of the address counts.
fn endpoint(m: &[u8], addr: usize, port: usize) -> (IpAddr, u16) {
    let p = u16::from_be_bytes([m[port], m[port + 1]]);
    let a: [u8; 16] = m[addr..addr + 16].try_into().unwrap_or([0; 16]);
    let ip = if i32::from(m[0]) == libc::AF_INET {
        IpAddr::V4(Ipv4Addr::new(a[0], a[1], a[2], a[3]))
    } else {
        IpAddr::V6(Ipv6Addr::from(a))
    };
    (ip, p)
}

/// The payload of the first route attribute of `kind` in `attrs`.
fn attr(mut attrs: &[u8], kind: u16) -> Option<&[u8]> {
    while attrs.len() >= 4 {
        let len = usize::from(u16::from_ne_bytes([attrs[0], attrs[1]]));
        let t = u16::from_ne_bytes([attrs[2], attrs[3]]);
        if len < 4 || len > attrs.len() {
            return None;
        }
        if t == kind {
            return Some(&attrs[4..len]);
        }
        attrs = attrs.get((len + 3) & !3..).unwrap_or_default();
    }
    None
}

/// Dumps the TCP sockets of `family` (`AF_INET` or `AF_INET6`) in the states of mask `states`,
/// with the extensions of `ext`, handing each `inet_diag_msg` and its attributes to `each`.
fn diag_dump(
    family: i32,
    states: u32,
    ext: u8,
    mut each: impl FnMut(&[u8], &[u8]),
) -> io::Result<()> {
    use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd};
    // SAFETY: plain socket(2) call.
    let raw = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
            NETLINK_SOCK_DIAG,
        )
    };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a descriptor we just opened and own.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    let mut req = Vec::with_capacity(NLMSG_HDR + DIAG_REQ);
    req.extend_from_slice(
        &u32::try_from(NLMSG_HDR + DIAG_REQ)
            .unwrap_or(0)
            .to_ne_bytes(),
    );
    req.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    req.extend_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    req.extend_from_slice(&[0; 8]); // sequence number, port id
    req.push(u8::try_from(family).unwrap_or(0));
    req.push(u8::try_from(libc::IPPROTO_TCP).unwrap_or(0));
    req.extend_from_slice(&[ext, 0]); // extensions, padding
    req.extend_from_slice(&states.to_ne_bytes());
    req.extend_from_slice(&[0; 48]); // the socket id: any
                                     // SAFETY: send(2) of a buffer we own, with its length.
    if unsafe { libc::send(fd.as_raw_fd(), req.as_ptr().cast(), req.len(), 0) } < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        // SAFETY: recv(2) into a buffer we own, at most its length.
        let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        let n = usize::try_from(n).map_err(|_| io::Error::last_os_error())?;
        if diag_messages(&buf[..n], &mut each)? {
            return Ok(());
        }
    }
}

/// Hands the `inet_diag_msg`s of one datagram (and their attributes) to `each`; true at the end
/// of the dump.
fn diag_messages(mut b: &[u8], each: &mut impl FnMut(&[u8], &[u8])) -> io::Result<bool> {
    let u16_at = |b: &[u8], i: usize| u16::from_ne_bytes([b[i], b[i + 1]]);
    while b.len() >= NLMSG_HDR {
        let len = usize::try_from(u32::from_ne_bytes([b[0], b[1], b[2], b[3]])).unwrap_or(0);
        if len < NLMSG_HDR || len > b.len() {
            return Err(io::Error::other("a malformed sock_diag answer"));
        }
        match u16_at(b, 4) {
            NLMSG_DONE => return Ok(true),
            NLMSG_ERROR => return Err(io::Error::other("sock_diag refused the request")),
            _ if len >= NLMSG_HDR + DIAG_MSG_MIN => {
                let m = &b[NLMSG_HDR..len];
                each(&m[..DIAG_MSG_MIN], &m[DIAG_MSG_MIN..]);
            }
            _ => {}
        }
        // Messages are 4-byte aligned.
        let next = (len + 3) & !3;
        b = b.get(next..).unwrap_or_default();
    }
    Ok(false)
}

/// The IPv4 and IPv6 addresses of this host's interfaces (IPv4-mapped ones are taken as IPv4 by
/// [`ListeningSockets::parse`]).
fn interface_addrs() -> io::Result<Vec<IpAddr>> {
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: `head` is a valid place for the list pointer; on success the list is ours until
    // `freeifaddrs`.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let mut out = Vec::new();
    let mut cur = head;
    while !cur.is_null() {
        // SAFETY: `cur` is a non-null node of the list `getifaddrs` returned, not yet freed.
        let ifa = unsafe { &*cur };
        if !ifa.ifa_addr.is_null() {
            // SAFETY: `ifa_addr` is non-null and points to a sockaddr whose `sa_family` says
            // which concrete type it is; we read it as that type only.
            let family = i32::from(unsafe { (*ifa.ifa_addr).sa_family });
            if family == libc::AF_INET {
                // SAFETY: an AF_INET address is a `sockaddr_in`.
                let sin = unsafe { &*ifa.ifa_addr.cast::<libc::sockaddr_in>() };
                out.push(IpAddr::V4(Ipv4Addr::from(
                    sin.sin_addr.s_addr.to_ne_bytes(),
                )));
            } else if family == libc::AF_INET6 {
                // SAFETY: an AF_INET6 address is a `sockaddr_in6`.
                let sin6 = unsafe { &*ifa.ifa_addr.cast::<libc::sockaddr_in6>() };
                out.push(IpAddr::V6(Ipv6Addr::from(sin6.sin6_addr.s6_addr)));
            }
        }
        cur = ifa.ifa_next;
    }
    // SAFETY: `head` came from a successful `getifaddrs` and is freed once, after its last use.
    unsafe { libc::freeifaddrs(head) };
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use super::*;

    #[test]
    fn sock_diag_lists_listeners_and_only_them() {
        let v4 = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let v4_addr = v4.local_addr().expect("addr");
        let conn = std::net::TcpStream::connect(v4_addr).expect("connect");
        let client = conn.local_addr().expect("client");
        let v6 = std::net::TcpListener::bind("[::1]:0").expect("bind [::1]");
        let v6_addr = v6.local_addr().expect("addr");
        let mut diag = Vec::new();
        for family in [libc::AF_INET, libc::AF_INET6] {
            diag_listeners(family, &mut diag).expect("sock_diag");
        }
        assert!(diag.contains(&(v4_addr.ip(), v4_addr.port())), "{diag:?}");
        assert!(diag.contains(&(v6_addr.ip(), v6_addr.port())), "{diag:?}");
        assert!(!diag.iter().any(|&(_, p)| p == client.port()), "{diag:?}");
        drop((conn, v4, v6));
    }

    #[test]
    fn connected_sockets_come_with_the_kernel_s_rtt_and_inode() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let server = listener.local_addr().expect("addr");
        let mut conn = std::net::TcpStream::connect(server).expect("connect");
        let (accepted, _) = listener.accept().expect("accept");
        std::io::Write::write_all(&mut conn, b"ping").expect("write");
        let client = conn.local_addr().expect("client");
        let all = read_connected().expect("sock_diag");
        let mine = all
            .iter()
            .find(|s| s.local == client && s.remote == server)
            .expect("the client's socket");
        let theirs = all
            .iter()
            .find(|s| s.local == server && s.remote == client)
            .expect("the accepted socket");
        // The inode is the one /proc/self/fd names.
        let fd = std::os::fd::AsRawFd::as_raw_fd(&conn);
        let link = std::fs::read_link(format!("/proc/self/fd/{fd}")).expect("readlink");
        assert_eq!(link.to_string_lossy(), format!("socket:[{}]", mine.inode));
        assert!(mine.rtt_us > 0 && theirs.rtt_us > 0, "{mine:?} {theirs:?}");
        assert_eq!((mine.retransmits, theirs.retransmits), (0, 0));
        assert!(!all
            .iter()
            .any(|s| s.local == server && s.remote.port() == 0));
        drop((conn, accepted, listener));
    }

    #[test]
    fn read_sees_a_live_listener() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let server = listener.local_addr().expect("local_addr");
        let conn = std::net::TcpStream::connect(server).expect("connect");
        let client = conn.local_addr().expect("client addr");
        let wild = std::net::TcpListener::bind("0.0.0.0:0").expect("bind wildcard");
        let wild_port = wild.local_addr().expect("wildcard addr").port();

        let s = read_listening().expect("read the socket table");
        assert!(s.is_listening(&server), "{server} should be listening");
        // The client's port is an ESTABLISHED socket, not a listener.
        assert!(!s.is_listening(&client), "{client} should not be listening");
        assert_eq!(s.server_of(client, server), Some(server));
        // A wildcard listener answers on loopback, and not on a foreign address.
        assert!(s.is_listening(&SocketAddr::from(([127, 0, 0, 1], wild_port))));
        assert!(!s.is_listening(&SocketAddr::from(([192, 0, 2, 1], wild_port))));
        drop((conn, listener, wild));
    }
}
