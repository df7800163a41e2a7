#if canImport(Glibc)
import Glibc
#endif

/// Runs blocking C work (netlink dumps, libcurl transfers) on a dedicated thread, never on the cooperative
/// pool, and resumes the caller when it is done. One short-lived thread per call: calls are seconds apart.
enum BlockingCall {
    static func run<T: Sendable>(_ body: @escaping @Sendable () -> T) async -> T {
        await withCheckedContinuation { (continuation: CheckedContinuation<T, Never>) in
            let job = Job { continuation.resume(returning: body()) }
            let context = Unmanaged.passRetained(job).toOpaque()
            var thread = pthread_t()
            let rc = pthread_create(&thread, nil, { raw in
                let job = Unmanaged<Job>.fromOpaque(raw!).takeRetainedValue()
                job.work()
                return nil
            }, context)
            if rc == 0 {
                pthread_detach(thread)
            } else {
                // No thread to be had (resource limit): run inline rather than never resume.
                Unmanaged<Job>.fromOpaque(context).takeRetainedValue().work()
            }
        }
    }
}

/// The unit of work handed to the thread.
private final class Job {
    let work: () -> Void
    init(_ work: @escaping () -> Void) { self.work = work }
}

/// Wall-clock and monotonic time, read once per sample so every sampler in a round shares one instant.
public struct SampleTime: Sendable {
    public var wallMilliseconds: Int64
    public var monotonicNanoseconds: UInt64

    public init(wallMilliseconds: Int64, monotonicNanoseconds: UInt64) {
        self.wallMilliseconds = wallMilliseconds
        self.monotonicNanoseconds = monotonicNanoseconds
    }

    public static func now() -> SampleTime {
        var wall = timespec()
        var mono = timespec()
        clock_gettime(CLOCK_REALTIME, &wall)
        clock_gettime(CLOCK_MONOTONIC, &mono)
        return SampleTime(wallMilliseconds: Int64(wall.tv_sec) * 1000 + Int64(wall.tv_nsec) / 1_000_000,
                          monotonicNanoseconds: UInt64(mono.tv_sec) * 1_000_000_000 + UInt64(mono.tv_nsec))
    }
}
