import Foundation
import TangentModel
import TangentTensor

/// Hyper-parameters of a training run; stored under `"training"` in `config.json`.
public struct TrainingOptions: Codable, Sendable, Equatable {
    public var epochs: Int = 5
    public var batchSize: Int = 32
    public var learningRate: Double = 1e-3
    /// Share of all steps spent warming the learning rate up linearly.
    public var warmupFraction: Double = 0.1
    public var decay: LearningRateSchedule.Decay = .linear
    public var weightDecay: Double = 0.01
    /// Global gradient-norm clip (0 = off).
    public var clipNorm: Double = 1.0
    public var dropout: Double = 0.1
    public var seed: UInt64 = 0

    enum CodingKeys: String, CodingKey {
        case epochs
        case batchSize = "batch_size"
        case learningRate = "learning_rate"
        case warmupFraction = "warmup_fraction"
        case decay
        case weightDecay = "weight_decay"
        case clipNorm = "clip_norm"
        case dropout, seed
    }

    public init() {}

    /// Checks ranges; the message names the option.
    public func validate() throws {
        guard epochs >= 1 else { throw TrainingError("epochs must be at least 1") }
        guard batchSize >= 1 else { throw TrainingError("batch size must be at least 1") }
        guard learningRate > 0, learningRate.isFinite else { throw TrainingError("learning rate must be positive") }
        guard (0..<1).contains(warmupFraction) else { throw TrainingError("warm-up fraction must be in [0, 1)") }
        guard weightDecay >= 0 else { throw TrainingError("weight decay must be non-negative") }
        guard clipNorm >= 0 else { throw TrainingError("clip norm must be non-negative") }
        guard (0..<1).contains(dropout) else { throw TrainingError("dropout must be in [0, 1)") }
    }
}

/// Why training stopped early or could not start.
public struct TrainingError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// Encoded texts (BOS first) with label indices.
public struct EncodedSet: Sendable {
    public var sequences: [[Int32]]
    public var labels: [Int]
    public init(sequences: [[Int32]], labels: [Int]) {
        precondition(sequences.count == labels.count)
        self.sequences = sequences
        self.labels = labels
    }
    public var count: Int { sequences.count }
}

/// What one epoch achieved.
public struct EpochSummary: Sendable, Codable {
    public let epoch: Int
    public let trainLoss: Double
    public let trainAccuracy: Double
    public let testLoss: Double?
    public let testAccuracy: Double?
    public let seconds: Double
    public let tokensPerSecond: Double

    enum CodingKeys: String, CodingKey {
        case epoch
        case trainLoss = "train_loss"
        case trainAccuracy = "train_accuracy"
        case testLoss = "test_loss"
        case testAccuracy = "test_accuracy"
        case seconds
        case tokensPerSecond = "tokens_per_second"
    }
}

/// Mini-batch training with AdamW, warm-up and decay, gradient clipping and dropout.
/// Everything random (initialization by the caller, shuffling, dropout) is a pure
/// function of the seed, so a run is reproducible for a fixed thread count.
public final class Trainer {
    public let model: any ClassifierModel<Float>
    public let options: TrainingOptions
    private var optimizer: AdamW
    private var gradient: [Float]
    public private(set) var step = 0

    public init(model: any ClassifierModel<Float>, options: TrainingOptions) throws {
        try options.validate()
        // Before anything is allocated: a batch too large for the machine is an error that
        // says the size, not an allocation abort in the first step.
        try model.checkTraining(batch: options.batchSize)
        self.model = model
        self.options = options
        var mask = [Bool](repeating: false, count: model.layout.count)
        for t in model.layout.tensors where t.decays {
            for i in t.range { mask[i] = true }
        }
        optimizer = AdamW(parameterCount: model.layout.count, weightDecay: options.weightDecay, decayMask: mask)
        gradient = [Float](repeating: 0, count: model.layout.count)
    }

    /// The optimizer's state after the last step (see `AdamW.state`).
    public var optimizerState: (m: [Float], v: [Float], step: Int) { optimizer.state }

