import Foundation
#if canImport(Glibc)
    import Glibc
#endif

/// A cluster node's hold on its data directory (`storage.data_dir`): an exclusive `flock` on
/// `node.lock`, kept for the life of the process and released by the kernel when it ends, however
/// it ends. Holding it proves that the process that last started this node from this directory is
/// gone, so its incarnation (kept in `node.incarnation`) is taken over at once: a node restarted
/// after a crash, or a whole cluster restarted, does not wait `cluster.lease_timeout` for its
/// own dead lease (docs/architecture.md "Leases on the database clock").
struct DataDirectoryLock {
    let descriptor: Int32
    /// The incarnation the previous start of `nodeID` here recorded, if any.
    let predecessor: Int64?
    let incarnationPath: String

    static func acquire(directory: String, nodeID: String) throws -> DataDirectoryLock {
        let lockPath = (directory as NSString).appendingPathComponent("node.lock")
        let descriptor = open(lockPath, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard descriptor >= 0 else {
            throw StartupError(message: "cannot open \(lockPath) (storage.data_dir): \(String(cString: strerror(errno)))")
        }
        guard flock(descriptor, LOCK_EX | LOCK_NB) == 0 else {
            close(descriptor)
            throw StartupError(
                message: "another starling process uses the data directory \(directory) (storage.data_dir); each node needs its own")
        }
        let incarnationPath = (directory as NSString).appendingPathComponent("node.incarnation")
        var predecessor: Int64?
        if let text = try? String(contentsOfFile: incarnationPath, encoding: .utf8) {
            let parts = text.split(separator: " ")
            if parts.count == 2, parts[0] == nodeID { predecessor = Int64(parts[1].trimmingCharacters(in: .whitespacesAndNewlines)) }
        }
        return DataDirectoryLock(descriptor: descriptor, predecessor: predecessor, incarnationPath: incarnationPath)
    }

    /// Gives the directory up (tests; a serving process keeps it until it ends).
    func release() {
        close(descriptor)
    }

    /// Records this start's incarnation for the next start from this directory.
    func record(nodeID: String, incarnation: Int64) {
        try? "\(nodeID) \(incarnation)\n".write(toFile: incarnationPath, atomically: true, encoding: .utf8)
    }
}
