//! Process-wide allocator settings.
//!
//! glibc hands every allocation above 128 KiB to `mmap` and gives freed memory back to the OS
//! (its thresholds grow only slowly), so a forward or backward pass, which allocates and frees
//! megabyte-sized tensors by the hundred, page-faults its way through freshly zeroed pages again
//! and again: a profile of `tokenlens train` on the CPU showed more time in page faults than in
//! everything but the matmuls. Keeping freed memory in the process made training 1.7× faster
//! (docs/engine.md, "CPU memory").

/// Largest allocation glibc keeps in its heaps instead of mapping it afresh: glibc's own upper
/// bound for this setting on 64-bit systems (larger values are refused).
const MMAP_THRESHOLD: i32 = 32 << 20;
/// Free memory at the top of a heap beyond which glibc returns it to the OS.
const TRIM_THRESHOLD: i32 = 1 << 30;

/// Tells glibc to keep freed memory for reuse (see the module docs). Call it once, early, before
/// threads start. Skipped when `GLIBC_TUNABLES` already sets malloc parameters (the user's
/// choice wins), and a no-op on other C libraries. Returns whether the settings were applied.
pub fn keep_freed_memory() -> bool {
    if std::env::var("GLIBC_TUNABLES").is_ok_and(|t| t.contains("glibc.malloc.")) {
        return false;
    }
    apply()
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn apply() -> bool {
    // SAFETY: mallopt only changes the allocator's tuning parameters; it takes the allocator's
    // own lock and is safe to call at any time.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
            && libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn apply() -> bool {
    false
}

#[cfg(all(test, target_os = "linux", target_env = "gnu"))]
mod tests {
    #[test]
    fn glibc_accepts_both_settings() {
        // A threshold above glibc's bound is refused (mallopt returns 0), silently leaving the
        // defaults: this fails if a constant is ever raised past what glibc takes.
        assert!(super::apply());
    }
}
