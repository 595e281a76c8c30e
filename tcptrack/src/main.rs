use clap::Parser;

use tcptrack::cli::{self, Args};

fn main() {
    let args = Args::try_parse().unwrap_or_else(|e| match cli::value_error(&e) {
        // A bad value in one line; everything else (help, version, unknown options) as clap says.
        Some(line) => {
            eprintln!("tcptrack: {line}");
            std::process::exit(2);
        }
        None => e.exit(),
    });
    let result = args.into_config().and_then(|cfg| {
        let stdout = std::io::stdout();
        let mut out = std::io::BufWriter::new(stdout.lock());
        tcptrack::app::run(&cfg, &mut out)
    });
    match result {
        // The reader of the output went away (`| head -1`): done, as other tools are.
        Err(e) if e.is_broken_pipe() => {}
        Err(e) => {
            eprintln!("tcptrack: {e}");
            std::process::exit(e.exit_code());
        }
        Ok(()) => {}
    }
}
