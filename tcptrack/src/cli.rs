//! The command line: raw flags (clap) in, a validated [`Config`] out.

use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgAction, Parser, ValueEnum};

use crate::error::Error;
use crate::rate::RateConfig;
use crate::table::TableConfig;

/// Flags as typed. Classic flags keep their classic meaning.
#[derive(Parser, Debug)]
#[command(
    name = "tcptrack",
    version,
    about = "Show TCP connections on an interface or in a capture file, with their state, idle time and speed",
    disable_version_flag = true,
    override_usage = "tcptrack [-dfhvp] [-r seconds] [-i interface | -T file] [options] [filter expression]",
    after_help = "The filter expression is every remaining word, in tcpdump syntax (see pcap-filter(7)).\n\
                  Without -i or -T, tcptrack monitors the default interface, as tcpdump does.\n\n\
                  Exit status: 0 success; 1 runtime error; 2 bad usage; 3 capture file cut short \
                  (what was read before the cut is reported)."
)]
pub struct Args {
    /// Capture live on INTERFACE (`any` for all)
    #[arg(short = 'i', value_name = "INTERFACE", conflicts_with = "file")]
    pub interface: Option<String>,

    /// Read packets from FILE (pcap, nanosecond pcap or pcapng) instead of an interface
    #[arg(short = 'T', value_name = "FILE")]
    pub file: Option<PathBuf>,

    /// Do not pick up connections that started before tcptrack did
    #[arg(short = 'd')]
    pub no_midstream: bool,

    /// Fast averaging: speed over a 1 s window sliding in tenths of a second, redrawn 10 times a second
    #[arg(short = 'f')]
    pub fast: bool,

    /// Do not put the interface into promiscuous mode
    #[arg(short = 'p')]
    pub no_promiscuous: bool,

    /// Keep closed and reset connections listed SECONDS after their last packet
    #[arg(short = 'r', value_name = "SECONDS", default_value = "2", value_parser = parse_seconds)]
    pub linger: Duration,

    /// Redraw (and headless output) interval [default: 1, or 0.1 with -f]
    #[arg(long, value_name = "SECONDS", value_parser = parse_positive_seconds)]
    pub interval: Option<Duration>,

    /// Speed averaging window [default: 1]
    #[arg(long, value_name = "SECONDS", value_parser = parse_positive_seconds)]
    pub window: Option<Duration>,

    /// Forget ESTABLISHED connections idle for SECONDS (default: keep them while they live)
    #[arg(long, value_name = "SECONDS", value_parser = parse_positive_seconds)]
    pub idle_timeout: Option<Duration>,

    /// Write connections as text instead of drawing the screen: at the end of a capture file, or
    /// at every interval live
    #[arg(long, value_name = "FORMAT")]
    pub output: Option<OutputFormat>,

    /// With -T: play the capture at its recorded pace (times SPEED), to watch it as if live
    #[arg(long, value_name = "SPEED", num_args = 0..=1, default_missing_value = "1", requires = "file", value_parser = parse_speed)]
    pub replay: Option<f64>,

    /// Capture live through libpcap instead of counting in the kernel (eBPF)
    #[arg(long)]
    pub libpcap: bool,

    /// Count ingress with XDP instead of TC (TC still counts egress)
    #[arg(long, conflicts_with = "libpcap")]
    pub xdp: bool,

    /// Connections the kernel's flow map holds; beyond, the least recently seen are evicted
    /// (and counted)
    #[arg(long, value_name = "N", default_value = "65536", value_parser = clap::value_parser!(u32).range(16..=16_777_216))]
    pub max_connections: u32,

    /// Print version
    #[arg(short = 'v', long = "version", action = ArgAction::Version)]
    pub version: Option<bool>,

    /// Filter expression (tcpdump syntax)
    #[arg(value_name = "FILTER", trailing_var_arg = true)]
    pub filter: Vec<String>,
}

/// Machine-readable (or plain) outputs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// Aligned columns, as on screen, for people
    Table,
    /// One JSON object per connection per line
    Json,
    /// Comma-separated values with a header row
    Csv,
}

/// Where packets come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// A capture file (`-T`).
    File(PathBuf),
    /// A named interface (`-i`).
    Interface(String),
    /// The interface libpcap picks by default (no `-i`, no `-T`).
    DefaultInterface,
}

/// Everything tcptrack was asked to do, checked.
#[derive(Clone, Debug)]
pub struct Config {
    pub source: Source,
    pub filter: Option<String>,
    pub promiscuous: bool,
    pub interval: Duration,
    pub output: Option<OutputFormat>,
    /// Play a capture file at its pace, times this factor (`--replay`).
    pub replay: Option<f64>,
    /// Live capture through libpcap, not the kernel (`--libpcap`).
    pub libpcap: bool,
    /// Ingress through XDP (`--xdp`).
    pub xdp: bool,
    /// Size of the kernel's flow map (`--max-connections`).
    pub max_connections: u32,
    pub table: TableConfig,
}

