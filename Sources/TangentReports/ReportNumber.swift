import Foundation

/// `v` with `digits` decimals, as the reports print a figure; NaN (a figure that does
/// not apply) as "-".
func fixed(_ v: Double, _ digits: Int = 3) -> String {
    v.isNaN ? "-" : String(format: "%.\(digits)f", v)
}

/// The columns of a table over lambda grids that differ by kernel (a grid extended past
/// the others' ends): every lambda any row has, ascending.
func gridColumns(_ grids: [[Double]]) -> [Double] {
    Array(Set(grids.joined())).sorted()
}

/// One row's cells under `columns`: its figure at each lambda it has, "" where it has none.
func gridCells<G>(_ grid: [G], lambda: (G) -> Double, columns: [Double], _ cell: (G) -> String) -> [String] {
    let byLambda = Dictionary(grid.map { (lambda($0), $0) }, uniquingKeysWith: { first, _ in first })
    return columns.map { byLambda[$0].map(cell) ?? "" }
}
