//! The fuzz targets (`fuzz/`, cargo-fuzz on the nightly toolchain): each run for a fixed time,
//! and their seed corpora, made from the suite's own captures and filters.

use std::fs;
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use tcptrack_tests::capture::{gzip, zstd};
use tcptrack_tests::{CaptureSpec, Format, Link, Packet, Session, Side};

use crate::{root, sh, step};

/// Every fuzz target, as `fuzz/Cargo.toml` names them.
pub const TARGETS: [&str; 3] = ["decode", "capture", "filter"];

/// Runs each target of `only` (every target when empty) for `seconds`, from its seeds and the
/// corpus earlier runs left (`fuzz/corpus/`, not committed). Fails when a target finds a crash
/// (libFuzzer then leaves the input in `fuzz/artifacts/TARGET/`).
pub fn run(seconds: u32, only: &[String]) -> Result<()> {
    for t in only {
        if !TARGETS.contains(&t.as_str()) {
            bail!("no fuzz target `{t}` (there are {})", TARGETS.join(", "));
        }
    }
    step("building the fuzz targets (cargo +nightly fuzz build)");
    sh("cargo", &["+nightly", "fuzz", "build"])?;
    for target in TARGETS {
        if !only.is_empty() && !only.iter().any(|t| t == target) {
            continue;
        }
        step(&format!("fuzzing {target} for {seconds} s"));
        let corpus = format!("fuzz/corpus/{target}");
        fs::create_dir_all(root().join(&corpus))
            .with_context(|| format!("cannot create {corpus}"))?;
        let seeds = format!("fuzz/seeds/{target}");
        let time = format!("-max_total_time={seconds}");
        let mut args = vec![
            "+nightly",
            "fuzz",
            "run",
            target,
            &corpus,
            &seeds,
            "--",
            &time,
            "-print_final_stats=1",
        ];
        let dict = format!("-dict=fuzz/{target}.dict");
        if root().join(format!("fuzz/{target}.dict")).is_file() {
            args.push(&dict);
        }
        sh("cargo", &args)?;
    }
    Ok(())
}

/// The packets of a short connection over `link`: handshake, data both ways, a close; IPv4
/// (with options) and IPv6 (with extension headers) where the link carries them.
fn packets(link: Link) -> Vec<Packet> {
    let mut v4 = Session::new("198.18.0.1:40000", "198.18.0.2:443");
    v4.step(Duration::from_micros(1_234))
        .handshake()
        .data(Side::Client, 40)
        .ipv4_options(&[1, 1, 1, 0])
        .data(Side::Server, 90)
        .close(Side::Client);
    let mut v6 = Session::new("[fd00::1]:40001", "[fd00::2]:80");
    v6.step(Duration::from_nanos(1_000_777))
        .handshake()
        .ipv6_extensions(Some(&[1, 4, 0, 0, 0, 0]), None)
        .data(Side::Server, 30)
        .rst(Side::Client);
    let mut all = Vec::new();
    if link.carries(false) {
        all.extend(v4.packets(link));
    }
    if link.carries(true) {
        all.extend(v6.packets(link));
    }
    all.sort_by_key(|p| p.ts);
    all
}

const LINKS: [Link; 10] = [
    Link::Ethernet,
    Link::Vlan(7),
    Link::QinQ(10, 20),
    Link::Sll,
    Link::Sll2,
    Link::Raw,
    Link::RawIpv4,
    Link::RawIpv6,
    Link::Null { ipv6_family: 10 },
    Link::Loop,
];

/// A file name's part for `link`.
const fn link_name(link: Link) -> &'static str {
    match link {
        Link::Ethernet => "ethernet",
        Link::Vlan(_) => "vlan",
        Link::QinQ(..) => "qinq",
        Link::Sll => "sll",
        Link::Sll2 => "sll2",
        Link::Raw => "raw",
        Link::RawIpv4 => "ipv4",
        Link::RawIpv6 => "ipv6",
        Link::Null { .. } => "null",
        Link::Loop => "loop",
    }
}

/// The decode target's input: the link type's index in the target's list, a byte added to the
/// frame's length for its wire length, the frame.
fn decode_seed(link: Link, extra: u8, frame: &[u8]) -> Vec<u8> {
    let index = match link.linktype() {
        1 => 0,
        113 => 1,
        276 => 2,
        0 | 108 => 4,
        _ => 3,
    };
    let mut seed = vec![index, extra];
    seed.extend_from_slice(frame);
    seed
}

