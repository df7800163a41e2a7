#if canImport(Glibc)
import Glibc
#endif

/// CPU time as the kernel accounts it, for `analyze --timing`.
public enum CPUTime {
    /// The CPU time of `clock` (`CLOCK_THREAD_CPUTIME_ID` for the calling thread,
    /// `CLOCK_PROCESS_CPUTIME_ID` for the process), in nanoseconds; nil if the clock cannot be read.
    public static func nanoseconds(_ clock: clockid_t) -> Int64? {
        var t = timespec()
        guard clock_gettime(clock, &t) == 0 else { return nil }
        return Int64(t.tv_sec) * 1_000_000_000 + Int64(t.tv_nsec)
    }
}
