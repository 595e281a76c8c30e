//! The command line: raw flags (clap) in, a validated [`Config`] out.

use std::net::SocketAddr;
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
                  Exit status: 0 success, also when ended by SIGINT or SIGTERM (headless live \
                  output first writes the interval in progress) or when the output's reader goes \
                  away (a closed pipe); 1 runtime error; 2 bad usage; 3 capture file cut short \
                  (what was read before the cut is reported)."
)]
pub struct Args {
    /// Capture live on INTERFACE (`any` for all)
    #[arg(short = 'i', value_name = "INTERFACE", conflicts_with = "file")]
    pub interface: Option<String>,

    /// Read packets from FILE (pcap, nanosecond pcap or pcapng, also gzip or zstd compressed; `-`
    /// for standard input) instead of an interface
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
    #[arg(short = 'r', value_name = "SECONDS", default_value = "2", value_parser = parse_seconds, allow_negative_numbers = true)]
    pub linger: Duration,

    /// Redraw (and headless output) interval [default: 1, or 0.1 with -f]
    #[arg(long, value_name = "SECONDS", value_parser = parse_positive_seconds, allow_negative_numbers = true)]
    pub interval: Option<Duration>,

    /// Speed averaging window [default: 1]
    #[arg(long, value_name = "SECONDS", value_parser = parse_positive_seconds, allow_negative_numbers = true)]
    pub window: Option<Duration>,

    /// Forget ESTABLISHED connections idle for SECONDS (default: keep them while they live)
    #[arg(long, value_name = "SECONDS", value_parser = parse_positive_seconds, allow_negative_numbers = true)]
    pub idle_timeout: Option<Duration>,

    /// Write connections as text instead of drawing the screen: at the end of a capture file, or
    /// at every interval live
    #[arg(long, value_name = "FORMAT")]
    pub output: Option<OutputFormat>,

    /// With -T: play the capture at its recorded pace (times SPEED), to watch it as if live
    #[arg(long, value_name = "SPEED", num_args = 0..=1, default_missing_value = "1", requires = "file", value_parser = parse_speed, allow_negative_numbers = true)]
    pub replay: Option<f64>,

    /// Serve Prometheus metrics (OpenMetrics text) at http://ADDR:PORT/metrics
    #[arg(long, value_name = "ADDR:PORT", value_parser = parse_listen_addr)]
    pub metrics: Option<SocketAddr>,

    /// With --metrics: the busiest N local server ports that get series of their own (the others
    /// share port="other")
    #[arg(long, value_name = "N", default_value = "50", requires = "metrics", value_parser = clap::value_parser!(u16), allow_negative_numbers = true)]
    pub metrics_ports: u16,

