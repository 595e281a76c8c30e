//! `cargo xtask bench`: measurements against the limits and the classic tool.

use anyhow::{bail, Result};

pub fn run(_quick: bool) -> Result<()> {
    bail!("not written yet")
}
