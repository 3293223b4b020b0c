/// One parameter tensor's place in the flat parameter vector.
public struct ParameterTensor: Sendable, Equatable {
    /// Name as in `model.safetensors` (e.g. `blocks.0.attn.qkv.weight`).
    public let name: String
    /// Shape in PyTorch convention (`[out, in]` for linear weights).
    public let shape: [Int]
    /// Offset of the first element in the flat vector.
    public let offset: Int
    public var count: Int { shape.reduce(1, *) }
    public var range: Range<Int> { offset..<(offset + count) }
    /// The per-layer group (`embeddings`, `blocks.i`, `norm`, `head`) the tensor belongs to.
    public var group: String {
        if name.hasPrefix("blocks.") {
            let parts = name.split(separator: ".")
            return "blocks.\(parts[1])"
        }
        return String(name.split(separator: ".")[0])
    }
}

/// All parameters of a model in one contiguous vector, in the order of the
/// model-format spec. Gradients and optimizer state share this layout.
public struct ParameterLayout: Sendable, Equatable {
    public let tensors: [ParameterTensor]
    public let count: Int
    private let byName: [String: Int]

    public init(config c: ModelConfig) {
        var list: [ParameterTensor] = []
        var off = 0
        func add(_ name: String, _ shape: [Int]) {
            list.append(ParameterTensor(name: name, shape: shape, offset: off))
            off += shape.reduce(1, *)
        }
        let D = c.dModel, F = c.dFF
        add("embeddings.token.weight", [c.vocabSize, D])
        add("embeddings.position.weight", [c.maxLen, D])
        for i in 0..<c.nLayers {
            add("blocks.\(i).norm1.weight", [D]); add("blocks.\(i).norm1.bias", [D])
            add("blocks.\(i).attn.qkv.weight", [3 * D, D]); add("blocks.\(i).attn.qkv.bias", [3 * D])
            add("blocks.\(i).attn.proj.weight", [D, D]); add("blocks.\(i).attn.proj.bias", [D])
            add("blocks.\(i).norm2.weight", [D]); add("blocks.\(i).norm2.bias", [D])
            add("blocks.\(i).mlp.fc1.weight", [F, D]); add("blocks.\(i).mlp.fc1.bias", [F])
            add("blocks.\(i).mlp.fc2.weight", [D, F]); add("blocks.\(i).mlp.fc2.bias", [D])
        }
        add("norm.weight", [D]); add("norm.bias", [D])
        add("head.weight", [c.nClasses, D]); add("head.bias", [c.nClasses])
        tensors = list
        count = off
        byName = Dictionary(uniqueKeysWithValues: list.enumerated().map { ($1.name, $0) })
    }

    /// The tensor called `name`, or nil.
    public func tensor(_ name: String) -> ParameterTensor? { byName[name].map { tensors[$0] } }
    /// Index of `name` in `tensors`.
    public func index(of name: String) -> Int? { byName[name] }

    /// Offset of a tensor that must exist (internal names built from the config).
    func offset(_ name: String) -> Int { tensors[byName[name]!].offset }

    /// The per-layer groups in model order.
    public var groups: [String] {
        var seen: [String] = []
        for t in tensors where !seen.contains(t.group) { seen.append(t.group) }
        return seen
    }
}

/// A subset of parameter tensors chosen by name prefixes, with a compact layout of
/// its own: per-example gradients over the subset are vectors of `count` numbers.
public struct ParameterSubset: Sendable, Equatable {
    /// Indices into the layout's tensors, in model order.
    public let tensorIndices: [Int]
    /// For each tensor of the layout, its offset in the compact subset vector, or nil.
    public let compactOffsets: [Int?]
    /// Number of parameters in the subset.
    public let count: Int

    /// Every tensor.
    public init(all layout: ParameterLayout) {
        self.init(layout: layout, tensorIndices: Array(layout.tensors.indices))
    }

    /// Tensors whose names start with one of `prefixes` (`head` = last layer,
    /// `blocks.1`, `norm`, `embeddings`; `all` or the empty prefix = everything).
    /// A prefix matches whole dotted components, so `blocks.1` does not match `blocks.10`.
    public init(layout: ParameterLayout, prefixes: [String]) throws {
        for p in prefixes {
            let matches = layout.tensors.contains { ParameterSubset.matches($0.name, p) }
            if !matches {
                let valid = ["all"] + layout.groups + layout.tensors.map(\.name)
                throw ModelError("unknown parameter prefix '\(p)'; valid prefixes include: \(valid.joined(separator: ", "))")
            }
        }
        let indices = layout.tensors.indices.filter { i in prefixes.contains { ParameterSubset.matches(layout.tensors[i].name, $0) } }
        self.init(layout: layout, tensorIndices: indices)
    }

    /// The tensors at `indices` of `layout` (in model order).
    public init(layout: ParameterLayout, tensorIndices indices: [Int]) {
        var offsets = [Int?](repeating: nil, count: layout.tensors.count)
        var off = 0
        let sorted = indices.sorted()
        for i in sorted {
            offsets[i] = off
            off += layout.tensors[i].count
        }
        tensorIndices = sorted
        compactOffsets = offsets
        count = off
    }

    static func matches(_ name: String, _ prefix: String) -> Bool {
        if prefix.isEmpty || prefix == "all" { return true }
        return name == prefix || name.hasPrefix(prefix + ".")
    }
}
