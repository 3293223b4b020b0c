import Foundation
import TangentData
import TangentIO
import TangentModel
import TangentSafetensors
import TangentTensor
import TangentTokenizer
import TangentTraining

/// A recipe that cannot be made from what was given; the message names the option or file.
public struct RecipeError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// How every model of an LDS study is made and trained: a fresh model per seed (tangent's
/// own architecture, or the pretrained encoder a `train --init` model was fine-tuned from)
/// and the training options, with what identifies them in the run's key.
public struct LDSRecipe {
    public let model: ModelRecipe
    /// tangent's own architecture (nil for a pretrained start, identified by `model.identity`).
    public let config: ModelConfig?
    /// The tokenizer of tangent's own architecture (a pretrained start carries its own).
    public let tokenizer: Tokenizer?
    public let options: TrainingOptions

    /// Changes to a recipe; nil keeps the recipe's value, or `train`'s default without one.
    public struct Overrides {
        public var dModel: Int?, heads: Int?, layers: Int?, dFF: Int?, maxLen: Int?
        public var epochs: Int?, batchSize: Int?, learningRate: Double?, dropout: Double?
        public init() {}
    }

    /// The recipe `directory`'s model was trained with (its config.json's training record):
    /// tangent's own model, or one fine-tuned with `train --init` (its models then start from
    /// the same pretrained weights).
    public init(of directory: URL, labels: LabelSet, overrides: Overrides = Overrides()) throws {
        let model = try Classifier(directory: directory, threads: 1)
        self = try LDSRecipe.resolve(
            recipe: model, recipePath: directory.path, tokenizer: nil, labels: labels, overrides: overrides)
    }

    init(model: ModelRecipe, config: ModelConfig?, tokenizer: Tokenizer?, options: TrainingOptions) {
        self.model = model
        self.config = config
        self.tokenizer = tokenizer
        self.options = options
    }

    /// The recipe from a model (`recipe`, read from `recipePath`), a tokenizer for tangent's
    /// own architecture (default: the recipe model's), or both; `overrides` change it.
    public static func resolve(
        recipe: Classifier?, recipePath: String?, tokenizer: (Tokenizer, option: String)?, labels: LabelSet,
        overrides o: Overrides
    ) throws -> LDSRecipe {
        var options = TrainingOptions()
        if let recipe {
            guard
                let recorded = try RecordedTraining(
                    configJSON: recipe.configJSON, source: (recipePath ?? "recipe") + "/config.json"
                ).options
            else {
                throw DataError(
                    "\(recipePath ?? "recipe"): config.json records no training options ('training'); give the recipe as flags instead"
                )
            }
            options = recorded
        }
        if let epochs = o.epochs { options.epochs = epochs }
        if let batchSize = o.batchSize { options.batchSize = batchSize }
        if let lr = o.learningRate { options.learningRate = lr }
        if let dropout = o.dropout { options.dropout = dropout }
        try options.validate()
        if let recipe, recipe.tangentModel == nil {
            let start = try pretrained(
                recipe, labels: labels, recipePath: recipePath ?? "--recipe", tokenizerOption: tokenizer?.option,
                overrides: o)
            return LDSRecipe(model: start, config: nil, tokenizer: nil, options: options)
        }
        guard let tok = tokenizer?.0 ?? recipe?.tokenizer else {
            throw RecipeError("give --tokenizer, or --recipe with a model that has one")
        }
        let config = try ownArchitecture(tok, base: recipe?.tangentModel?.config, labels: labels, overrides: o)
        let summary =
            "d_model \(config.dModel), \(config.nHeads) heads, \(config.nLayers) layers, d_ff \(config.dFF), "
            + "max_len \(config.maxLen), \(config.pooling.rawValue) pooling"
        let made = ModelRecipe(summary: summary, identity: summary) { seed, threads in
            try Classifier(
                model: TransformerClassifier<Float>.initialized(config: config, seed: seed, threads: threads),
                tokenizer: tok, labels: labels)
        }
        return LDSRecipe(model: made, config: config, tokenizer: tok, options: options)
    }

    /// tangent's own architecture: the base model's shape (else `train`'s defaults) with
    /// `overrides`, on the tokenizer's vocabulary.
    static func ownArchitecture(_ tok: Tokenizer, base: ModelConfig?, labels: LabelSet, overrides o: Overrides) throws
        -> ModelConfig
    {
        var config = ModelConfig(
            vocabSize: tok.vocabSize, maxLen: o.maxLen ?? base?.maxLen ?? 64, dModel: o.dModel ?? base?.dModel ?? 128,
            nHeads: o.heads ?? base?.nHeads ?? 4, nLayers: o.layers ?? base?.nLayers ?? 2,
            dFF: o.dFF ?? base?.dFF ?? 512, nClasses: labels.count, pooling: base?.pooling ?? .mean)
        config.padID = Int(tok.padID)
        config.bosID = Int(tok.bosID)
        if let base { config.normEps = base.normEps }
        guard tok.padID == 0, tok.bosID >= 0 else {
            throw TokenizerError(
                "\(tok.source): tokenizer must have pad_id=0 and a bos id (train it with `tangent tokenizer train`)")
        }
        guard config.dModel % config.nHeads == 0 else { throw RecipeError("--d-model must be a multiple of --heads") }
        try config.validate()
        return config
    }

    /// A fine-tuned Hugging Face model's recipe: every model starts from the pretrained
    /// directory it was fine-tuned from (config.json's `tangent.init`), with the same
    /// truncation length; architecture options do not apply.
    static func pretrained(
        _ recipe: Classifier, labels: LabelSet, recipePath: String, tokenizerOption: String?, overrides o: Overrides
    ) throws -> ModelRecipe {
        let given =
            [("--d-model", o.dModel), ("--heads", o.heads), ("--layers", o.layers), ("--d-ff", o.dFF)]
            .filter { $0.1 != nil }.map(\.0) + (tokenizerOption.map { [$0] } ?? [])
        guard given.isEmpty else {
            throw RecipeError(
                "\(given.joined(separator: ", ")): \(recipePath) is a fine-tuned \(recipe.model.architecture) model; its models start from its pretrained weights, so architecture and tokenizer options do not apply"
            )
        }
        guard let start = recipe.configJSON["init"] as? String else {
            throw DataError(
                "\(recipePath)/config.json: no 'tangent.init' (the pretrained directory it was fine-tuned from); fine-tune it with `tangent train --init` to use it as a recipe"
            )
        }
        let startURL = URL(fileURLWithPath: start)
        let length = o.maxLen ?? (recipe.encoder as? HFTextEncoder)?.maxLength ?? 64
        // What the runs start from: its architecture, its weights' bytes and its tokenizer.
        let probe = try ModelRegistry.loadForFineTuning(
            directory: startURL, labels: labels.names, maxLength: length, seed: 0, threads: 1
        ).0
        var identity = probe.model.configurationData
        identity.append(try WholeFile.read(startURL.appendingPathComponent(ModelDirectory.weightsFile)))
        identity.append(probe.encoder.identity)
        return ModelRecipe(
            summary: "fine-tuned from \(start) (\(probe.model.architecture)), max length \(length)",
            identity: fingerprint(identity)
        ) { seed, threads in
            let (loaded, _) = try ModelRegistry.loadForFineTuning(
                directory: startURL, labels: labels.names, maxLength: length, seed: seed, threads: threads)
            return try Classifier(model: loaded.model, encoder: loaded.encoder, labels: loaded.labels)
        }
    }
}
