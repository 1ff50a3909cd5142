public import Logging
import StarlingCore

/// `starling ctl users`: the password users in the store, which every node reads (a running
/// broker picks changes up within two seconds).
public enum UserAdministration {
    public struct Failure: Error, CustomStringConvertible {
        public var description: String
    }

    /// Creates `username` or replaces its password; returns the store's description.
    public static func add(
        _ username: String, password: String, rounds: Int = 210_000, configuration: StarlingConfiguration,
        logger: Logger
    ) async throws -> String {
        guard !username.isEmpty, username.utf8.count <= 65_535, !username.contains("\u{0}") else {
            throw Failure(description: "a user name is 1 to 65,535 bytes of UTF-8 without U+0000 (MQTT-1.5.4)")
        }
        guard !password.isEmpty else { throw Failure(description: "the password is empty") }
        guard (PasswordHash.minimumRounds...10_000_000).contains(rounds) else {
            throw Failure(
                description: "--rounds \(rounds): allowed are \(PasswordHash.minimumRounds) to 10,000,000 (default \(PasswordHash.rounds))")
        }
        let hash = try PasswordHash.make(password, rounds: rounds)
        let scram = try ScramSHA256.make(password)
        return try await StarlingNode.withStore(configuration, logger: logger) { store, description in
            try await store.saveUser(StoredUser(username: username, passwordHash: hash, scram: scram))
            return description
        }
    }

    /// Deletes `username`; false when there was no such user.
    public static func delete(_ username: String, configuration: StarlingConfiguration, logger: Logger) async throws -> Bool {
        try await StarlingNode.withStore(configuration, logger: logger) { store, _ in try await store.deleteUser(username) }
    }

    /// The user names, sorted.
    public static func list(configuration: StarlingConfiguration, logger: Logger) async throws -> [String] {
        try await StarlingNode.withStore(configuration, logger: logger) { store, _ in try await store.loadUsers().map(\.username) }
    }
}