    /// The metrics endpoint's web configuration, as Prometheus exporters read it
    /// (exporter-toolkit's `--web.config.file`): TLS (`tls_server_config`: cert_file, key_file,
    /// min_version, max_version, client_auth_type with client_ca_file) and basic
    /// authentication (`basic_auth_users`, bcrypt hashes). Checked at start
    #[arg(
        long = "web-config",
        visible_alias = "web.config.file",
        value_name = "FILE",
        requires = "metrics"
    )]
    pub web_config: Option<PathBuf>,

    /// Write one JSON line per connection into PATH when tcptrack forgets it (closed, reset,
    /// timed out) and, at exit, one per connection still listed; `-` for standard output.
    /// SIGHUP reopens PATH
    #[arg(long, value_name = "PATH")]
    pub flow_log: Option<PathBuf>,

    /// Export every connection as a two-way IPFIX flow record (RFC 7011, RFC 5103) to the
    /// collector at HOST:PORT (nfcapd, pmacct, goflow2, ...), when it ends and, while it lives,
    /// every --ipfix-active-timeout
    #[arg(long, value_name = "HOST:PORT", value_parser = parse_collector)]
    pub ipfix: Option<SocketAddr>,

    /// With --ipfix: send over UDP (the default) or TCP (connected again when it breaks)
    #[arg(long, value_name = "PROTO", default_value = "udp", requires = "ipfix")]
    pub ipfix_transport: crate::ipfix::Transport,

    /// With --ipfix: a connection open longer than SECONDS sends interim records, each with
    /// what it carried since the record before
    #[arg(long, value_name = "SECONDS", default_value = "60", requires = "ipfix", value_parser = parse_positive_seconds, allow_negative_numbers = true)]
    pub ipfix_active_timeout: Duration,

    /// With --ipfix: the messages' observation domain ID
    #[arg(long, value_name = "N", default_value = "0", requires = "ipfix", value_parser = clap::value_parser!(u32), allow_negative_numbers = true)]
    pub ipfix_domain: u32,

    /// With --ipfix: standard information elements only (no RTT, retransmissions or process,
    /// which are tcptrack's own)
    #[arg(long, requires = "ipfix")]
    pub ipfix_standard_only: bool,

    /// Capture live through libpcap instead of counting in the kernel (eBPF)
    #[arg(long)]
    pub libpcap: bool,

    /// Count ingress with XDP instead of TC (TC still counts egress)
    #[arg(long, conflicts_with = "libpcap")]
    pub xdp: bool,

    /// Speeds in bits per second (1000-based: kb/s, Mb/s, Gb/s) instead of bytes per second
    #[arg(short = 'b', long = "bits")]
    pub bits: bool,

    /// The screen's columns after A, first shown (c cycles them): the classic's speed, the speed
    /// each way, the round-trip time and retransmissions, or the process
    #[arg(long, value_name = "SET", default_value = "classic")]
    pub columns: crate::view::Columns,

    /// When the kernel refuses its programs, also write the verifier's log on stderr (it is
    /// kept out of the one-line reason otherwise); headless, also say what privileges tcptrack
    /// kept after setup and how it is confined
    #[arg(long)]
    pub verbose: bool,

    /// Connections with packets in one refresh interval the kernel's flow map holds (a per-CPU
    /// cache in front of it counts more while it has free slots); packets beyond are not
    /// counted (and that is shown)
    #[arg(long, value_name = "N", default_value = "65536", value_parser = clap::value_parser!(u32).range(16..=16_777_216), allow_negative_numbers = true)]
    pub max_connections: u32,

    /// Once the capture is open, run as USER (a name, or a number), as tcpdump's -Z does.
    /// Started as root under sudo, tcptrack runs as the user who ran sudo unless -Z says
    /// otherwise (`-Z root` stays root). Either way it keeps only the capabilities its run
    /// still uses (the help view, ?, names them)
    #[arg(short = 'Z', value_name = "USER")]
    pub user: Option<String>,

    /// Do not confine tcptrack after setup (for debugging; the help view says so). Confined (Landlock, Linux 5.13 on, with the rights the kernel knows of), it
    /// reads only /proc, /sys, /etc and the capture file, writes only in the flow log's folder
    /// and, from Linux 6.7, binds only the metrics port and connects nowhere; a seccomp filter
    /// refuses the system calls it never makes (exec, ptrace, mounts, modules, ...)
    #[arg(long)]
    pub no_sandbox: bool,

    /// Print version
    #[arg(short = 'v', long = "version", action = ArgAction::Version)]
    pub version: Option<bool>,

    /// Filter expression (tcpdump syntax)
    #[arg(value_name = "FILTER", trailing_var_arg = true)]
    pub filter: Vec<String>,
}

/// What tcptrack was started to do.
#[derive(Debug)]
pub enum Invocation {
    /// Its work, as the flags say.
    Run(Box<Args>),
    /// Write the man page or a shell's completions on standard output (`--generate WHAT`).
    Generate(Generate),
}

/// Parses the command line: the flags of [`Args`], and `--generate WHAT` alone, which writes the
/// man page (roff) or a shell's completions on standard output. `cargo xtask dist` and `cargo
/// xtask install` call it (`tcptrack --generate man > tcptrack.1`), so that the page and the
/// completions are made from the very definitions the binary parses. It is hidden from `--help`,
/// and kept out of [`Args`] so that the page and the completions, made from [`Args`], do not
/// offer it.
///
/// # Errors
/// clap's, for bad usage (and for `-h` and `-v`, which clap answers by an "error").
pub fn parse_from<I, T>(args: I) -> Result<Invocation, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    use clap::{CommandFactory as _, FromArgMatches as _};
    let mut cmd = Args::command().arg(
        clap::Arg::new("generate")
            .long("generate")
            .value_name("WHAT")
            .value_parser(clap::value_parser!(Generate))
            .hide(true)
            .exclusive(true),
    );
    let mut matches = cmd.try_get_matches_from_mut(args)?;
    if let Some(what) = matches.remove_one::<Generate>("generate") {
        return Ok(Invocation::Generate(what));
    }
    Args::from_arg_matches_mut(&mut matches)
        .map(|a| Invocation::Run(Box::new(a)))
        .map_err(|e| e.format(&mut cmd))
}

