//! The man page and the shell completions, made from the command line's own definition
//! ([`Args`]) so that they say what `--help` says. `tcptrack --generate man|bash|zsh|fish`
//! writes them; `cargo xtask dist` and `cargo xtask install` put them in place.
//!
//! The man page is clap's sections (name, synopsis, options) around tcptrack's own: what it
//! shows and how it counts, the filter, the outputs, the screen's keys, privileges, exit
//! status, examples.

use std::io::{self, Write};

use clap::CommandFactory as _;
use clap_complete::{Generator as _, Shell};
use clap_mangen::roff::{bold, roman, Inline, Roff};
use clap_mangen::Man;

use crate::cli::{Args, Generate};

/// Writes `what` to `out`.
///
/// # Errors
/// `out` cannot be written.
pub fn write(what: Generate, out: &mut dyn Write) -> io::Result<()> {
    let mut cmd = Args::command();
    cmd.set_bin_name("tcptrack");
    cmd.build();
    let shell = match what {
        Generate::Man => return man_page(cmd, out),
        Generate::Bash => Shell::Bash,
        Generate::Zsh => Shell::Zsh,
        Generate::Fish => Shell::Fish,
    };
    shell.try_generate(&cmd, out)
}

/// The capabilities live capture needs, as `setcap` takes them (README, "Without root").
pub const SETCAP_CAPABILITIES: &str = "cap_bpf,cap_perfmon,cap_net_admin,cap_net_raw+ep";

fn man_page(cmd: clap::Command, out: &mut dyn Write) -> io::Result<()> {
    // No date, so that a build gives the same page every time. An empty argument of `.TH` must
    // be written `""`: roff's writer would leave it out, and the source and manual would each
    // move one place left.
    let man = Man::new(cmd)
        .title("TCPTRACK")
        .date("\"\"")
        .manual("User Commands");
    let mut page = Vec::new();
    man.render_title(&mut page)?;
    man.render_name_section(&mut page)?;
    man.render_synopsis_section(&mut page)?;
    let mut roff = Roff::new();
    description(&mut roff);
    roff.to_writer(&mut page)?;
    man.render_options_section(&mut page)?;
    let mut roff = Roff::new();
    filter(&mut roff);
    output(&mut roff);
    screen(&mut roff);
    privileges(&mut roff);
    exit_status(&mut roff);
    examples(&mut roff);
    see_also(&mut roff);
    roff.to_writer(&mut page)?;
    man.render_version_section(&mut page)?;
    out.write_all(&once_preamble(&page))
}

/// `page` with roff's preamble (the two lines that define the apostrophe) once, at the top:
/// each part rendered on its own repeats it.
fn once_preamble(page: &[u8]) -> Vec<u8> {
    const PREAMBLE: [&[u8]; 2] = [b".ie \\n(.g .ds Aq \\(aq", b".el .ds Aq '"];
    let mut seen = [false; 2];
    let mut out = Vec::with_capacity(page.len());
    for line in page.split_inclusive(|&b| b == b'\n') {
        let text = line.strip_suffix(b"\n").unwrap_or(line);
        if let Some(i) = PREAMBLE.iter().position(|p| *p == text) {
            if std::mem::replace(&mut seen[i], true) {
                continue;
            }
        }
        out.extend_from_slice(line);
    }
    out
}

/// A paragraph.
fn para(roff: &mut Roff, text: impl Into<Vec<Inline>>) {
    roff.control("PP", []);
    roff.text(text);
}

/// A tagged paragraph: `tag` at the margin, `text` indented beside or below it.
fn tagged(roff: &mut Roff, tag: impl Into<Vec<Inline>>, text: &str) {
    roff.control("TP", []);
    roff.text(tag);
    roff.text([roman(text)]);
}

/// A command line set apart, as typed.
fn command(roff: &mut Roff, line: &str) {
    roff.control("RS", ["4"]);
    roff.control("nf", []);
    roff.text([roman(line)]);
    roff.control("fi", []);
    roff.control("RE", []);
}