    /// Continues from a run's finished epochs: the model already holds that epoch's
    /// weights, and `m`, `v`, `step` are the optimizer's state saved with them.
    public func restore(m: [Float], v: [Float], step: Int) throws {
        try optimizer.restore(m: m, v: v, step: step)
        self.step = step
    }

    /// Steps per epoch for `n` texts.
    public func stepsPerEpoch(_ n: Int) -> Int {
        (n + options.batchSize - 1) / options.batchSize
    }

    /// Trains for `options.epochs`. `progress(epoch, done, total, status)` reports steps;
    /// `onEpochEnd` runs after each epoch (e.g. to write a checkpoint). With
    /// `finishedEpochs`, training continues after that epoch (see `restore`). Stops with an
    /// error, before any update, when the loss or the gradient becomes NaN or infinite:
    /// the parameters then hold the last finite update.
    public func train(
        _ data: EncodedSet, test: EncodedSet?, after finishedEpochs: Int = 0,
        progress: (Int, Int, Int, String) -> Void = { _, _, _, _ in },
        onEpochEnd: (EpochSummary) throws -> Void = { _ in }
    ) throws -> [EpochSummary] {
        guard data.count > 0 else { throw TrainingError("no training texts") }
        let C = model.shape.classes
        let perEpoch = stepsPerEpoch(data.count)
        let schedule = LearningRateSchedule(options: options, stepsPerEpoch: perEpoch)
        var summaries: [EpochSummary] = []
        var losses = [Float](repeating: 0, count: options.batchSize)
        var probs = [Float](repeating: 0, count: options.batchSize * C)
        var seed = [Float](repeating: 0, count: options.batchSize * C)
        guard finishedEpochs >= 0, finishedEpochs < options.epochs, step == finishedEpochs * perEpoch else {
            throw TrainingError(
                "cannot continue after epoch \(finishedEpochs) of \(options.epochs) at step \(step) (\(perEpoch) steps per epoch)"
            )
        }
        for epoch in (finishedEpochs + 1)...options.epochs {
            let t0 = Date()
            let order = Trainer.permutation(data.count, seed: options.seed, epoch: UInt64(epoch))
            var lossSum = 0.0
            var correct = 0
            var seen = 0
            var tokens = 0
            for s in 0..<perEpoch {
                let idx = Array(order[(s * options.batchSize)..<min(data.count, (s + 1) * options.batchSize)])
                let B = idx.count
                let batch = TokenBatch(sequences: idx.map { data.sequences[$0] }, padID: model.shape.padID)
                let labels = idx.map { data.labels[$0] }
                let dropout =
                    options.dropout > 0
                    ? DropoutConfig(rate: options.dropout, seed: options.seed, step: UInt64(step)) : nil
                let logits = try model.forward(batch, dropout: dropout, rowInvariant: false)
                labels.withUnsafeBufferPointer { lb in
                    CrossEntropy.forward(
                        losses: &losses, probs: &probs, logits: logits, labels: lb.baseAddress!, b: B, c: C)
                    CrossEntropy.backward(
                        dlogits: &seed, probs: probs, labels: lb.baseAddress!, b: B, c: C, scale: 1 / Float(B))
                }
                let batchLoss = losses[0..<B].reduce(0.0) { $0 + Double($1) } / Double(B)
                guard batchLoss.isFinite else {
                    throw TrainingError(
                        "loss became \(batchLoss) at epoch \(epoch), step \(s + 1) (global step \(step + 1)); stopped before updating. Lower the learning rate; the last finished epoch's checkpoint is kept."
                    )
                }
                let lr = try update(
                    seed: Array(seed[0..<(B * C)]), epoch: epoch, stepInEpoch: s + 1, schedule: schedule)
                step += 1
                lossSum += batchLoss * Double(B)
                seen += B
                tokens += batch.tokenCount
                for b in 0..<B {
                    let row = probs[(b * C)..<((b + 1) * C)]
                    if Softmax.argmax(row) == labels[b] { correct += 1 }
                }
                progress(
                    epoch, s + 1, perEpoch,
                    String(
                        format: "loss %.4f acc %.3f lr %.2e", lossSum / Double(seen), Double(correct) / Double(seen), lr
                    ))
            }
            let seconds = Date().timeIntervalSince(t0)
            var testLoss: Double?
            var testAcc: Double?
            if let test, test.count > 0 {
                let r = try Trainer.evaluate(model, test)
                testLoss = r.loss
                testAcc = r.accuracy
            }
            let summary = EpochSummary(
                epoch: epoch, trainLoss: lossSum / Double(seen), trainAccuracy: Double(correct) / Double(seen),
                testLoss: testLoss, testAccuracy: testAcc, seconds: seconds,
                tokensPerSecond: Double(tokens) / max(seconds, 1e-9))
            summaries.append(summary)
            try onEpochEnd(summary)
        }
        return summaries
    }