/// What `--generate` writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Generate {
    /// The man page, tcptrack(1), in roff
    Man,
    /// Completions for bash
    Bash,
    /// Completions for zsh
    Zsh,
    /// Completions for fish
    Fish,
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
    /// Nothing (for --metrics or --flow-log alone)
    None,
}

/// Where the flow log goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FlowLogTarget {
    /// Standard output (`--flow-log -`).
    Stdout,
    /// A file, appended to, reopened on SIGHUP.
    File(PathBuf),
}

/// The metrics endpoint, as asked.
#[derive(Clone, Debug)]
pub struct MetricsConfig {
    /// Where to listen.
    pub addr: SocketAddr,
    /// Local server ports with series of their own (`--metrics-ports`).
    pub ports: u16,
    /// TLS and basic authentication (`--web-config`).
    pub web: crate::metrics::Web,
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
    /// Write the verifier's log when the kernel refuses the programs (`--verbose`).
    pub verbose: bool,
    /// How speeds are written (`-b`: bits per second).
    pub units: crate::format::Units,
    /// The screen's columns after A (`--columns`).
    pub columns: crate::view::Columns,
    /// Serve metrics (`--metrics`).
    pub metrics: Option<MetricsConfig>,
    /// Write a flow log (`--flow-log`).
    pub flow_log: Option<FlowLogTarget>,
    /// Export IPFIX (`--ipfix`).
    pub ipfix: Option<crate::ipfix::Config>,
    /// Run as this user once the capture is open (`-Z`).
    pub user: Option<crate::privilege::User>,
    /// No Landlock confinement (`--no-sandbox`).
    pub no_sandbox: bool,
    pub table: TableConfig,
}

/// The flow log `--flow-log` names, and the output beside it (standard output is the flow
/// log's alone when it writes there).
fn flow_log_and_output(
    path: Option<PathBuf>,
    output: Option<OutputFormat>,
) -> Result<(Option<FlowLogTarget>, Option<OutputFormat>), Error> {
    let flow_log = path.map(|p| {
        if p.as_os_str() == "-" {
            FlowLogTarget::Stdout
        } else {
            FlowLogTarget::File(p)
        }
    });
    let output = match (&flow_log, output) {
        (Some(FlowLogTarget::Stdout), None | Some(OutputFormat::None)) => Some(OutputFormat::None),
        (Some(FlowLogTarget::Stdout), Some(_)) => {
            return Err(Error::Usage(
                "--flow-log - writes on standard output: --output can only be none then".into(),
            ))
        }
        (_, output) => output,
    };
    Ok((flow_log, output))
}

/// The metrics endpoint's web configuration (`--web-config`), checked; none without it.
fn web_config(path: Option<&std::path::Path>) -> Result<crate::metrics::Web, Error> {
    path.map_or_else(
        || Ok(crate::metrics::Web::default()),
        |p| {
            crate::metrics::Web::load(p)
                .map_err(|e| Error::Usage(format!("--web-config {}: {e}", p.display())))
        },
    )
}

// The value parsers' messages follow clap's `invalid value '-5' for '-r <SECONDS>': `, and
// [`value_error`] makes that one line.

fn parse_speed(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if (0.001..=1e6).contains(&v) => Ok(v),
        _ => Err("must be a speed factor between 0.001 and 1000000".to_owned()),
    }
}

/// A collector's HOST:PORT, its name looked up now (before tcptrack gives up what a lookup may
/// need): the first address it has.
fn parse_collector(s: &str) -> Result<SocketAddr, String> {
    use std::net::ToSocketAddrs as _;
    let s = s.trim();
    if let Ok(a) = s.parse() {
        return Ok(a);
    }
    let mut addrs = s
        .to_socket_addrs()
        .map_err(|e| format!("must be HOST:PORT, such as 198.18.0.1:4739 ({e})"))?;
    addrs.next().ok_or_else(|| format!("{s} has no address"))
}

/// An address and port to listen on: `127.0.0.1:9100`, `[::1]:9100`, `0.0.0.0:9100`.
fn parse_listen_addr(s: &str) -> Result<SocketAddr, String> {
    s.trim()
        .parse()
        .map_err(|_| "must be ADDR:PORT, such as 127.0.0.1:9100 or [::]:9100".to_owned())
}

