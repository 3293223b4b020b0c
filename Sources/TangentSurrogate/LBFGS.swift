/// Limited-memory BFGS (Nocedal & Wright, algorithm 7.4/7.5) with a backtracking
/// Armijo line search, for smooth convex objectives such as the kernel surrogate's
/// regularized cross-entropy.
public struct LBFGS {
    /// Pairs of (step, gradient change) kept.
    public var memory = 10
    public var maxIterations = 1000
    /// Stop when the gradient's largest entry falls below this.
    public var gradientTolerance = 1e-6
    /// Or when the objective's relative decrease falls below this.
    public var relativeTolerance = 1e-12

    public init() {}

    /// Outcome of a minimization.
    public struct Result {
        public let x: [Double]
        public let value: Double
        public let gradientNorm: Double
        public let iterations: Int
        /// Evaluations of the objective, line-search trials included.
        public let evaluations: Int
        public let converged: Bool
    }

    /// Minimizes `f` (value and gradient) from `x0`. `stationary(g, slack)`, if given, is
    /// an extra condition for convergence besides "largest gradient entry below slack x
    /// gradientTolerance" (slack is 1, or 100 where the objective has stopped decreasing):
    /// for objectives whose gradient is tiny far from the optimum. `preconditioner`, if given, applies
    /// M^-1 in place for a symmetric positive definite M that approximates the Hessian:
    /// it becomes the initial inverse Hessian of every step (scaled by s^T y / y^T M^-1 y),
    /// which on ill-conditioned problems saves most iterations.
    public func minimize(
        _ x0: [Double], preconditioner: ((inout [Double]) -> Void)? = nil,
        stationary: ((_ gradient: [Double], _ slack: Double) -> Bool)? = nil,
        _ f: ([Double]) -> (Double, [Double])
    ) -> Result {
        var x = x0
        var (fx, g) = f(x)
        var pairs = Pairs(capacity: memory, preconditioner: preconditioner)
        var iter = 0
        var evaluations = 1
        var history: [Double] = []
        let window = 20
        let stallTolerance = 1e-9
        let tolerance = gradientTolerance
        func isStationary(_ g: [Double], _ slack: Double) -> Bool {
            infNorm(g) < slack * tolerance && (stationary?(g, slack) ?? true)
        }
        let infNorm = LBFGS.infNorm
        let dot = LBFGS.dot
        while iter < maxIterations {
            if isStationary(g, 1) {
                return Result(
                    x: x, value: fx, gradientNorm: infNorm(g), iterations: iter, evaluations: evaluations,
                    converged: true)
            }
            let q = LBFGS.inverseHessianTimes(
                g, s: pairs.s, y: pairs.y, rho: pairs.rho, gamma: pairs.gamma, preconditioner: preconditioner)
            var d = q.map { -$0 }
            var slope = dot(g, d)
            if slope >= 0 {
                // Not a descent direction (numerical trouble): restart from steepest descent.
                pairs.reset()
                d = g.map { -$0 / max(1, infNorm(g)) }
                slope = dot(g, d)
            }
            let (accepted, xn, fn, gn, trials) = LBFGS.lineSearch(x, fx, direction: d, slope: slope, f)
            evaluations += trials
            iter += 1
            if !accepted {
                // No decrease along a descent direction: the objective is flat to working
                // precision; converged if the gradient is small on the objective's scale.
                return Result(
                    x: x, value: fx, gradientNorm: infNorm(g), iterations: iter, evaluations: evaluations,
                    converged: infNorm(g) < gradientTolerance || infNorm(g) < 1e-4 * max(1, abs(fx)))
            }
            pairs.add(step: zip(xn, x).map { $0 - $1 }, gradientChange: zip(gn, g).map { $0 - $1 })
            let decrease = fx - fn
            x = xn
            g = gn
            let old = fx
            fx = fn
            if decrease <= relativeTolerance * max(1, abs(old)) && isStationary(g, 100) {
                return Result(
                    x: x, value: fx, gradientNorm: infNorm(g), iterations: iter, evaluations: evaluations,
                    converged: true)
            }
            // Stalled: over the last `window` steps the objective fell by less than
            // stallTolerance of itself (relative to |f|, so a tiny objective still counts).
            // Then the objective's resolution is reached; accept if the absolute test holds.
            history.append(fx)
            if history.count > window {
                let before = history.removeFirst()
                if before - fx <= stallTolerance * abs(fx) && infNorm(g) < 100 * tolerance {
                    return Result(
                        x: x, value: fx, gradientNorm: infNorm(g), iterations: iter, evaluations: evaluations,
                        converged: true)
                }
            }
        }
        return Result(
            x: x, value: fx, gradientNorm: infNorm(g), iterations: iter, evaluations: evaluations,
            converged: isStationary(g, 1))
    }

