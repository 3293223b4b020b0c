import TangentTensor

/// AdamW (Loshchilov & Hutter): Adam with decoupled weight decay, over a flat vector.
public struct AdamW: Sendable {
    public var beta1: Double = 0.9
    public var beta2: Double = 0.999
    public var epsilon: Double = 1e-8
    public var weightDecay: Double
    /// Per-parameter decay mask: true where weight decay applies (matrices), false for
    /// biases, LayerNorm and position tables as is customary.
    public let decayMask: [Bool]
    private var m: [Float]
    private var v: [Float]
    public private(set) var step = 0

    public init(parameterCount: Int, weightDecay: Double, decayMask: [Bool]) {
        precondition(decayMask.count == parameterCount)
        self.weightDecay = weightDecay
        self.decayMask = decayMask
        m = [Float](repeating: 0, count: parameterCount)
        v = [Float](repeating: 0, count: parameterCount)
    }

    /// The moment estimates and step count, everything besides the parameters that a
    /// resumed run needs to continue bit for bit.
    public var state: (m: [Float], v: [Float], step: Int) { (m, v, step) }

    /// Restores a state saved from `state`.
    public mutating func restore(m: [Float], v: [Float], step: Int) throws {
        guard m.count == self.m.count, v.count == self.v.count, step >= 0 else {
            throw TrainingError("optimizer state has \(m.count) moments for \(self.m.count) parameters")
        }
        self.m = m
        self.v = v
        self.step = step
    }

    /// One update of `params` with `grads` at learning rate `lr`.
    public mutating func update(
        params: UnsafeMutableBufferPointer<Float>, grads: UnsafeBufferPointer<Float>, lr: Double
    ) {
        step += 1
        let b1 = Float(beta1)
        let b2 = Float(beta2)
        let eps = Float(epsilon)
        let c1 = Float(1 / (1 - Double.pow(beta1, step)))
        let c2 = Float(1 / (1 - Double.pow(beta2, step)))
        let lrF = Float(lr)
        let wd = Float(lr * weightDecay)
        let n = params.count
        m.withUnsafeMutableBufferPointer { m in
            v.withUnsafeMutableBufferPointer { v in
                decayMask.withUnsafeBufferPointer { mask in
                    for i in 0..<n {
                        let g = grads[i]
                        m[i] = b1 * m[i] + (1 - b1) * g
                        v[i] = b2 * v[i] + (1 - b2) * g * g
                        let mh = m[i] * c1
                        let vh = v[i] * c2
                        var p = params[i]
                        if mask[i] { p -= wd * p }
                        params[i] = p - lrF * mh / (vh.squareRoot() + eps)
                    }
                }
            }
        }
    }
}

/// Learning rate with linear warm-up then linear or cosine decay to `final` x peak.
public struct LearningRateSchedule: Sendable, Equatable {
    public enum Decay: String, Sendable, CaseIterable, Codable { case linear, cosine, constant }
    public var peak: Double
    public var warmupSteps: Int
    public var totalSteps: Int
    public var decay: Decay
    public var finalFraction: Double = 0.0

    public init(peak: Double, warmupSteps: Int, totalSteps: Int, decay: Decay) {
        self.peak = peak
        self.warmupSteps = warmupSteps
        self.totalSteps = totalSteps
        self.decay = decay
    }

    /// Rate at step (0-based).
    public func rate(at step: Int) -> Double {
        if step < warmupSteps { return peak * Double(step + 1) / Double(warmupSteps) }
        let span = max(1, totalSteps - warmupSteps)
        let t = min(1, Double(step - warmupSteps) / Double(span))
        let lo = peak * finalFraction
        switch decay {
        case .constant: return peak
        case .linear: return lo + (peak - lo) * (1 - t)
        case .cosine: return lo + (peak - lo) * 0.5 * (1 + cos(Double.pi * t))
        }
    }
}

#if canImport(Glibc)
    import Glibc
#endif
