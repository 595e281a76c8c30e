//! `cargo xtask dist` and `cargo xtask install`: the release binary with its man page and shell
//! completions. The binary writes those itself (`tcptrack --generate man|bash|zsh|fish`, from
//! the definitions it parses), so they say what its `--help` says.

use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context as _, Result};

use crate::{build_release, root, setup, step};

/// The capabilities live capture needs, as `setcap` takes them (README, "Without root").
pub const SETCAP_CAPABILITIES: &str = "cap_bpf,cap_perfmon,cap_net_admin,cap_net_raw+ep";

/// One file of the distribution.
struct Artifact {
    /// Its name in `target/dist/`.
    name: &'static str,
    /// What `tcptrack --generate` writes for it; `None`: the binary itself.
    generate: Option<&'static str>,
    /// Where it is installed, under the prefix.
    installed: &'static str,
    mode: u32,
}

const ARTIFACTS: [Artifact; 5] = [
    Artifact {
        name: "tcptrack",
        generate: None,
        installed: "bin/tcptrack",
        mode: 0o755,
    },
    Artifact {
        name: "tcptrack.1",
        generate: Some("man"),
        installed: "share/man/man1/tcptrack.1",
        mode: 0o644,
    },
    Artifact {
        name: "tcptrack.bash",
        generate: Some("bash"),
        installed: "share/bash-completion/completions/tcptrack",
        mode: 0o644,
    },
    Artifact {
        name: "_tcptrack",
        generate: Some("zsh"),
        installed: "share/zsh/site-functions/_tcptrack",
        mode: 0o644,
    },
    Artifact {
        name: "tcptrack.fish",
        generate: Some("fish"),
        installed: "share/fish/vendor_completions.d/tcptrack.fish",
        mode: 0o644,
    },
];

/// Builds tcptrack (release) and writes `target/dist/`: the binary, `tcptrack.1`, and the
/// completions for bash, zsh and fish. Returns the folder.
///
/// # Errors
/// The build fails, or a file cannot be made.
pub fn dist() -> Result<PathBuf> {
    let bin = build_release()?;
    let out = root().join("target/dist");
    assemble(&bin, &out)?;
    step(&format!(
        "{} holds tcptrack, its man page and completions",
        out.display()
    ));
    Ok(out)
}

/// Installs what [`dist`] makes under `prefix`, saying each file, and with `setcap` gives the
/// installed binary the capabilities live capture needs.
///
/// # Errors
/// The build fails, a file cannot be written (the prefix is not the user's: root's job), or
/// setcap fails.
pub fn install(prefix: &Path, setcap: bool) -> Result<()> {
    let dist = dist()?;
    place(&dist, prefix)?;
    let bin = prefix.join("bin/tcptrack");
    let bin_text = bin.to_str().context("the prefix is not UTF-8")?;
    if setcap {
        setup::debian_packages(&["libcap2-bin"])?;
        step(&format!(
            "giving {bin_text} the capabilities of live capture"
        ));
        setup::privileged(&["setcap", SETCAP_CAPABILITIES, bin_text])?;
    } else {
        step(&format!(
            "live capture needs root, or file capabilities (capture files need neither): \
             sudo setcap {SETCAP_CAPABILITIES} {bin_text} (or install with --setcap)"
        ));
    }
    let on_path = std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d == prefix.join("bin")));
    if !on_path {
        step(&format!("{} is not on PATH", prefix.join("bin").display()));
    }
    Ok(())
}

/// Writes the distribution of `bin` into `out`: a copy of it, and what it generates.
fn assemble(bin: &Path, out: &Path) -> Result<()> {
    fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    for a in &ARTIFACTS {
        let dest = out.join(a.name);
        let Some(what) = a.generate else {
            fs::copy(bin, &dest)
                .with_context(|| format!("cannot copy {} to {}", bin.display(), dest.display()))?;
            continue;
        };
        let generated = Command::new(bin)
            .args(["--generate", what])
            .output()
            .with_context(|| format!("cannot run {}", bin.display()))?;
        if !generated.status.success() || generated.stdout.is_empty() {
            bail!(
                "`{} --generate {what}` failed ({}): {}",
                bin.display(),
                generated.status,
                String::from_utf8_lossy(&generated.stderr).trim()
            );
        }
        fs::write(&dest, &generated.stdout)
            .with_context(|| format!("cannot write {}", dest.display()))?;
    }
    Ok(())
}

