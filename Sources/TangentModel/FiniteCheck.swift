import Foundation
import TangentData

/// The check that a model's outputs are numbers. Finite weights can still overflow
/// float32 in a forward or backward pass; softmax of such logits is NaN or a tie, and
/// every product of NaN features is NaN. Such outputs are refused where they are made,
/// naming the model, the stage and the text, before anything is written.
public enum FiniteCheck {
    /// Throws when a row of `values` ([rows, width]) holds NaN or an infinity; `text(row)`
    /// describes the row's text (see `describe(_:index:)`).
    public static func rows<T: BinaryFloatingPoint>(
        _ values: [T], width: Int, stage: String, model: URL?,
        text: (Int) -> String
    ) throws {
        guard width > 0, let bad = values.firstIndex(where: { !$0.isFinite }) else { return }
        let name = model.map { "\($0.path): " } ?? ""
        throw ModelError(
            "\(name)the \(stage) of \(text(bad / width)) are not finite (\(values[bad])): the model overflows float32 on it (its weights are too large); nothing was written"
        )
    }

    /// "text 3 ('Where is the Eiffel Tow…')": an index counted from 1 or the text's line,
    /// and its first characters.
    public static func describe(_ text: String, index: Int, what: String = "text") -> String {
        let head = text.prefix(40)
        return "\(what) \(index) ('\(head)\(head.count < text.count ? "…" : "")')"
    }

    /// `describe` of a text read from a data file: its line.
    public static func describe(_ text: LabeledText) -> String {
        describe(text.text, index: text.line, what: "line")
    }
}
