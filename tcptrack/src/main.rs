use std::io::Write as _;

use tcptrack::cli::{self, Invocation};

fn main() {
    let args =
        cli::parse_from(std::env::args_os()).unwrap_or_else(|e| match cli::value_error(&e) {
            // A bad value in one line; everything else (help, version, unknown options) as clap says.
            Some(line) => {
                eprintln!("tcptrack: {line}");
                std::process::exit(2);
            }
            None => e.exit(),
        });
    let args = match args {
        Invocation::Run(args) => args,
        Invocation::Generate(what) => return generate(what),
    };
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

/// `--generate WHAT`: the man page or a shell's completions on standard output.
fn generate(what: cli::Generate) {
    let mut out = std::io::stdout().lock();
    match tcptrack::docs::write(what, &mut out).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            eprintln!("tcptrack: {}", tcptrack::error::Error::Output(e));
            std::process::exit(1);
        }
        _ => {}
    }
}
