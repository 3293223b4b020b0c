import Testing

@testable import TangentReports

/// Tables over lambda grids whose kernels have different grids (one extended past the
/// others): every lambda gets a column, and each row's figures sit under their own lambda.
@Suite struct ReportTableTests {
    @Test func gridsOfDifferentLengthsShareTheirColumns() {
        let short: [(Double, String)] = [(0.1, "a"), (1, "b"), (10, "c")]
        let long: [(Double, String)] = [(1e-3, "x"), (0.1, "y"), (10, "z"), (1e3, "w")]
        let columns = gridColumns([short.map(\.0), long.map(\.0)])
        #expect(columns == [1e-3, 0.1, 1, 10, 1e3])
        #expect(gridCells(short, lambda: \.0, columns: columns) { $0.1 } == ["", "a", "b", "c", ""])
        #expect(gridCells(long, lambda: \.0, columns: columns) { $0.1 } == ["x", "y", "", "z", "w"])
    }
}
