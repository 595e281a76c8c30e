//! The man page and the shell completions that `tcptrack --generate` writes (and `cargo xtask
//! dist` installs): the page is roff that groff renders without a warning and names every option
//! of `--help`; each shell's completions load in that shell and offer the options and the values
//! of `--output`.

use std::collections::BTreeSet;
use std::process::{Command, Output as ProcessOutput};

use tcptrack_tests::capture::temp_file;
use tcptrack_tests::{tcptrack, Output};

/// `tcptrack --generate what`, which must succeed quietly.
#[track_caller]
fn generated(what: &str) -> String {
    let out: Output = tcptrack(["--generate", what]);
    assert_eq!(out.code, Some(0), "--generate {what}: {out:?}");
    assert_eq!(out.stderr, "", "--generate {what}");
    assert!(!out.stdout.is_empty(), "--generate {what} wrote nothing");
    out.stdout
}

/// Runs `program args`, which must be installed (`cargo xtask setup --tests` installs it).
#[track_caller]
fn run(program: &str, args: &[&str]) -> ProcessOutput {
    Command::new(program)
        .args(args)
        .env("LC_ALL", "C.UTF-8")
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program} ({e}): `cargo xtask setup --tests`"))
}

/// The man page as groff renders it for a terminal: no hyphenation, long lines, no bold or
/// underline, every kind of hyphen and minus made `-`. Asserts that groff warned of nothing.
fn rendered_man_page() -> String {
    let page = temp_file(generated("man").as_bytes());
    let path = page.path().to_str().expect("utf-8 path");
    let out = run(
        "groff",
        &[
            "-man",
            "-Tutf8",
            "-ww",
            "-rHY=0",
            "-rLL=250n",
            "-P-cbou",
            path,
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "groff failed: {stderr}");
    assert_eq!(stderr, "", "groff warned");
    String::from_utf8_lossy(&out.stdout).replace(['\u{2212}', '\u{2010}'], "-")
}

/// The options `--help` lists: the words starting with `-` at the start of its option lines.
fn help_options() -> BTreeSet<String> {
    let out = tcptrack(["--help"]);
    assert_eq!(out.code, Some(0), "{out:?}");
    let options: BTreeSet<String> = out
        .stdout
        .lines()
        .filter(|l| l.trim_start().starts_with('-'))
        .flat_map(|l| {
            l.split([' ', ','])
                .filter(|w| w.starts_with('-') && w.len() > 1)
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .collect();
    // Sanity: the parse found the classic flags and the long options.
    for classic in ["-d", "-f", "-h", "-v", "-p", "-r", "-i", "-T", "--output"] {
        assert!(options.contains(classic), "{classic} in {options:?}");
    }
    options
}

#[test]
fn man_page_renders_without_warnings_with_its_sections() {
    let text = rendered_man_page();
    for section in [
        "NAME",
        "SYNOPSIS",
        "DESCRIPTION",
        "OPTIONS",
        "FILTER EXPRESSION",
        "OUTPUT",
        "SCREEN",
        "PRIVILEGES",
        "EXIT STATUS",
        "EXAMPLES",
        "SEE ALSO",
    ] {
        assert!(
            text.lines().any(|l| l == section),
            "section {section} missing:\n{text}"
        );
    }
    assert!(text.starts_with("TCPTRACK(1)"), "{text}");
    assert!(text.contains("User Commands"), "{text}");
    assert!(
        text.contains(
            "tcptrack [-dfhvp] [-r seconds] [-i interface | -T file] [options] [filter expression]"
        ),
        "the classic synopsis: {text}"
    );
    assert!(text.contains("tcptrack -T capture.pcap --output json"));
    // The capabilities as README says them.
    let readme = include_str!("../../README.md");
    let setcap = readme
        .lines()
        .find(|l| l.contains("sudo setcap"))
        .expect("README's setcap line")
        .trim();
    assert!(text.contains(setcap), "{setcap}: {text}");
    // The exit statuses, each with its meaning.
    let exit = &text[text.find("EXIT STATUS").expect("section")..];
    for (code, word) in [
        ("0", "Success"),
        ("1", "runtime error"),
        ("2", "Bad usage"),
        ("3", "cut short"),
    ] {
        assert!(
            exit.lines()
                .any(|l| l.trim_start().starts_with(&format!("{code} ")) && l.contains(word)),
            "exit status {code}: {exit}"
        );
    }
    // The hidden option is nobody's business.
    assert!(!text.contains("--generate"), "{text}");
}

#[test]
fn every_option_of_help_is_in_the_man_page() {
    let text = rendered_man_page();
    let options_section = &text[text.find("\nOPTIONS\n").expect("OPTIONS")
        ..text
            .find("\nFILTER EXPRESSION\n")
            .expect("FILTER EXPRESSION")];
    let documented: BTreeSet<&str> = options_section
        .lines()
        .filter(|l| l.trim_start().starts_with('-'))
        .flat_map(|l| l.split([' ', ',']))
        .filter(|w| w.starts_with('-') && w.len() > 1)
        .collect();
    let help = help_options();
    let missing: Vec<_> = help
        .iter()
        .filter(|o| !documented.contains(o.as_str()))
        .collect();
    assert!(missing.is_empty(), "not in the man page: {missing:?}");
    let extra: Vec<_> = documented.iter().filter(|o| !help.contains(**o)).collect();
    assert!(
        extra.is_empty(),
        "in the man page, not in --help: {extra:?}"
    );
}

/// `_tcptrack`'s answer to the command line `words` (the last one being completed), in bash.
fn bash_completes(script: &str, words: &[&str]) -> Vec<String> {
    let file = temp_file(script.as_bytes());
    let quoted: Vec<String> = words.iter().map(|w| format!("'{w}'")).collect();
    let cword = words.len() - 1;
    let prev = if cword > 0 { words[cword - 1] } else { "" };
    let program = format!(
        "source '{}' || exit 9\n\
         complete -p tcptrack | grep -q -- '-F _tcptrack' || exit 8\n\
         COMP_WORDS=({})\nCOMP_CWORD={cword}\n\
         _tcptrack tcptrack '{}' '{prev}'\n\
         printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        file.path().display(),
        quoted.join(" "),
        words[cword],
    );
    let out = run("bash", &["--norc", "--noprofile", "-c", &program]);
    assert!(
        out.status.success(),
        "bash: {:?} {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn bash_completes_options_and_output_formats() {
    let script = generated("bash");
    assert_eq!(
        bash_completes(&script, &["tcptrack", "--out"]),
        ["--output"]
    );
    assert_eq!(
        bash_completes(&script, &["tcptrack", "--output", ""]),
        ["table", "json", "csv", "none"]
    );
    assert_eq!(
        bash_completes(&script, &["tcptrack", "--output", "j"]),
        ["json"]
    );
    let all = bash_completes(&script, &["tcptrack", "-"]);
    for option in help_options() {
        assert!(all.contains(&option), "{option} not offered: {all:?}");
    }
    assert!(!all.iter().any(|o| o == "--generate"), "{all:?}");
}

#[test]
fn fish_completes_options_and_output_formats() {
    let file = temp_file(generated("fish").as_bytes());
    let complete = |line: &str| {
        let program = format!(
            "source '{}'; or exit 9; complete -C '{line}'",
            file.path().display()
        );
        let out = run("fish", &["--no-config", "-c", &program]);
        assert!(out.status.success(), "fish: {out:?}");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| l.split('\t').next().unwrap_or(l).to_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(complete("tcptrack --outp"), ["--output"]);
    assert_eq!(
        complete("tcptrack --output "),
        ["csv", "json", "none", "table"]
    );
}

#[test]
fn zsh_completion_is_valid_zsh_offering_the_options() {
    let script = generated("zsh");
    assert!(script.starts_with("#compdef tcptrack\n"), "{script}");
    let file = temp_file(script.as_bytes());
    let out = run("zsh", &["-n", file.path().to_str().expect("utf-8 path")]);
    assert!(
        out.status.success(),
        "zsh -n: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Each option's spec: `'-d[...]`, `'-r+[...]` (a value), `'--interval=[...]`.
    for option in help_options() {
        assert!(
            ["[", "+[", "=["]
                .iter()
                .any(|end| script.contains(&format!("{option}{end}"))),
            "{option} not offered"
        );
    }
    assert!(script.contains("table\\:") && script.contains("csv\\:"));
    assert!(!script.contains("--generate"));
}

#[test]
fn generate_wants_to_be_alone() {
    let out = tcptrack(["--generate", "man", "-T", "x.pcap"]);
    assert_eq!(out.code, Some(2), "{out:?}");
    let out = tcptrack(["--generate", "nonsense"]);
    assert_eq!(out.code, Some(2), "{out:?}");
}
