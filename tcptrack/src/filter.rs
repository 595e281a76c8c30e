//! Filter expressions: libpcap compiles them, the whole pcap-filter(7) language, into classic
//! BPF for the link type the packets come in. libpcap runs that program on capture files and
//! on its own live captures; the kernel path runs it translated into eBPF
//! ([`crate::ebpf::cbpf`]), so that both decide every expression alike.

use crate::ebpf::cbpf::Cbpf;

/// Compiles `expr` for frames of `link`, optimized as tcpdump does.
///
/// # Errors
/// libpcap's own message for an expression it cannot compile.
pub fn compile(expr: &str, link: pcap::Linktype) -> Result<Vec<Cbpf>, pcap::Error> {
    let dead = pcap::Capture::dead(link)?;
    let program = dead.compile(expr, true)?;
    // The pcap crate shows an instruction's fields ("code jt jf k") but does not hand them
    // out: they are read back from that.
    program
        .get_instructions()
        .iter()
        .map(|i| {
            let text = i.to_string();
            let mut fields = text.split(' ');
            let mut next = || fields.next().and_then(|f| f.parse::<u32>().ok());
            let fields = (next(), next(), next(), next());
            fields
                .0
                .and_then(|code| u16::try_from(code).ok())
                .zip(fields.1.and_then(|jt| u8::try_from(jt).ok()))
                .zip(fields.2.and_then(|jf| u8::try_from(jf).ok()))
                .zip(fields.3)
                .map(|(((code, jt), jf), k)| Cbpf::new(code, jt, jf, k))
                .ok_or_else(|| pcap::Error::PcapError(format!("unreadable instruction `{text}`")))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libpcap_compiles_the_whole_language() {
        // `ldh [12]` first (the EtherType), a return last.
        let p = compile("tcp port 80", pcap::Linktype::ETHERNET).expect("compiles");
        assert_eq!(p[0], Cbpf::new(0x28, 0, 0, 12));
        assert_eq!(p.last().map(|i| i.code & 0x07), Some(0x06));
        for expr in [
            "greater 500",
            "tcp[tcpflags] & tcp-syn != 0",
            "ip[2:2] > 600",
            "vlan and tcp",
            "ether host 02:00:00:00:00:01",
            "port http",
        ] {
            assert!(
                compile(expr, pcap::Linktype::ETHERNET).is_ok_and(|p| !p.is_empty()),
                "`{expr}`"
            );
        }
    }

    #[test]
    fn a_bad_expression_gets_libpcaps_message() {
        let e = compile("port 80 and", pcap::Linktype::ETHERNET).expect_err("bad");
        assert!(e.to_string().contains("syntax error"), "{e}");
        assert!(compile("net 198.18.0.1/24", pcap::Linktype::ETHERNET).is_err());
    }
}
