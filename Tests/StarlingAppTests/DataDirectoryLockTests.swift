import Foundation
@testable import StarlingApp
import Testing

/// A cluster node's hold on its data directory: one process at a time, and the next start
/// learns the incarnation of the one before it (taken over without waiting for its lease).
@Suite struct DataDirectoryLockTests {
    @Test("one process holds a data directory; the next start from it knows its predecessor's incarnation")
    func lockAndPredecessor() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("starling-lock-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let first = try DataDirectoryLock.acquire(directory: directory, nodeID: "n1")
        #expect(first.predecessor == nil)
        first.record(nodeID: "n1", incarnation: 42)
        #expect(throws: StartupError.self) { try DataDirectoryLock.acquire(directory: directory, nodeID: "n1") }
        first.release()  // the process ended
        let second = try DataDirectoryLock.acquire(directory: directory, nodeID: "n1")
        #expect(second.predecessor == 42)
        second.release()
        // Another node id on the same directory takes nobody's row over.
        let other = try DataDirectoryLock.acquire(directory: directory, nodeID: "n2")
        #expect(other.predecessor == nil)
        other.release()
    }
}