fn description(roff: &mut Roff) {
    roff.control("SH", ["DESCRIPTION"]);
    roff.text([
        bold("tcptrack"),
        roman(
            " lists the TCP connections on a network interface or in a capture file, one row \
             each: client, server, state, idle time and speed. It keeps the flags, columns, \
             states and keys of the classic tcptrack.",
        ),
    ]);
    para(
        roff,
        [roman(
            "On a live interface the kernel does the counting: two small eBPF programs (TC on \
             ingress and egress, or XDP on ingress with --xdp) add up bytes and packets per \
             connection, so the cost grows with the number of connections, not of packets. \
             tcptrack captures through libpcap instead with --libpcap, or when the kernel path \
             cannot serve (a missing capability, an interface without Ethernet headers, \
             the kernel refusing the programs); one line, on the status line or on standard \
             error, says which path was taken and why.",
        )],
    );
    para(
        roff,
        [roman(
            "With -T, tcptrack reads a capture file whole, on the capture's own clock, so a file \
             gives the same result every time; --replay plays it at its recorded pace instead. A \
             capture compressed with gzip or zstd is read as it is, told by its first bytes, \
             from a file or from standard input (-T -). \
             Without -i or -T it monitors the default interface, as tcpdump picks it.",
        )],
    );
    para(
        roff,
        [roman(
            "In a terminal tcptrack draws the screen (see SCREEN). When standard output is not a \
             terminal, or with --output, it writes text instead: once at the end of a capture \
             file, or at every interval live.",
        )],
    );
}

fn filter(roff: &mut Roff) {
    roff.control("SH", ["FILTER EXPRESSION"]);
    roff.text([roman(
        "The filter is every word after the options, in tcpdump syntax (see pcap-filter(7)), \
         for example ",
    )]);
    roff.text([bold("port 443 and host 198.18.0.2"), roman(".")]);
    para(
        roff,
        [roman(
            "libpcap compiles the expression, as tcpdump would; on a live interface the kernel \
             runs what it compiled (translated into eBPF, ahead of the counting program), with \
             the same decisions as libpcap, for every expression. A bad expression is a usage \
             error.",
        )],
    );
}

fn output(roff: &mut Roff) {
    roff.control("SH", ["OUTPUT"]);
    roff.text([roman(
        "With --output json each connection is one JSON object on a line, with the fields \
         client, server, state, payload_bytes, bytes, packets, client_payload_bytes, \
         server_payload_bytes, client_bytes, server_bytes, client_packets, server_packets, \
         speed, idle, first_seen, last_seen and time. payload_bytes is TCP payload (what Speed \
         counts), bytes the frames' bytes on the wire, speed payload bytes per second over the \
         last completed averaging window, time when the record was written (the end of a \
         capture; live, the interval).",
    )]);
    para(
        roff,
        [roman(
            "--output csv has the same columns, time last, and one header row: live, every \
             interval's rows follow it, so the stream is one CSV file. --output table is the \
             screen's columns, aligned, for people.",
        )],
    );
}

fn screen(roff: &mut Roff) {
    roff.control("SH", ["SCREEN"]);
    roff.text([roman(
        "A header (Client, Server, State, Idle, A, Speed), one row per connection (an asterisk \
         in A when a packet came in the last second), TOTAL, and a status line: the \
         connections shown and their number, paused or not, the sort, the source, and packets \
         lost when there are any. Keys:",
    )]);
    for (key, what) in [
        ("q", "quit"),
        (
            "p",
            "pause: the list and its order freeze, the values go on; nothing is forgotten \
             while paused",
        ),
        ("s", "sort: unsorted, by rate, by total bytes"),
        (
            "Up, Down",
            "select the row above or below (the list scrolls with it)",
        ),
        ("PgUp, PgDn", "move a page"),
        ("Home, End", "go to the first or last connection"),
        (
            "Enter",
            "the selected connection's details, addresses in full (Esc closes)",
        ),
        ("Ctrl-Z", "suspend, the terminal restored; fg redraws"),
        (
            "?, h",
            "help, with the source and the reason for the libpcap path in full",
        ),
    ] {
        tagged(roff, [bold(key)], what);
    }
    para(
        roff,
        [roman(
            "Speeds have three significant digits, in the classic's 1024-based units (B/s, \
             KB/s, MB/s, GB/s), or in bits per second with -b (kb/s, Mb/s, Gb/s, 1000-based). \
             Every connection is listed at any size from 80x24 up: a long address is cut in the \
             middle, its port kept. With -T the whole file is read and the final table stays up, \
             marked as the end of the capture, until q; it lists every connection the capture \
             had.",
        )],
    );
}

