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
        if keep_huge_pages() {
            return SmallPages { previous: None };
        }
        // Bit 0: disabled; kernels from 6.18 may add bit 1 (disabled except where advised,
        // and mimalloc advises), so only a full disable counts as already off.
        let previous = thp_disable(libc::PR_GET_THP_DISABLE, 0);
        if previous >= 0 && previous & 1 == 0 && thp_disable(libc::PR_SET_THP_DISABLE, 1) == 0 {
            return SmallPages { previous: Some(previous) };
        }
        SmallPages { previous: None }
    }
    #[cfg(not(target_os = "linux"))]
    SmallPages {}
}

#[cfg(target_os = "linux")]
fn keep_huge_pages() -> bool {
    std::env::var_os("CORTEXFLOW_HUGE_PAGES").is_some_and(|v| v == "1")
}

/// prctl(option, value, 0, 0, 0), every argument the unsigned long the kernel reads (prctl
/// is variadic: a bare 0 would pass a 32-bit int).
#[cfg(target_os = "linux")]
fn thp_disable(option: libc::c_int, value: libc::c_ulong) -> libc::c_int {
    const ZERO: libc::c_ulong = 0;
    // SAFETY: PR_GET/SET_THP_DISABLE take integer arguments and touch no memory of ours.
    unsafe { libc::prctl(option, value, ZERO, ZERO, ZERO) }
}

/// Whether transparent huge pages are fully off for this process now.
pub fn huge_pages_disabled() -> bool {
    #[cfg(target_os = "linux")]
    return match thp_disable(libc::PR_GET_THP_DISABLE, 0) {
        flags if flags >= 0 => flags & 1 == 1,
        _ => false,
    };
    #[cfg(not(target_os = "linux"))]
    false
}

impl Drop for SmallPages {
    fn drop(&mut self) {
        #[cfg(target_os = "linux")]
        if let Some(previous) = self.previous {
            if thp_disable(libc::PR_SET_THP_DISABLE, previous as libc::c_ulong) != 0 {
                tracing::warn!("transparent huge pages could not be given back to this process");
            }
        }
    }
}

/// mimalloc's index of `mi_option_purge_delay` (the 16th entry of `mi_option_e` in
/// mimalloc.h, v2 and v3 alike; libmimalloc-sys names no constant for it). A test checks
/// the index by v3's default of 1,000 ms.
const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// (guards alive, purge delay before the first of them).
static HOLDERS: std::sync::Mutex<(usize, std::ffi::c_long)> = std::sync::Mutex::new((0, 0));

/// The purge delay while a forward pass runs.
const HELD_DELAY_MS: std::ffi::c_long = 10_000;

/// Lengthens mimalloc's purge delay (1 s → [`HELD_DELAY_MS`]) while a story's forward
/// passes run. The setting is process-wide while any guard lives; when the last drops
/// the delay is restored and what was held is returned at once (`mi_collect(true)`),
/// since the arenas' next purge was set 10 s ahead.
///
/// Why: a forward pass frees tens of MiB of intermediates a layer and takes as much again
/// for the next, and a story runs batch after batch. mimalloc (v3, arena.c) marks freed
/// memory for purging and, once an arena's delay has passed since the first mark, returns
/// *every* marked range still free to the OS, however recently it was freed. With 1 s,
/// passes of about a second faulted most of their buffers in again, 4 KiB at a time, each
/// page zeroed by the kernel. With 10 s that happens once every ten passes of that size,
/// and memory left unused is still returned. SmolLM2-135M, batches of 1,024 tokens one
/// after another in one process (2 cores, AMD Zen 5; 3 alternated processes of 7 passes):
/// 0.86–0.92 s median a pass against 0.90–1.05 s without the guard, 237–246k page faults
/// against 438–571k, peak +2 MiB (874 MiB); MiniLM-L6 (0.1 s a pass) unchanged. Purging
/// turned off instead (`-1`) gave the same speed-up with 33 MiB more peak, and `run` with
/// purging off for its whole length peaked at 1.6–1.7 GB against 1.33–1.37 GB: hence a
/// finite delay, only while models run, and the held memory returned when they stop (once
/// a story, not once a batch: collecting after each MiniLM batch made the next one fault
/// its buffers in again, 0.10 → 0.13 s).
///
/// Only mimalloc's options change; where it is not the global allocator (the Python
/// module) the guard has no effect on memory.
#[must_use = "freed memory is held longer only while the guard lives"]
pub struct HeldPages(());

/// Holds freed memory longer until the guard (and every other one alive) drops.
pub fn hold_freed_pages() -> HeldPages {
    let mut holders = HOLDERS.lock().unwrap_or_else(|e| e.into_inner());
    if holders.0 == 0 {
        // SAFETY: the option calls take plain integers. The set is a word-sized store that
        // mimalloc's threads read without synchronisation: benign, they see either value.
        holders.1 = unsafe { libmimalloc_sys::mi_option_get(PURGE_DELAY) };
        unsafe { libmimalloc_sys::mi_option_set(PURGE_DELAY, HELD_DELAY_MS) };
    }
    holders.0 += 1;
    HeldPages(())
}

impl Drop for HeldPages {
    fn drop(&mut self) {
        let mut holders = HOLDERS.lock().unwrap_or_else(|e| e.into_inner());
        holders.0 -= 1;
        if holders.0 == 0 {
            // SAFETY: as above; `mi_collect(true)` purges free memory on any thread.
            unsafe {
                libmimalloc_sys::mi_option_set(PURGE_DELAY, holders.1);
                libmimalloc_sys::mi_collect(true);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The guard turns THP off and gives the previous setting back (one test touches the
    /// process-wide flag, so the two states are checked in sequence here). Where it changes
    /// nothing (opted out, already off, or a kernel that refuses prctl) there is nothing
    /// to check but that the setting stays.
    #[test]
    #[cfg(target_os = "linux")]
    fn the_guard_disables_huge_pages_and_restores_the_setting() {
        let before = huge_pages_disabled();
        {
            let pages = small_pages();
            if pages.previous.is_some() {
                assert!(huge_pages_disabled());
            } else {
                assert_eq!(huge_pages_disabled(), before);
            }
        }
        assert_eq!(huge_pages_disabled(), before);
    }

    /// Nested guards lengthen the delay once and give it back when the last drops; the
    /// delay saved is v3's documented default (unless the environment sets one), which
    /// checks the option's index. (Model tests on other threads may hold guards too, so
    /// the states are read under the lock.)
    #[test]
    fn held_pages_lengthen_the_purge_delay_until_the_last_guard_drops() {
        let delay = || unsafe { libmimalloc_sys::mi_option_get(PURGE_DELAY) };
        let outer = hold_freed_pages();
        let inner = hold_freed_pages();
        let saved = {
            let holders = HOLDERS.lock().unwrap();
            if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
                assert_eq!(holders.1, 1000, "mimalloc v3's purge_delay default");
            }
            assert_eq!(delay(), HELD_DELAY_MS);
            holders.1
        };
        drop(outer);
        assert_eq!(delay(), HELD_DELAY_MS, "one guard is still alive");
        drop(inner);
        let holders = HOLDERS.lock().unwrap();
        assert_eq!(delay(), if holders.0 == 0 { saved } else { HELD_DELAY_MS });
    }
}
