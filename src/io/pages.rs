//! How the process takes memory pages from the OS: small (4 KiB) pages rather than
//! transparent huge pages (THP) while a command runs.
//!
//! Why: the forward passes and the main path allocate and free buffers of megabytes at a
//! high rate. mimalloc asks the kernel for huge pages (`madvise(MADV_HUGEPAGE)`) and purges
//! freed memory at 4 KiB granularity, which splits them; a huge page is zeroed whole, 2 MiB
//! at a time, on every first touch after that. perf put 18–23% of a SmolLM2-135M forward in
//! that zeroing. Measured on the 2-core reference machine (AMD EPYC, THP "madvise"; medians
//! of 5 alternated runs, `scripts/studies/huge_pages.sh`, the README's table): the SmolLM2
//! forward of 1,024 tokens 1.90 s with small pages against 2.40 s with huge ones (system
//! time 0.68 s against 2.86 s); MiniLM-L6, a 200 MiB process, 0.238 s against 0.197 s (it
//! faults 4 KiB pages one by one); `run` on the 2 mm simulation 14.1 s against 14.0 s.
//! Small pages are the default for the larger models the project targets (and the total of
//! the three cases); `CORTEXFLOW_HUGE_PAGES=1` keeps the system's setting.

/// Restores the process's previous THP setting when dropped (the Python package runs
/// commands inside a long-lived interpreter whose other work is not ours to change).
pub struct SmallPages {
    #[cfg(target_os = "linux")]
    previous: Option<libc::c_int>,
}

/// Turns transparent huge pages off for this process (Linux `prctl(PR_SET_THP_DISABLE)`:
/// pages faulted from now on are small, whatever mimalloc advises) until the guard drops.
/// Does nothing elsewhere, when `CORTEXFLOW_HUGE_PAGES=1`, or where the kernel refuses.
pub fn small_pages() -> SmallPages {
    #[cfg(target_os = "linux")]
    {
        if std::env::var_os("CORTEXFLOW_HUGE_PAGES").is_some_and(|v| v == "1") {
            return SmallPages { previous: None };
        }
        // SAFETY: PR_GET/SET_THP_DISABLE take integer arguments and touch no memory of ours.
        let previous = unsafe { libc::prctl(libc::PR_GET_THP_DISABLE, 0, 0, 0, 0) };
        if previous == 0 && unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) } == 0 {
            return SmallPages { previous: Some(previous) };
        }
        SmallPages { previous: None }
    }
    #[cfg(not(target_os = "linux"))]
    SmallPages {}
}

/// Whether transparent huge pages are off for this process now.
pub fn huge_pages_disabled() -> bool {
    #[cfg(target_os = "linux")]
    // SAFETY: as above.
    return unsafe { libc::prctl(libc::PR_GET_THP_DISABLE, 0, 0, 0, 0) } == 1;
    #[cfg(not(target_os = "linux"))]
    false
}

impl Drop for SmallPages {
    fn drop(&mut self) {
        #[cfg(target_os = "linux")]
        if let Some(previous) = self.previous {
            // SAFETY: as above.
            unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, previous as libc::c_ulong, 0, 0, 0) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The guard turns THP off and gives the previous setting back (one test touches the
    /// process-wide flag, so the two states are checked in sequence here).
    #[test]
    #[cfg(target_os = "linux")]
    fn the_guard_disables_huge_pages_and_restores_the_setting() {
        if std::env::var_os("CORTEXFLOW_HUGE_PAGES").is_some() {
            return;
        }
        let before = huge_pages_disabled();
        {
            let _pages = small_pages();
            assert!(huge_pages_disabled());
        }
        assert_eq!(huge_pages_disabled(), before);
    }
}