fn privileges(roff: &mut Roff) {
    roff.control("SH", ["PRIVILEGES"]);
    roff.text([roman(
        "Reading capture files needs no privilege. Live capture needs root, or a binary \
         holding file capabilities:",
    )]);
    command(
        roff,
        &format!("sudo setcap {SETCAP_CAPABILITIES} /usr/local/bin/tcptrack"),
    );
    para(
        roff,
        [roman(
            "The kernel path needs CAP_BPF, CAP_PERFMON and CAP_NET_ADMIN (kernel 5.8 and \
             later; CAP_SYS_ADMIN stands for the first two), and CAP_NET_RAW for promiscuous \
             mode: with -p, the first three are enough. libpcap needs CAP_NET_RAW. A missing \
             capability is named in one line.",
        )],
    );
    para(
        roff,
        [roman(
            "Once the capture is open, tcptrack keeps only the capabilities its run still uses \
             (none for capture files, libpcap, or the kernel path on a named interface from \
             Linux 6.6; CAP_BPF and CAP_NET_ADMIN to attach to interfaces that come up with -i \
             any; CAP_NET_ADMIN to take netlink filters off before 6.6; CAP_BPF to read its \
             maps before 6.5; CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH to name other users' \
             processes when it shows or writes them), sets no-new-privileges, runs as the user \
             -Z names (under sudo, the user who ran sudo), and confines itself with Landlock \
             (Linux 5.13 on) unless --no-sandbox is given. The help view (?) says what it \
             kept and how it is confined.",
        )],
    );
}

fn exit_status(roff: &mut Roff) {
    roff.control("SH", ["EXIT STATUS"]);
    for (code, what) in [
        (
            "0",
            "Success; also when ended by SIGINT or SIGTERM (headless live output first writes \
             the interval in progress), or when the reader of the output goes away (a closed \
             pipe).",
        ),
        (
            "1",
            "A runtime error: a capture that cannot be read or is empty, an interface that \
             cannot be captured on or goes away.",
        ),
        (
            "2",
            "Bad usage: an unknown option, a bad value, a bad filter.",
        ),
        (
            "3",
            "The capture file is cut short, or its compressed stream ends early or is damaged; \
             the connections read before the cut are still reported.",
        ),
    ] {
        tagged(roff, [bold(code)], what);
    }
    para(
        roff,
        [roman(
            "Each error is one line on standard error, for example:",
        )],
    );
    command(roff, "tcptrack: cannot read capture x.pcap: no such file");
}

fn examples(roff: &mut Roff) {
    roff.control("SH", ["EXAMPLES"]);
    for (what, line) in [
        ("Watch the connections on eth0:", "tcptrack -i eth0"),
        (
            "Only HTTPS, without connections that started before tcptrack:",
            "tcptrack -d -i eth0 port 443",
        ),
        (
            "Every connection of a capture file, one JSON object each:",
            "tcptrack -T capture.pcap --output json",
        ),
        (
            "Watch a capture at four times its recorded pace:",
            "tcptrack -T capture.pcap --replay=4",
        ),
        (
            "Every connection on all interfaces, as CSV every 10 seconds:",
            "tcptrack -i any --output csv --interval 10 > connections.csv",
        ),
        (
            "Every connection on eth0 as an IPFIX flow record to a collector, nothing on the terminal:",
            "tcptrack -i eth0 --output none --ipfix collector.example:4739",
        ),
    ] {
        para(roff, [roman(what)]);
        command(roff, line);
    }
}

fn see_also(roff: &mut Roff) {
    roff.control("SH", ["SEE ALSO"]);
    roff.text([
        bold("tcpdump"),
        roman("(8), "),
        bold("pcap-filter"),
        roman("(7), "),
        bold("setcap"),
        roman("(8), "),
        bold("capabilities"),
        roman("(7)"),
    ]);
}
