// swift-format-ignore-file
// The examples of docs/library.md, verbatim and in order (ReadmeExamplesTests checks
// that they match and runs this program from the repository root).
import Tangent

let model = try Classifier(directory: URL(fileURLWithPath: "models/movie-snippets"))
let train = try DatasetReader().read(URL(fileURLWithPath: "data/movie-snippets/train.jsonl"))
let attributor = try Attributor(model: model, training: train, kernel: .projTrntk, projDim: 1024)
let explanation = try attributor.explain("a tedious, overlong mess", top: 5)
print(explanation.label, explanation.proponents.map(\.text))

// How far to trust the attributions: an LDS study. The model's recipe (its config.json's
// training record) retrained on 8 random halves of 200 training texts; each kernel's
// attributions summed over a half should predict that retraining's margins on the test texts.
let test = try DatasetReader().read(URL(fileURLWithPath: "data/movie-snippets/test.jsonl"))
let sampled = Array(train.prefix(200))
let recipe = try LDSRecipe(of: URL(fileURLWithPath: "models/movie-snippets"), labels: LabelSet(collecting: sampled))
let runs = FileManager.default.temporaryDirectory.appendingPathComponent("tangent-lds-\(UUID().uuidString)")
var study = LDSStudy(recipe: recipe, train: sampled, test: Array(test.prefix(100)), directory: runs)
(study.kernels, study.subsets, study.projDim) = ([.gradCos, .projTrntk], 8, 256)
for k in try study.run().kernels { print(k.kernel, k.lds.mean) }
try FileManager.default.removeItem(at: runs)

import Foundation
import TangentModel
import TangentTensor

// Once, at the start: the toolkit splits batches over cores itself and runs BLAS
// single-threaded inside each part (the `tangent` CLI does the same).
BLASThreads.set(1)
let clf = try Classifier(directory: URL(fileURLWithPath: "models/movie-snippets"))
for p in try clf.predict(["A warm, funny film."]) {
    print(p.label, p.probabilities)
}
// Per-example gradients of the logits' sum over the head tensors:
let network = clf.model
let batch = TokenBatch(sequences: try ["good", "bad"].map(clf.encode))
// rowInvariant: a text's results do not depend on the batch (what feature extraction uses).
let logits = try network.forward(batch, rowInvariant: true)
let subset = try ParameterSubset(layout: network.layout, prefixes: ["head"])
var grads = [Float](repeating: 0, count: batch.count * subset.count)
grads.withUnsafeMutableBufferPointer {
    network.perExampleGradients(seed: [Float](repeating: 1, count: logits.count), subset: subset, into: $0)
}

import TangentData
import TangentFeatures

// Exact trNTK between two small sets, with per-layer parts.
let computer = try GradientComputer(model: clf.model, prefixes: ["all"])
let a = try ["a fine film", "dull"].map(clf.encode), b = try ["great fun"].map(clf.encode)
let k = try ExactKernel.compute(computer, a: a, b: b, kind: .trntk)
print(k.total, k.parts.map(\.group))

// Projected pNTK features (K = 4096) of a batch: [outputs, texts, K].
let projector = Projector(dimension: 4096, seed: 0)
let block = try computer.gradients(TokenBatch(sequences: a), output: .pseudoNTK)
let features = projector.project(block, computer: computer)

// Or stream a whole data set to a resumable feature file.
var options = FeaturizeOptions(kind: .trntk)
options.projDim = 256
let texts = try DatasetReader().read(URL(fileURLWithPath: "data/movie-snippets/test.jsonl"))
let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("tangent-readme-\(UUID().uuidString)")
let file = try Featurizer(classifier: clf, options: options)
    .run(texts: Array(texts.prefix(64)), source: "movie-snippets/test", to: scratch.appendingPathComponent("test.safetensors"),
         replace: .featureFile)
print(file.metadata.texts, "texts featurized")

import TangentAttribution

let sample = train.enumerated().filter { $0.offset % 40 == 0 }.map(\.element)
let engine = try AttributionEngine(classifier: clf, train: sample, kernel: .projTrntk, projDim: 256, seed: 0,
                                   cache: scratch)
for e in try engine.explain(["A warm, funny film."], top: 3) {
    print(e.label, e.probability, "surrogate:", e.surrogateProbability)
    for p in e.proponents { print("  +", p.score, p.text) }
    for o in e.opponents { print("  -", o.score, o.text) }
}
try FileManager.default.removeItem(at: scratch)
