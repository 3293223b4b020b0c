import Foundation
import TangentData
import Testing

@Suite(.singleThreadedBLAS) struct DataTests {
    func write(_ name: String, _ content: String) throws -> URL {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("tangent-data-\(UUID())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let url = dir.appendingPathComponent(name)
        try Data(content.utf8).write(to: url)
        return url
    }

    func message(_ body: () throws -> Void) -> String {
        do {
            try body()
            return ""
        } catch { return "\(error)" }
    }

    @Test func readsJSONLinesCSVAndTSV() throws {
        let j = try DatasetReader().read(
            try write("a.jsonl", "{\"text\": \"good\", \"label\": \"pos\"}\n\n{\"text\": \"bad\", \"label\": 0}\n"))
        #expect(j == [LabeledText(text: "good", label: "pos", line: 1), LabeledText(text: "bad", label: "0", line: 3)])
        let c = try DatasetReader(textColumn: "body", labelColumn: "y").read(
            try write("a.csv", "id,body,y\n1,\"hello, \"\"world\"\"\",spam\n2,\"two\nlines\",ham\n"))
        #expect(c.map(\.text) == ["hello, \"world\"", "two\nlines"])
        #expect(c.map(\.label) == ["spam", "ham"])
        let t = try DatasetReader().read(try write("a.tsv", "label\ttext\nA\tfirst text\nB\tsecond\n"))
        #expect(t.map(\.text) == ["first text", "second"])
        #expect(try LabelSet(collecting: c).names == ["ham", "spam"])
    }

    @Test func quotesInTSVAreLiteralAndCSVQuotingFollowsRFC4180() throws {
        let t = try DatasetReader().read(
            try write("q.tsv", "text\tlabel\nwhat is 5\" in cm ?\tNUM\n\"quoted\" start\tDESC\r\n"))
        #expect(t.map(\.text) == ["what is 5\" in cm ?", "\"quoted\" start"])
        #expect(t.map(\.label) == ["NUM", "DESC"])
        // A quote inside an unquoted CSV field is literal; quoted fields span lines.
        let c = try DatasetReader().read(
            try write("q.csv", "text,label\nwhat is 5\" in cm ?,NUM\n\"a\nb\",DESC\nlast,X\n"))
        #expect(c.map(\.text) == ["what is 5\" in cm ?", "a\nb", "last"])
        #expect(c.map(\.line) == [1, 2, 3])
        var m = message { _ = try DatasetReader().read(try write("u.csv", "text,label\nok,A\n\"a\nb,DESC\nlast,X\n")) }
        #expect(m.contains("u.csv") && m.contains("line 3") && m.contains("never closed"), "\(m)")
        m = message { _ = try DatasetReader().read(try write("t.csv", "text,label\n\"a\"b,DESC\n")) }
        #expect(m.contains("t.csv") && m.contains("line 2"), "\(m)")
        m = message { _ = try DatasetReader().read(try write("d.csv", "text,label,text\na,B,c\n")) }
        #expect(m.contains("d.csv") && m.contains("'text' 2 times") && m.contains("columns 1, 3"), "\(m)")
        m = message { _ = try DatasetReader().read(try write("f.tsv", "text\tlabel\na\tB\nb\tB\textra\n")) }
        #expect(m.contains("f.tsv") && m.contains("row 2 (line 3)"), "\(m)")
    }

    @Test func invalidUTF8IsReportedWithItsLine() throws {
        let url = try write("u.jsonl", "")
        var d = Data("{\"text\": \"a\", \"label\": \"B\"}\n{\"text\": \"b\", \"label\": \"B\"}\n{\"text\": \"".utf8)
        d.append(contentsOf: [0xFF, 0xFE])
        d.append(Data("\", \"label\": \"B\"}\n".utf8))
        try d.write(to: url)
        let m = message { _ = try DatasetReader().read(url) }
        #expect(m.contains("u.jsonl") && m.contains("line 3") && m.contains("UTF-8"), "\(m)")
    }

    @Test func badInputNamesFileLineAndField() throws {
        let bad = try write("bad.jsonl", "{\"text\": \"ok\", \"label\": \"a\"}\n{\"text\": \"oops\"\n")
        var m = message { _ = try DatasetReader().read(bad) }
        #expect(m.contains("bad.jsonl:2") && m.contains("malformed JSON"))
        m = message { _ = try DatasetReader().read(try write("n.jsonl", "{\"text\": \"ok\"}\n")) }
        #expect(m.contains("n.jsonl:1") && m.contains("missing field 'label'"))
        m = message {
            _ = try DatasetReader().read(
                try write("e.jsonl", "{\"text\": \"ok\", \"label\": \"a\"}\n{\"text\": \"  \", \"label\": \"a\"}\n"))
        }
        #expect(m.contains("e.jsonl") && m.contains("line 2") && m.contains("empty text"))
        m = message { _ = try DatasetReader().read(try write("c.csv", "sentence,label\nhi,a\n")) }
        #expect(m.contains("c.csv") && m.contains("no column 'text'") && m.contains("sentence"))
        m = message { _ = try DatasetReader().read(try write("r.csv", "text,label\nhi,a\nlonely\n")) }
        #expect(m.contains("r.csv") && m.contains("row 2"))
        m = message { _ = try DatasetReader().read(URL(fileURLWithPath: "/nonexistent/x.jsonl")) }
        #expect(m.contains("/nonexistent/x.jsonl") && m.contains("no such file"))
        m = message { _ = try DatasetReader().read(try write("x.parquet", "")) }
        #expect(m.contains("unknown data format"))
        let labels = try LabelSet(names: ["neg", "pos"])
        m = message { _ = try labels.indices(of: [LabeledText(text: "t", label: "meh", line: 7)], source: "f.jsonl") }
        #expect(m.contains("f.jsonl") && m.contains("line 7") && m.contains("'meh'"))
        // Unlabelled texts are fine for prediction.
        let u = try DatasetReader(requireLabels: false).read(try write("u.jsonl", "{\"text\": \"no label\"}\n"))
        #expect(u.first?.label == nil)
    }
}