/// Installs the files of the distribution in `dist` under `prefix`, each saying where it went.
/// A file goes in under a temporary name and is renamed over the old one, so that a running
/// tcptrack keeps its binary and nobody sees half a file. Returns the installed paths.
fn place(dist: &Path, prefix: &Path) -> Result<Vec<PathBuf>> {
    let mut placed = Vec::new();
    for a in &ARTIFACTS {
        let from = dist.join(a.name);
        let dest = prefix.join(a.installed);
        let dir = dest.parent().context("an installed file has a folder")?;
        let fresh = dir.join(format!(".{}.new", a.name));
        fs::create_dir_all(dir)
            .and_then(|()| fs::copy(&from, &fresh))
            .and_then(|_| fs::set_permissions(&fresh, fs::Permissions::from_mode(a.mode)))
            .and_then(|()| fs::rename(&fresh, &dest))
            .map_err(|e| {
                let _ = fs::remove_file(&fresh);
                let hint = if e.kind() == std::io::ErrorKind::PermissionDenied {
                    " (install as root, or under a --prefix you own, such as ~/.local)"
                } else {
                    ""
                };
                anyhow::anyhow!("cannot install {}: {e}{hint}", dest.display())
            })?;
        step(&format!("installed {}", dest.display()));
        placed.push(dest);
    }
    Ok(placed)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stand-in for tcptrack: `--generate WHAT` writes `generated WHAT`.
    fn fake_binary(dir: &Path) -> PathBuf {
        let bin = dir.join("tcptrack");
        fs::write(
            &bin,
            "#!/bin/sh\n[ \"$1\" = --generate ] || exit 2\necho \"generated $2\"\n",
        )
        .expect("fake binary");
        fs::set_permissions(&bin, fs::Permissions::from_mode(0o755)).expect("executable");
        bin
    }

    #[test]
    fn dist_and_install_lay_out_every_file() {
        let work = tempfile::tempdir().expect("temporary folder");
        let bin = fake_binary(work.path());
        let dist = work.path().join("dist");
        assemble(&bin, &dist).expect("assembled");
        let read = |p: &Path| fs::read_to_string(p).expect("readable");
        assert_eq!(read(&dist.join("tcptrack")), read(&bin));
        for (name, what) in [
            ("tcptrack.1", "man"),
            ("tcptrack.bash", "bash"),
            ("_tcptrack", "zsh"),
            ("tcptrack.fish", "fish"),
        ] {
            assert_eq!(
                read(&dist.join(name)),
                format!("generated {what}\n"),
                "{name}"
            );
        }

        let prefix = work.path().join("prefix");
        // Twice: the second run replaces what the first installed.
        for _ in 0..2 {
            let placed = place(&dist, &prefix).expect("installed");
            assert_eq!(placed.len(), ARTIFACTS.len());
        }
        for (path, from, mode) in [
            ("bin/tcptrack", "tcptrack", 0o755),
            ("share/man/man1/tcptrack.1", "tcptrack.1", 0o644),
            (
                "share/bash-completion/completions/tcptrack",
                "tcptrack.bash",
                0o644,
            ),
            ("share/zsh/site-functions/_tcptrack", "_tcptrack", 0o644),
            (
                "share/fish/vendor_completions.d/tcptrack.fish",
                "tcptrack.fish",
                0o644,
            ),
        ] {
            let installed = prefix.join(path);
            assert_eq!(read(&installed), read(&dist.join(from)), "{path}");
            let meta = fs::metadata(&installed).expect("installed");
            assert_eq!(meta.permissions().mode() & 0o777, mode, "{path}");
        }
        // Nothing else, no temporary file left behind.
        let count = walk(&prefix);
        assert_eq!(count, ARTIFACTS.len(), "files under the prefix");
    }

    #[test]
    fn a_binary_that_cannot_generate_fails_the_dist() {
        let work = tempfile::tempdir().expect("temporary folder");
        let bin = work.path().join("tcptrack");
        fs::write(&bin, "#!/bin/sh\necho 'tcptrack: no' >&2\nexit 2\n").expect("fake binary");
        fs::set_permissions(&bin, fs::Permissions::from_mode(0o755)).expect("executable");
        let e = assemble(&bin, &work.path().join("dist")).expect_err("fails");
        assert!(e.to_string().contains("--generate man"), "{e}");
        assert!(e.to_string().contains("tcptrack: no"), "{e}");
    }

    #[test]
    fn the_capabilities_are_the_readmes() {
        let readme = fs::read_to_string(root().join("README.md")).expect("README");
        assert!(
            readme.contains(&format!("setcap {SETCAP_CAPABILITIES} ")),
            "README's setcap line"
        );
    }

    /// Files under `dir`, at any depth.
    fn walk(dir: &Path) -> usize {
        fs::read_dir(dir)
            .expect("readable")
            .map(|e| {
                let e = e.expect("entry");
                if e.file_type().expect("type").is_dir() {
                    walk(&e.path())
                } else {
                    1
                }
            })
            .sum()
    }
}