/// Seconds, `0` included (`-r 0`: closed connections go at once).
fn parse_seconds(s: &str) -> Result<Duration, String> {
    seconds(s, "must be a positive number of seconds, or 0")
}

fn parse_positive_seconds(s: &str) -> Result<Duration, String> {
    let d = seconds(s, "must be a positive number of seconds")?;
    if d < Duration::from_millis(1) {
        return Err("too short: at least 0.001 seconds".to_owned());
    }
    Ok(d)
}

/// A number of seconds up to 1e9; `negative` says what a negative one is told.
fn seconds(s: &str, negative: &str) -> Result<Duration, String> {
    let v: f64 = s
        .trim()
        .parse()
        .map_err(|_| "not a number of seconds".to_owned())?;
    if v < 0.0 {
        return Err(negative.to_owned());
    }
    if !(0.0..=1e9).contains(&v) {
        return Err("not a number of seconds between 0 and 1e9".to_owned());
    }
    Ok(Duration::from_secs_f64(v))
}

/// A bad option value (`-r -5`, `--interval soon`) as one line for a person:
/// `invalid value '-5' for -r: must be a positive number of seconds, or 0`. `None` for every
/// other error, which clap says its own way (unknown options with their suggestions, help).
#[must_use]
pub fn value_error(e: &clap::Error) -> Option<String> {
    use clap::error::{ContextKind, ErrorKind};
    if e.kind() != ErrorKind::ValueValidation {
        return None;
    }
    let arg = e.get(ContextKind::InvalidArg)?.to_string();
    // `-r <SECONDS>`: the option is enough.
    let arg = arg.split(' ').next().unwrap_or(&arg);
    let value = e.get(ContextKind::InvalidValue)?;
    let why = std::error::Error::source(e)?;
    Some(format!("invalid value '{value}' for {arg}: {why}"))
}

impl Args {
    /// What `--ipfix` and its options ask for.
    fn ipfix_config(&self) -> Option<crate::ipfix::Config> {
        self.ipfix.map(|collector| crate::ipfix::Config {
            collector,
            transport: self.ipfix_transport,
            active_timeout: self.ipfix_active_timeout,
            domain: self.ipfix_domain,
            standard_only: self.ipfix_standard_only,
        })
    }

