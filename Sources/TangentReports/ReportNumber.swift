import Foundation

/// `v` with `digits` decimals, as the reports print a figure; NaN (a figure that does
/// not apply) as "-".
func fixed(_ v: Double, _ digits: Int = 3) -> String {
    v.isNaN ? "-" : String(format: "%.\(digits)f", v)
}
