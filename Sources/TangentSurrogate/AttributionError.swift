import Foundation

/// An attribution computation that cannot proceed; the message says what to change.
public struct AttributionError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}