    /// Backtracking from step 1 along `d` until the Armijo condition holds (at most 60
    /// halvings): whether a step was accepted, the new point, its value and gradient, and
    /// the evaluations made.
    static func lineSearch(
        _ x: [Double], _ fx: Double, direction d: [Double], slope: Double, _ f: ([Double]) -> (Double, [Double])
    ) -> (accepted: Bool, x: [Double], value: Double, gradient: [Double], evaluations: Int) {
        var t = 1.0
        var xn = x
        var fn = fx
        var gn: [Double] = []
        for trial in 0..<60 {
            for k in x.indices { xn[k] = x[k] + t * d[k] }
            (fn, gn) = f(xn)
            if fn.isFinite && fn <= fx + 1e-4 * t * slope { return (true, xn, fn, gn, trial + 1) }
            t *= 0.5
        }
        return (false, xn, fn, gn, 60)
    }

    /// The newest (step, gradient change) pairs with rho = 1 / s^T y, and with a
    /// preconditioner the newest pair's s^T y / y^T M^-1 y.
    struct Pairs {
        let capacity: Int
        let preconditioner: ((inout [Double]) -> Void)?
        var s: [[Double]] = []
        var y: [[Double]] = []
        var rho: [Double] = []
        var gamma: Double?

        init(capacity: Int, preconditioner: ((inout [Double]) -> Void)?) {
            self.capacity = capacity
            self.preconditioner = preconditioner
        }

        mutating func reset() {
            s.removeAll()
            y.removeAll()
            rho.removeAll()
            gamma = nil
        }

        /// Keeps the pair when its curvature s^T y is positive on its scale.
        mutating func add(step sk: [Double], gradientChange yk: [Double]) {
            let sy = LBFGS.dot(sk, yk)
            guard sy > 1e-12 * LBFGS.dot(yk, yk).squareRoot() * LBFGS.dot(sk, sk).squareRoot() else { return }
            s.append(sk)
            y.append(yk)
            rho.append(1 / sy)
            if let applyInverse = preconditioner {
                var my = yk
                applyInverse(&my)
                let ymy = LBFGS.dot(yk, my)
                gamma = ymy > 0 ? sy / ymy : nil
            }
            if s.count > capacity {
                s.removeFirst()
                y.removeFirst()
                rho.removeFirst()
            }
        }
    }

    /// H g by the two-loop recursion over the stored pairs (s, y, rho = 1 / s^T y), with the
    /// initial inverse Hessian M^-1 scaled by `gamma` when preconditioned, else the newest
    /// pair's s^T y / y^T y (or 1 / |g|_inf before any pair).
    static func inverseHessianTimes(
        _ g: [Double], s: [[Double]], y: [[Double]], rho: [Double], gamma: Double?,
        preconditioner: ((inout [Double]) -> Void)?
    ) -> [Double] {
        let infNorm = LBFGS.infNorm
        let dot = LBFGS.dot
        var q = g
        var alpha = [Double](repeating: 0, count: s.count)
        for i in stride(from: s.count - 1, through: 0, by: -1) {
            alpha[i] = rho[i] * dot(s[i], q)
            for k in q.indices { q[k] -= alpha[i] * y[i][k] }
        }
        if let applyInverse = preconditioner {
            applyInverse(&q)
            let scale = gamma ?? 1 / max(1, infNorm(q))
            for k in q.indices { q[k] *= scale }
        } else if let ls = s.last, let ly = y.last {
            let gamma = dot(ls, ly) / dot(ly, ly)
            for k in q.indices { q[k] *= gamma }
        } else {
            let scale = 1 / max(1, infNorm(g))
            for k in q.indices { q[k] *= scale }
        }
        for i in s.indices {
            let beta = rho[i] * dot(y[i], q)
            for k in q.indices { q[k] += s[i][k] * (alpha[i] - beta) }
        }
        return q
    }

    static func infNorm(_ v: [Double]) -> Double { v.reduce(0) { max($0, abs($1)) } }

    static func dot(_ a: [Double], _ b: [Double]) -> Double {
        var t = 0.0
        for i in a.indices { t += a[i] * b[i] }
        return t
    }
}
