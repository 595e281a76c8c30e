//! The kernel programs, built from tcptrack-ebpf by the build script and embedded here.

/// The eBPF object file (ELF) of this build.
pub static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/tcptrack-ebpf"));

/// Loads the kernel programs into the kernel (verifier included) without attaching them.
///
/// # Errors
/// The kernel refused the object or a program (no privilege, verifier rejection, old kernel).
pub fn load_and_verify() -> Result<aya::Ebpf, aya::EbpfError> {
    let mut ebpf = aya::Ebpf::load(OBJECT)?;
    let prog: &mut aya::programs::SchedClassifier = ebpf
        .program_mut(tcptrack_common::PROGRAM_TC)
        .ok_or_else(|| aya::programs::ProgramError::UnexpectedProgramType)?
        .try_into()?;
    prog.load()?;
    Ok(ebpf)
}
