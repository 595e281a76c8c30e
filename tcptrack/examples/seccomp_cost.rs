//! ns per system call (getppid), without and with tcptrack's seccomp filter.
fn per_call() -> f64 {
    let n = 5_000_000u32;
    let t = std::time::Instant::now();
    for _ in 0..n {
        // SAFETY: getppid cannot fail.
        unsafe { libc::syscall(libc::SYS_getppid) };
    }
    t.elapsed().as_nanos() as f64 / f64::from(n)
}
fn main() {
    let before: Vec<f64> = (0..5).map(|_| per_call()).collect();
    // SAFETY: prctl with integers.
    unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
    tcptrack::sandbox::seccomp(true).expect("filter");
    let after: Vec<f64> = (0..5).map(|_| per_call()).collect();
    println!("without {before:.1?}\nwith    {after:.1?}");
}
