#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif
import Synchronization

// MARK: - Signals

/// Set by SIGINT / SIGTERM; the coordinator polls it. A second signal exits at once.
let interruptCount = Atomic<Int>(0)

func installSignalHandlers() {
    let handler: @convention(c) (Int32) -> Void = { signal in
        let previous = interruptCount.add(1, ordering: .relaxed).oldValue
        if previous > 0 { _exit(128 + signal) }
    }
    signal(SIGINT, handler)
    signal(SIGTERM, handler)
    signal(SIGPIPE, SIG_IGN)
}

var interrupted: Bool { interruptCount.load(ordering: .relaxed) > 0 }

// MARK: - Process

/// Raises the soft open-file limit to the hard limit; returns the limit now in force.
@discardableResult
func raiseOpenFileLimit() -> Int {
    var limit = rlimit()
    #if canImport(Glibc)
        let resource = __rlimit_resource_t(RLIMIT_NOFILE.rawValue)
    #else
        let resource = RLIMIT_NOFILE
    #endif
    guard getrlimit(resource, &limit) == 0 else { return -1 }
    if limit.rlim_cur < limit.rlim_max {
        limit.rlim_cur = limit.rlim_max
        _ = setrlimit(resource, &limit)
        _ = getrlimit(resource, &limit)
    }
    return limit.rlim_cur > rlim_t(Int.max) ? Int.max : Int(limit.rlim_cur)
}

/// VmRSS of a process in bytes, from /proc/PID/status (Linux only); nil when unreadable.
func residentMemory(pid: Int32) -> Int? {
    let fd = open("/proc/\(pid)/status", O_RDONLY)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    var bytes: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 4096)
    while true {
        let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if n <= 0 { break }
        bytes.append(contentsOf: chunk[0..<n])
    }
    let text = String(decoding: bytes, as: UTF8.self)
    for line in text.split(separator: "\n") where line.hasPrefix("VmRSS:") {
        // "VmRSS:	   12345 kB"
        let digits = line.dropFirst(6).filter { $0.isNumber }
        guard let kib = Int(digits) else { return nil }
        return kib * 1024
    }
    return nil
}

func monotonicNanos() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}

func sleep(seconds: Double) {
    guard seconds > 0 else { return }
    var ts = timespec(tv_sec: Int(seconds), tv_nsec: Int((seconds - Double(Int(seconds))) * 1e9))
    var remaining = timespec()
    while nanosleep(&ts, &remaining) != 0 && errno == EINTR && !interrupted { ts = remaining }
}

// MARK: - Output

/// Writes a line to a file descriptor directly (no stdio buffering, no shared FILE state).
private func writeLine(_ fd: Int32, _ message: String) {
    var line = message + "\n"
    line.withUTF8 { bytes in
        var offset = 0
        while offset < bytes.count {
            let n = write(fd, bytes.baseAddress! + offset, bytes.count - offset)
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { return }
            offset += n
        }
    }
}

func printError(_ message: String) { writeLine(2, message) }

func printOut(_ message: String) { writeLine(1, message) }

/// `x` with `decimals` digits after the point, without Foundation.
func fixed(_ x: Double, _ decimals: Int = 1) -> String {
    guard x.isFinite else { return x.isNaN ? "nan" : (x > 0 ? "inf" : "-inf") }
    var scale = 1.0
    for _ in 0..<decimals { scale *= 10 }
    let scaled = (abs(x) * scale).rounded()
    guard scaled < 9e18 else { return String(x) }
    let n = Int64(scaled)
    let whole = n / Int64(scale)
    var result = (x < 0 && n != 0 ? "-" : "") + String(whole)
    if decimals > 0 {
        let frac = String(n % Int64(scale))
        result += "." + String(repeating: "0", count: decimals - frac.count) + frac
    }
    return result
}

/// 1234567 → "1,234,567".
func grouped(_ n: Int) -> String {
    let digits = String(abs(n))
    var out = ""
    for (i, c) in digits.enumerated() {
        if i > 0 && (digits.count - i) % 3 == 0 { out.append(",") }
        out.append(c)
    }
    return n < 0 ? "-" + out : out
}

func padLeft(_ s: String, _ width: Int) -> String {
    s.count >= width ? s : String(repeating: " ", count: width - s.count) + s
}

/// A minimal JSON object writer: keys in insertion order, numbers and strings.
struct JSONObject {
    private var fields: [String] = []

    mutating func set(_ key: String, _ value: Int) { fields.append("\(quote(key)):\(value)") }
    mutating func set(_ key: String, _ value: UInt64) { fields.append("\(quote(key)):\(value)") }
    mutating func set(_ key: String, _ value: Double, decimals: Int = 3) {
        fields.append("\(quote(key)):\(value.isFinite ? fixed(value, decimals) : "null")")
    }
    mutating func set(_ key: String, _ value: String) { fields.append("\(quote(key)):\(quote(value))") }
    mutating func set(_ key: String, _ value: Bool) { fields.append("\(quote(key)):\(value)") }
    mutating func setNull(_ key: String) { fields.append("\(quote(key)):null") }

    var text: String { "{" + fields.joined(separator: ",") + "}" }

    private func quote(_ s: String) -> String {
        var out = "\""
        for scalar in s.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                if scalar.value < 0x20 {
                    let hex = String(scalar.value, radix: 16)
                    out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        return out + "\""
    }
}

// MARK: - Sequence set

/// The set of sequence numbers seen from one publisher: one bit each, grown on demand.
struct SequenceSet {
    private var words: [UInt64] = []

    /// Inserts `seq`; false when it was already present (a duplicate).
    @inline(__always)
    mutating func insert(_ seq: UInt32) -> Bool {
        let word = Int(seq >> 6)
        if word >= words.count {
            words.append(contentsOf: repeatElement(0, count: max(word + 1 - words.count, words.count)))
        }
        let bit: UInt64 = 1 << UInt64(seq & 63)
        if words[word] & bit != 0 { return false }
        words[word] |= bit
        return true
    }
}