    /// One optimizer step from the loss seed [B, C] of the current batch (whose forward
    /// pass was the last): the gradient, refused when its norm is not finite, clipped to
    /// `clipNorm`, then AdamW at the schedule's rate, which is returned.
    private func update(seed: [Float], epoch: Int, stepInEpoch: Int, schedule: LearningRateSchedule) throws -> Double {
        gradient.withUnsafeMutableBufferPointer { g in
            g.update(repeating: 0)
            model.backward(seed: seed, into: g)
        }
        let norm = gradient.withUnsafeBufferPointer {
            Float.dot(n: $0.count, x: $0.baseAddress!, y: $0.baseAddress!)
        }.squareRoot()
        guard norm.isFinite else {
            throw TrainingError(
                "gradient norm became \(norm) at epoch \(epoch), step \(stepInEpoch); stopped before updating. Lower the learning rate; the last finished epoch's checkpoint is kept."
            )
        }
        if options.clipNorm > 0 && Double(norm) > options.clipNorm {
            let scale = Float(options.clipNorm) / norm
            for i in gradient.indices { gradient[i] *= scale }
        }
        let lr = schedule.rate(at: step)
        gradient.withUnsafeBufferPointer { g in optimizer.update(params: model.parameters, grads: g, lr: lr) }
        return lr
    }

    /// Mean cross-entropy, accuracy and predicted classes of `model` on `set` (no dropout).
    public static func evaluate(_ model: any ClassifierModel<Float>, _ set: EncodedSet, batchSize: Int = 256)
        throws -> (loss: Double, accuracy: Double, predicted: [Int])
    {
        let C = model.shape.classes
        var lossSum = 0.0
        var predicted: [Int] = []
        // The network's one prediction path, the logits `predict` and `evaluate` give.
        _ = try model.logits(sequences: set.sequences, batchSize: batchSize) { z, start in
            let B = z.count / C
            var losses = [Float](repeating: 0, count: B)
            var probs = [Float](repeating: 0, count: B * C)
            let labels = Array(set.labels[start..<(start + B)])
            CrossEntropy.forward(losses: &losses, probs: &probs, logits: z, labels: labels, b: B, c: C)
            lossSum += losses.reduce(0.0) { $0 + Double($1) }
            for b in 0..<B {
                let row = z[(b * C)..<((b + 1) * C)]
                predicted.append(Softmax.argmax(row))
            }
        }
        let correct = zip(predicted, set.labels).filter { $0 == $1 }.count
        return (lossSum / Double(max(1, set.count)), Double(correct) / Double(max(1, set.count)), predicted)
    }

    /// A permutation of 0..<n that is a pure function of (seed, epoch).
    public static func permutation(_ n: Int, seed: UInt64, epoch: UInt64) -> [Int] {
        let rng = CounterRNG.derive(seed, 0x5_4AFF1E, epoch)
        return (0..<n).map { ($0, rng.bits(UInt64($0))) }.sorted { $0.1 < $1.1 }.map(\.0)
    }
}