fn parse_speed(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if (0.001..=1e6).contains(&v) => Ok(v),
        _ => Err(format!(
            "`{s}` is not a speed factor between 0.001 and 1000000"
        )),
    }
}

fn parse_seconds(s: &str) -> Result<Duration, String> {
    let v: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("`{s}` is not a number of seconds"))?;
    if !(0.0..=1e9).contains(&v) {
        return Err(format!(
            "`{s}` is not a number of seconds between 0 and 1e9"
        ));
    }
    Ok(Duration::from_secs_f64(v))
}

fn parse_positive_seconds(s: &str) -> Result<Duration, String> {
    let d = parse_seconds(s)?;
    if d < Duration::from_millis(1) {
        return Err(format!("`{s}` is too short: at least 0.001 seconds"));
    }
    Ok(d)
}

impl Args {
    /// Checks the flags and makes them a [`Config`].
    ///
    /// # Errors
    /// [`Error::Usage`] when options contradict each other.
    pub fn into_config(self) -> Result<Config, Error> {
        let source = match (self.file, self.interface) {
            (Some(f), None) => Source::File(f),
            (None, Some(i)) => Source::Interface(i),
            (None, None) => Source::DefaultInterface,
            (Some(_), Some(_)) => {
                return Err(Error::Usage("-i and -T cannot be used together".into()))
            }
        };
        let step = if self.fast {
            Duration::from_millis(100)
        } else {
            Duration::from_secs(1)
        };
        let interval = self.interval.unwrap_or(step);
        let rate = match (self.window, self.fast) {
            (None, false) => RateConfig::CLASSIC,
            (None, true) => RateConfig::FAST,
            (Some(w), _) => RateConfig::new(w, interval.min(step))
                .ok_or_else(|| Error::Usage(format!("bad averaging window {w:?}")))?,
        };
        let filter = self.filter.join(" ");
        let filter = (!filter.trim().is_empty()).then_some(filter);
        Ok(Config {
            source,
            filter,
            promiscuous: !self.no_promiscuous,
            interval,
            output: self.output,
            replay: self.replay,
            libpcap: self.libpcap,
            xdp: self.xdp,
            max_connections: self.max_connections,
            table: TableConfig {
                detect_midstream: !self.no_midstream,
                closed_linger: self.linger,
                idle_timeout: self.idle_timeout,
                rate,
                ..TableConfig::default()
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Config, String> {
        let mut v = vec!["tcptrack"];
        v.extend_from_slice(args);
        Args::try_parse_from(v)
            .map_err(|e| e.to_string())
            .and_then(|a| a.into_config().map_err(|e| e.to_string()))
    }

    #[test]
    fn classic_flags_keep_their_meaning() {
        let c = parse(&["-d", "-f", "-p", "-r", "7", "-i", "eth0", "port", "80"]).expect("valid");
        assert_eq!(c.source, Source::Interface("eth0".into()));
        assert!(!c.table.detect_midstream);
        assert!(!c.promiscuous);
        assert_eq!(c.table.closed_linger, Duration::from_secs(7));
        assert_eq!(c.table.rate, RateConfig::FAST);
        assert_eq!(c.interval, Duration::from_millis(100));
        assert_eq!(c.filter.as_deref(), Some("port 80"));
    }

    #[test]
    fn combined_short_flags_and_defaults() {
        let c = parse(&["-dp", "-T", "x.pcap"]).expect("valid");
        assert_eq!(c.source, Source::File("x.pcap".into()));
        assert!(!c.table.detect_midstream && !c.promiscuous);
        assert_eq!(c.table.closed_linger, Duration::from_secs(2));
        assert_eq!(c.interval, Duration::from_secs(1));
        assert_eq!(c.table.rate, RateConfig::CLASSIC);
        assert_eq!(c.filter, None);
        let c = parse(&[]).expect("valid");
        assert_eq!(c.source, Source::DefaultInterface);
    }

    #[test]
    fn bad_options_and_values_are_errors() {
        assert!(parse(&["-x"]).is_err());
        assert!(parse(&["--bogus"]).is_err());
        assert!(parse(&["-r", "soon"]).is_err());
        assert!(parse(&["-r", "-1"]).is_err());
        assert!(parse(&["-r", "NaN"]).is_err());
        assert!(parse(&["--interval", "0"]).is_err());
        assert!(parse(&["-i", "eth0", "-T", "f.pcap"]).is_err());
        assert!(parse(&["--output", "xml"]).is_err());
    }

    #[test]
    fn window_and_interval_are_options() {
        let c = parse(&["--window", "5", "--interval", "0.5"]).expect("valid");
        assert_eq!(c.table.rate.window(), Duration::from_secs(5));
        assert_eq!(c.interval, Duration::from_millis(500));
    }
}
