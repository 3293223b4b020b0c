/// One parameter tensor's place in the flat parameter vector.
public struct ParameterTensor: Sendable, Equatable {
    /// Name as in the checkpoint (e.g. `blocks.0.attn.qkv.weight`, `bert.encoder.layer.0.output.dense.weight`).
    public let name: String
    /// Shape in PyTorch convention (`[out, in]` for linear weights).
    public let shape: [Int]
    /// Offset of the first element in the flat vector.
    public let offset: Int
    /// The per-layer group the tensor belongs to (the NFT-K per-layer view): for tangent's
    /// own models `embeddings`, `blocks.i`, `norm`, `head`; for the BERT family
    /// `embeddings`, `encoder.layer.i`, `pooler`, `classifier`.
    public let group: String
    /// Whether AdamW's weight decay applies (matrices of linear layers; not biases,
    /// LayerNorm weights or position tables).
    public let decays: Bool
    public var count: Int { shape.reduce(1, *) }
    public var range: Range<Int> { offset..<(offset + count) }
}

/// All parameters of a model in one contiguous vector, in the order of the
/// model-format spec. Gradients and optimizer state share this layout.
public struct ParameterLayout: Sendable, Equatable {
    public let tensors: [ParameterTensor]
    public let count: Int
    private let byName: [String: Int]

    /// Tensors in the given order, each with its group and weight-decay flag; offsets
    /// follow from the order.
    public init(_ entries: [(name: String, shape: [Int], group: String, decays: Bool)]) {
        var list: [ParameterTensor] = []
        var off = 0
        for e in entries {
            list.append(ParameterTensor(name: e.name, shape: e.shape, offset: off, group: e.group, decays: e.decays))
            off += e.shape.reduce(1, *)
        }
        tensors = list
        count = off
        byName = Dictionary(uniqueKeysWithValues: list.enumerated().map { ($1.name, $0) })
    }

    /// The layout of tangent's own classifier, in the order of the model-format spec.
    public init(config c: ModelConfig) {
        var list: [(name: String, shape: [Int], group: String, decays: Bool)] = []
        func add(_ name: String, _ shape: [Int]) {
            let group =
                name.hasPrefix("blocks.")
                ? name.split(separator: ".").prefix(2).joined(separator: ".") : String(name.split(separator: ".")[0])
            list.append(
                (name, shape, group, name.hasSuffix(".weight") && shape.count == 2 && !name.contains("position")))
        }
        let D = c.dModel
        let F = c.dFF
        add("embeddings.token.weight", [c.vocabSize, D])
        add("embeddings.position.weight", [c.maxLen, D])
        for i in 0..<c.nLayers {
            add("blocks.\(i).norm1.weight", [D])
            add("blocks.\(i).norm1.bias", [D])
            add("blocks.\(i).attn.qkv.weight", [3 * D, D])
            add("blocks.\(i).attn.qkv.bias", [3 * D])
            add("blocks.\(i).attn.proj.weight", [D, D])
            add("blocks.\(i).attn.proj.bias", [D])
            add("blocks.\(i).norm2.weight", [D])
            add("blocks.\(i).norm2.bias", [D])
            add("blocks.\(i).mlp.fc1.weight", [F, D])
            add("blocks.\(i).mlp.fc1.bias", [F])
            add("blocks.\(i).mlp.fc2.weight", [D, F])
            add("blocks.\(i).mlp.fc2.bias", [D])
        }
        add("norm.weight", [D])
        add("norm.bias", [D])
        add("head.weight", [c.nClasses, D])
        add("head.bias", [c.nClasses])
        self.init(list)
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

    /// Tensors whose names or groups start with one of `prefixes` (`head` = last layer,
    /// `blocks.1`, `norm`, `embeddings`; `all` or the empty prefix = everything).
    /// A prefix matches whole dotted components, so `blocks.1` does not match `blocks.10`.
    public init(layout: ParameterLayout, prefixes: [String]) throws {
        for p in prefixes {
            let matches = layout.tensors.contains { ParameterSubset.matches($0, p) }
            if !matches {
                let valid = ["all"] + layout.groups + layout.tensors.map(\.name)
                throw ModelError(
                    "unknown parameter prefix '\(p)'; valid prefixes include: \(valid.joined(separator: ", "))")
            }
        }
        let indices = layout.tensors.indices.filter { i in
            prefixes.contains { ParameterSubset.matches(layout.tensors[i], $0) }
        }
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

    /// A prefix names a tensor, a dotted start of its name, or its group (so
    /// `encoder.layer.1` selects `bert.encoder.layer.1.*`).
    static func matches(_ t: ParameterTensor, _ prefix: String) -> Bool {
        if prefix.isEmpty || prefix == "all" { return true }
        return [t.name, t.group].contains { $0 == prefix || $0.hasPrefix(prefix + ".") }
    }
}