    /// Checks the flags and makes them a [`Config`].
    ///
    /// # Errors
    /// [`Error::Usage`] when options contradict each other.
    pub fn into_config(self) -> Result<Config, Error> {
        let ipfix = self.ipfix_config();
        let report_ended = self.flow_log.is_some() || ipfix.is_some();
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
        let (flow_log, output) = flow_log_and_output(self.flow_log, self.output)?;
        let web = web_config(self.web_config.as_deref())?;
        let metrics = self.metrics.map(|addr| MetricsConfig {
            addr,
            ports: self.metrics_ports,
            web,
        });
        Ok(Config {
            source,
            filter,
            promiscuous: !self.no_promiscuous,
            interval,
            output,
            replay: self.replay,
            libpcap: self.libpcap,
            xdp: self.xdp,
            max_connections: self.max_connections,
            verbose: self.verbose,
            columns: self.columns,
            units: if self.bits {
                crate::format::Units::Bits
            } else {
                crate::format::Units::Bytes
            },
            metrics,
            user: self
                .user
                .as_deref()
                .map(crate::privilege::User::lookup)
                .transpose()?,
            no_sandbox: self.no_sandbox,
            ipfix,
            table: TableConfig {
                report_ended,
                detect_midstream: !self.no_midstream,
                closed_linger: self.linger,
                idle_timeout: self.idle_timeout,
                rate,
                ..TableConfig::default()
            },
            flow_log,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory as _;

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
    fn negative_values_are_one_line_saying_they_must_be_positive() {
        for (flag, value, why) in [
            ("-r", "-5", "must be a positive number of seconds, or 0"),
            ("--interval", "-1", "must be a positive number of seconds"),
            ("--window", "-1", "must be a positive number of seconds"),
            (
                "--idle-timeout",
                "-0.5",
                "must be a positive number of seconds",
            ),
            ("--interval", "0", "too short: at least 0.001 seconds"),
            ("-r", "soon", "not a number of seconds"),
        ] {
            let e = Args::try_parse_from(["tcptrack", flag, value, "-T", "x.pcap"])
                .expect_err("a bad value");
            assert_eq!(
                value_error(&e).as_deref(),
                Some(format!("invalid value '{value}' for {flag}: {why}").as_str()),
                "{flag} {value}"
            );
        }
        let e = Args::try_parse_from(["tcptrack", "--max-connections", "-5"]).expect_err("bad");
        let line = value_error(&e).expect("a bad value");
        assert!(
            line.starts_with("invalid value '-5' for --max-connections: "),
            "{line}"
        );
        // Other errors are clap's, with their suggestions.
        let e = Args::try_parse_from(["tcptrack", "--intervall", "1"]).expect_err("unknown");
        assert_eq!(value_error(&e), None);
        // 0 stays a valid -r.
        let c = parse(&["-T", "x.pcap", "-r", "0", "port", "80"]).expect("valid");
        assert_eq!(c.table.closed_linger, Duration::ZERO);
    }

    #[test]
    fn generate_is_alone_and_hidden() {
        let parse =
            |args: &[&str]| parse_from(std::iter::once("tcptrack").chain(args.iter().copied()));
        assert!(matches!(
            parse(&["--generate", "man"]),
            Ok(Invocation::Generate(Generate::Man))
        ));
        assert!(matches!(
            parse(&["--generate", "bash"]),
            Ok(Invocation::Generate(Generate::Bash))
        ));
        assert!(parse(&["--generate", "man", "-T", "x.pcap"]).is_err());
        assert!(parse(&["--generate", "powershell"]).is_err());
        // The classic flags and the trailing filter parse as before.
        match parse(&["-dfp", "-r", "3", "-i", "eth0", "port", "80"]) {
            Ok(Invocation::Run(args)) => {
                assert!(args.no_midstream && args.fast && args.no_promiscuous);
                assert_eq!(args.filter, ["port", "80"]);
            }
            other => panic!("{other:?}"),
        }
        // A filter word that looks like the option is a filter word.
        match parse(&["-T", "x.pcap", "port", "80", "--generate"]) {
            Ok(Invocation::Run(args)) => assert_eq!(args.filter, ["port", "80", "--generate"]),
            other => panic!("{other:?}"),
        }
        let help = Args::command().render_long_help().to_string();
        assert!(!help.contains("generate"), "{help}");
    }

    #[test]
    fn metrics_and_flow_log_options() {
        let c = parse(&["--metrics", "127.0.0.1:9100", "--flow-log", "f.jsonl"]).expect("valid");
        let m = c.metrics.expect("metrics");
        assert_eq!(
            (m.addr, m.ports),
            ("127.0.0.1:9100".parse().expect("addr"), 50)
        );
        assert!(m.web.tls.is_none() && m.web.users.is_none());
        assert_eq!(c.flow_log, Some(FlowLogTarget::File("f.jsonl".into())));
        assert!(c.table.report_ended);
        assert_eq!(c.output, None);
        let c = parse(&["--metrics", "[::1]:9100", "--metrics-ports", "3"]).expect("valid");
        assert_eq!(c.metrics.map(|m| m.ports), Some(3));
        assert!(!c.table.report_ended);
        // The flow log on standard output leaves no room for other output.
        let c = parse(&["--flow-log", "-"]).expect("valid");
        assert_eq!(c.flow_log, Some(FlowLogTarget::Stdout));
        assert_eq!(c.output, Some(OutputFormat::None));
        assert!(parse(&["--flow-log", "-", "--output", "json"]).is_err());
        assert!(parse(&["--flow-log", "-", "--output", "none"]).is_ok());
        assert!(parse(&["--metrics-ports", "3"]).is_err(), "needs --metrics");
        let e = Args::try_parse_from(["tcptrack", "--metrics", "9100"]).expect_err("bad");
        assert_eq!(
            value_error(&e).as_deref(),
            Some("invalid value '9100' for --metrics: must be ADDR:PORT, such as 127.0.0.1:9100 or [::]:9100")
        );
        let c = parse(&["--output", "none"]).expect("valid");
        assert_eq!(c.output, Some(OutputFormat::None));
    }

    #[test]
    fn window_and_interval_are_options() {
        let c = parse(&["--window", "5", "--interval", "0.5"]).expect("valid");
        assert_eq!(c.table.rate.window(), Duration::from_secs(5));
        assert_eq!(c.interval, Duration::from_millis(500));
    }
}