/// Every file of `dir` (made anew).
fn fresh(dir: &Path) -> Result<()> {
    if dir.exists() {
        fs::remove_dir_all(dir).with_context(|| format!("cannot empty {}", dir.display()))?;
    }
    fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> Result<()> {
    let path = dir.join(name);
    fs::write(&path, bytes).with_context(|| format!("cannot write {}", path.display()))
}

/// Capture files: every format in both byte orders on Ethernet, every other link type in one
/// format and byte order each (in turn), snapshot lengths whole and cut, and two pcapng sections
/// of different byte orders and link types in one file.
fn capture_seeds(dir: &Path) -> Result<()> {
    fresh(dir)?;
    for format in Format::ALL {
        for big_endian in [false, true] {
            let mut spec = CaptureSpec::new(format, 1);
            if big_endian {
                spec = spec.big_endian();
            }
            let name = format!(
                "{format:?}-{}-ethernet",
                if big_endian { "be" } else { "le" }
            );
            write(
                dir,
                &name.to_lowercase(),
                &spec.write(&packets(Link::Ethernet)).bytes,
            )?;
        }
    }
    for (i, link) in LINKS.iter().copied().enumerate().skip(1) {
        let format = Format::ALL[i % Format::ALL.len()];
        let mut spec = CaptureSpec::new(format, link.linktype());
        if i % 2 == 1 {
            spec = spec.big_endian();
        }
        if i % 3 == 0 {
            spec = spec.snaplen(64);
        }
        let name = format!("{format:?}-{}", link_name(link)).to_lowercase();
        write(dir, &name, &spec.write(&packets(link)).bytes)?;
    }
    let mut two = CaptureSpec::new(Format::PcapNg, Link::Sll2.linktype())
        .write(&packets(Link::Sll2))
        .bytes;
    two.extend(
        CaptureSpec::new(Format::PcapNgNano, Link::Raw.linktype())
            .big_endian()
            .write(&packets(Link::Raw))
            .bytes,
    );
    write(dir, "pcapng-two-sections", &two)?;
    // Compressed captures: gzip (two members) and zstd, whole.
    let pcap = CaptureSpec::new(Format::Pcap, Link::Ethernet.linktype())
        .write(&packets(Link::Ethernet))
        .bytes;
    let (a, b) = pcap.split_at(pcap.len() / 2);
    write(dir, "gzip-two-members", &[gzip(a), gzip(b)].concat())?;
    let pcapng = CaptureSpec::new(Format::PcapNg, Link::Ethernet.linktype())
        .write(&packets(Link::Ethernet))
        .bytes;
    write(dir, "zstd-pcapng", &zstd(&pcapng))?;
    // Every input a fuzzer found failing, kept by name (`fuzz/regressions/capture/`).
    let regressions = root().join("fuzz/regressions/capture");
    for entry in fs::read_dir(&regressions)
        .with_context(|| format!("cannot read {}", regressions.display()))?
    {
        let path = entry?.path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .context("a file name")?;
        let bytes = fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
        write(dir, name, &bytes)?;
    }
    Ok(())
}

/// Frames of every link type: each packet of a short connection, and each cut to 60 bytes.
fn decode_seeds(dir: &Path) -> Result<()> {
    fresh(dir)?;
    for link in LINKS {
        for (i, p) in packets(link).iter().enumerate().step_by(3) {
            let name = link_name(link);
            write(dir, &format!("{name}-{i}"), &decode_seed(link, 0, &p.data))?;
            if p.data.len() > 60 {
                let cut = u8::try_from(p.data.len() - 60).unwrap_or(u8::MAX);
                let seed = decode_seed(link, cut, &p.data[..60]);
                write(dir, &format!("{name}-{i}-cut"), &seed)?;
            }
        }
    }
    Ok(())
}

/// Filter expressions: those the kernel test ran before every filter ran in the kernel, and a
/// few that were outside its subset then.
const FILTERS: &[&str] = &[
    "port 80",
    "src port 80",
    "dst port 443",
    "portrange 1000-5000",
    "src portrange 1-1024",
    "host 198.18.0.1",
    "src host 198.18.0.2",
    "dst host fd00::2",
    "net 198.18.0.0/24",
    "dst net 198.19.0.0/16",
    "net fd00::/64",
    "ip",
    "ip6",
    "tcp",
    "not port 22",
    "! tcp",
    "port 80 or 443",
    "port 80 and host 198.18.0.1",
    "(port 80 or port 22) and not src host 198.18.0.2",
    "ip6 and dst port 443",
    "src net 198.18.0.0/16 and dst portrange 40000-50000 or host fd00:1::9",
    "not (ip and (src port 5000 or dst port 5000))",
    "src port 22 or (dst port 80) or 443",
    "tcp[13] & 2 != 0",
    "port http",
    "src or dst port 80",
];

fn filter_seeds(dir: &Path) -> Result<()> {
    fresh(dir)?;
    for (i, f) in FILTERS.iter().enumerate() {
        write(dir, &format!("filter-{i:02}"), f.as_bytes())?;
    }
    Ok(())
}

/// Writes every target's seed corpus into `fuzz/seeds/` (each folder made anew).
pub fn write_seeds() -> Result<()> {
    let seeds = root().join("fuzz/seeds");
    capture_seeds(&seeds.join("capture"))?;
    decode_seeds(&seeds.join("decode"))?;
    filter_seeds(&seeds.join("filter"))?;
    step(&format!("seed corpora written to {}", seeds.display()));
    Ok(())
}
