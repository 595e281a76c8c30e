use clap::Parser;

use tcptrack::cli::Args;

fn main() {
    let args = Args::parse();
    let result = args.into_config().and_then(|cfg| {
        let stdout = std::io::stdout();
        let mut out = std::io::BufWriter::new(stdout.lock());
        tcptrack::app::run(&cfg, &mut out)
    });
    if let Err(e) = result {
        eprintln!("tcptrack: {e}");
        std::process::exit(e.exit_code());
    }
}
