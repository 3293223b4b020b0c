import Foundation
import TangentIO

/// A model's weights as `save_pretrained` writes them: one `model.safetensors`, or, above
/// its shard size, `model.safetensors.index.json` (`weight_map`: tensor name to shard file)
/// beside the shards `model-0000i-of-0000n.safetensors`. Every tensor is read from the
/// file that holds it; errors name that file.
public struct SafetensorsCheckpoint: Sendable {
    /// The single file, or the index: what messages about the checkpoint as a whole name.
    public let source: String
    /// Every tensor of the checkpoint (for an index: the ones its `weight_map` lists).
    public let tensors: [String: SafetensorsTensorInfo]
    private let files: [SafetensorsFile]
    private let location: [String: Int]

    /// The most shards an index may name (a checkpoint of 10,000 shards of the default
    /// 5 GB would be 50 TB).
    public static let maximumShards = 10_000

    /// Reads `directory/model.safetensors`, else the shards its index names.
    public init(directory: URL, name: String = "model.safetensors") throws {
        let single = directory.appendingPathComponent(name)
        let index = directory.appendingPathComponent(name + ".index.json")
        if FileManager.default.fileExists(atPath: single.path) {
            let file = try SafetensorsFile(url: single)
            self.init(source: single.path, files: [file], location: file.tensors.mapValues { _ in 0 })
            return
        }
        guard FileManager.default.fileExists(atPath: index.path) else {
            throw SafetensorsError.unreadable(
                path: single.path,
                reason:
                    "missing (a Hugging Face model directory holds its weights there, or in shards listed by \(name).index.json)"
            )
        }
        func fail(_ why: String) -> SafetensorsError { .unreadable(path: index.path, reason: why) }
        let data: Data
        do { data = try WholeFile.read(index) } catch { throw fail("\(error)") }
        guard let json = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            throw fail("not a JSON object")
        }
        guard let map = json["weight_map"] as? [String: Any], !map.isEmpty else {
            throw fail("'weight_map' is missing, empty or not an object of tensor names to shard files")
        }
        var shardNames: [String] = []
        var shardOf: [String: Int] = [:]
        var location: [String: Int] = [:]
        for tensor in map.keys.sorted() {
            guard let shard = map[tensor] as? String else { throw fail("'weight_map'['\(tensor)'] is not a file name") }
            // A shard is a file beside the index: no directories, no way out of the model directory.
            guard !shard.isEmpty, !shard.contains("/"), shard != ".", shard != "..", shard.hasSuffix(".safetensors")
            else {
                throw fail("'weight_map'['\(tensor)'] is '\(shard)', not a .safetensors file in the same directory")
            }
            if shardOf[shard] == nil {
                guard shardNames.count < SafetensorsCheckpoint.maximumShards else {
                    throw fail("names more than \(SafetensorsCheckpoint.maximumShards) shard files")
                }
                shardOf[shard] = shardNames.count
                shardNames.append(shard)
            }
            location[tensor] = shardOf[shard]
        }
        let files = try shardNames.map { shard -> SafetensorsFile in
            let url = directory.appendingPathComponent(shard)
            guard FileManager.default.fileExists(atPath: url.path) else {
                throw fail("names the shard \(shard), which is missing")
            }
            return try SafetensorsFile(url: url)
        }
        for (tensor, i) in location where files[i].tensors[tensor] == nil {
            throw fail("puts '\(tensor)' in \(shardNames[i]), which does not hold it")
        }
        self.init(source: index.path, files: files, location: location)
    }

    private init(source: String, files: [SafetensorsFile], location: [String: Int]) {
        self.source = source
        self.files = files
        self.location = location
        var tensors: [String: SafetensorsTensorInfo] = [:]
        for (name, i) in location { tensors[name] = files[i].tensors[name] }
        self.tensors = tensors
    }

    /// The file that holds `name` (its path, for messages).
    public func path(of name: String) -> String {
        location[name].map { files[$0].path } ?? source
    }

    /// A floating-point tensor's values as float32 (see `SafetensorsFile.floatsWidened`).
    public func floatsWidened(_ name: String, shape: [Int]? = nil) throws -> [Float] {
        guard let i = location[name] else {
            throw SafetensorsError.badTensor(path: source, tensor: name, reason: "missing")
        }
        return try files[i].floatsWidened(name, shape: shape)
    }
}
