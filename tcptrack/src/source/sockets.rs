//! Reads the host's listening TCP sockets from the kernel's socket table (`/proc/net/tcp` and
//! `/proc/net/tcp6` of the reading process's network namespace) and the host's interface
//! addresses (`getifaddrs`). Parsing them and matching endpoints against them is pure, and lives
//! in [`crate::listening`].

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::listening::ListeningSockets;

/// Reads the listening sockets of this network namespace and the host's interface addresses.
///
/// A missing `/proc/net/tcp6` (IPv6 disabled) counts as empty.
///
/// # Errors
/// `/proc/net/tcp` or `/proc/net/tcp6` cannot be read, or `getifaddrs` fails.
pub fn read_listening() -> io::Result<ListeningSockets> {
    let tcp = std::fs::read_to_string("/proc/net/tcp")?;
    let tcp6 = match std::fs::read_to_string("/proc/net/tcp6") {
        Ok(s) => s,
        Err(e) if e.kind() == io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e),
    };
    let local = interface_addrs()?;
    Ok(ListeningSockets::parse(&tcp, &tcp6, local))
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
