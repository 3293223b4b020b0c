#!/usr/bin/env python3
"""Research for issue 31 (item 5): which attribution built from a model's projected NTK
features predicts retraining best? Reads a finished `tangent lds` run (OUT/sample.json: the
texts, compared classes, subsets and subset models' margins) and the feature files its
kernels left in the cache (--cache), and scores variants that tangent does not have as
methods yet, with the LDS exactly as tangent computes it (per test text, Spearman over
subsets of the attributions summed over each subset against the subset model's margin;
texts with constant sums or margins left out; the mean).

The variants differ in two things only, because per test text the Spearman correlation
ignores any factor that depends on the test text alone:
  - the feature space: the loss gradient (tangent's `grad` features), or per-class logit
    gradients (`trntk` features) combined into the compared class's margin gradient
    (test side) and the loss gradient or the margin gradient of its own label (training
    side), or centered across classes (the softmax ignores a shift of every logit);
  - the training side's weight: the norm of its gradient to a power, the label residual.
Also the kGLM surrogate (L2 logistic regression on the kernel rows) on the centered trNTK.

    python3 scripts/lds_variants.py OUT --cache CACHE [--models 1]
Prints one line per variant; not run in CI.
"""
import argparse
import glob
import json
import struct

import numpy as np
from scipy.optimize import minimize
from scipy.stats import rankdata

parser = argparse.ArgumentParser()
parser.add_argument("run")
parser.add_argument("--cache", required=True)
parser.add_argument("--models", type=int, default=1, help="average over the first N models of the run (model-0 ... model-N-1)")
parser.add_argument("--surrogate", action="store_true", help="also fit the kGLM surrogate on the centered trNTK")
parser.add_argument("--checkpoints", action="store_true",
                    help="also average grad-cos over every checkpoint's loss-gradient features in the cache (TracIn's, of "
                         "every model of the run), each cosine-normalized")
parser.add_argument("--layers", nargs=2, metavar=("TRAIN", "TEST"),
                    help="proj-trntk feature files made with `tangent featurize --per-layer` on the run's sampled texts "
                         "(model-0): layer-group selection and weights, fitted on half the subsets and scored on the other")
args = parser.parse_args()

sample = json.load(open(f"{args.run}/sample.json"))
labels = sample["labels"]
C = len(labels)
y = np.array([labels.index(r["label"]) for r in sample["train"]])
compared = np.array(sample["compared"])
subsets = sample["subsets"]
margins = np.array(sample["margins"])  # [subsets, tests]
n, T = len(y), len(compared)
member = np.zeros((len(subsets), n))
for s, m in enumerate(subsets):
    member[s, m] = 1


def read(path):
    with open(path, "rb") as f:
        size = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(size))
        base = 8 + size
        out = {"meta": header.get("__metadata__", {})}
        for name, info in header.items():
            if name == "__metadata__":
                continue
            a, b = info["data_offsets"]
            f.seek(base + a)
            dtype = {"F32": np.float32, "F64": np.float64, "I64": np.int64, "I32": np.int32, "U8": np.uint8}[info["dtype"]]
            out[name] = np.frombuffer(f.read(b - a), dtype=dtype).reshape(info["shape"])
    return out


def features(kernel, model_dir):
    """The train and test feature files of `kernel` for the model in `model_dir`."""
    found = {}
    for path in glob.glob(f"{args.cache}/*.safetensors"):
        m = read_meta(path)
        if m.get("format") != "tangent-features-1" or m.get("kernel") != kernel or not m.get("model", "").endswith(model_dir):
            continue
        texts = int(m["texts"])
        if m["source"] == "training data" and texts == n:
            found["train"] = read(path)
        elif m["source"] == "test texts" and texts == T:
            found["test"] = read(path)
    if len(found) != 2:
        return None
    return found["train"], found["test"]


def read_meta(path):
    with open(path, "rb") as f:
        size = struct.unpack("<Q", f.read(8))[0]
        return json.loads(f.read(size)).get("__metadata__", {})


def lds(scores):
    """tangent's LDS of scores [tests, n]."""
    sums = member @ scores.T  # [subsets, tests]
    values = []
    for t in range(T):
        a, b = sums[:, t], margins[:, t]
        if np.ptp(a) == 0 or np.ptp(b) == 0:
            continue
        values.append(np.corrcoef(rankdata(a), rankdata(b))[0, 1])
    return float(np.mean(values))


def softmax(z):
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def normalize(v):
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-30)


def margin_coefficients(p, c):
    """d m_c / d z_k for m_c = log p_c - log(1 - p_c): 1 at c, -p_k / (1 - p_c) elsewhere."""
    a = -p / np.maximum(1 - p[np.arange(len(c)), c], 1e-30)[:, None]
    a[np.arange(len(c)), c] = 1
    return a


def kglm(K, lam):
    """L2 logistic regression on kernel rows K [n, n] (mean cross-entropy + lam/2 |W|^2)."""
    onehot = np.eye(C)[y]

    def f(w):
        W, b = w[: C * n].reshape(C, n), w[C * n:]
        z = K @ W.T + b
        p = softmax(z)
        loss = -np.mean(np.log(np.maximum(p[np.arange(n), y], 1e-300))) + lam / 2 * np.sum(W * W)
        r = (p - onehot) / n
        return loss, np.concatenate([(r.T @ K + lam * W).ravel(), r.sum(0)])

    w = minimize(f, np.zeros(C * n + C), jac=True, method="L-BFGS-B", options={"maxiter": 2000, "gtol": 1e-9}).x
    return w[: C * n].reshape(C, n), w[C * n:]


rows = {}
for j in range(args.models):
    model_dir = f"model-{j}"
    grad = features("grad", model_dir)
    tr = features("trntk", model_dir)
    if grad is None:
        raise SystemExit(f"no grad features for {model_dir} in {args.cache}")
    gi, gt = grad[0]["features"][:, 0, :].astype(np.float64), grad[1]["features"][:, 0, :].astype(np.float64)
    p = softmax(grad[0]["logits"].astype(np.float64))
    resid = 1 - p[np.arange(n), y]
    dot = gt @ gi.T
    norms = np.linalg.norm(gi, axis=1)
    v = {}
    for beta in [0, 0.5, 1, 1.5, 2, 3]:
        v[f"loss grad, train norm^-{beta}"] = dot / norms[None, :] ** beta
    cos = normalize(gt) @ normalize(gi).T
    for alpha in [0.5, 1, -0.5, -1]:
        v[f"grad-cos x residual^{alpha}"] = cos * resid[None, :] ** alpha
    if tr is not None:
        fi, ft = tr[0]["features"].astype(np.float64), tr[1]["features"].astype(np.float64)  # [., C, K]
        pt = softmax(tr[1]["logits"].astype(np.float64))
        pi = softmax(tr[0]["logits"].astype(np.float64))
        u = np.einsum("tk,tkd->td", margin_coefficients(pt, compared), ft)  # test: margin gradient
        lossgrad = np.einsum("ik,ikd->id", pi - np.eye(C)[y], fi)
        v["margin grad (test) . -loss grad (train), cos"] = -normalize(u) @ normalize(lossgrad).T
        v["margin grad (test) . -loss grad (train), dot"] = -u @ lossgrad.T
        # Centered trNTK: every class's gradient minus their mean.
        ci, ct = fi - fi.mean(1, keepdims=True), ft - ft.mean(1, keepdims=True)
        ci2, ct2 = ci.reshape(n, -1), ct.reshape(T, -1)
        kc = normalize(ct2) @ normalize(ci2).T
        resid_c = (np.eye(C)[y][None, :, :] - pi[None, :, :])  # [1, n, C]
        sign = np.where(y[None, :] == compared[:, None], 1.0, -1.0)
        v["centered trNTK cos x label sign"] = kc * sign
        v["centered trNTK cos x label residual"] = kc * resid_c[0][:, compared].T
        k_tr = normalize(ft.reshape(T, -1)) @ normalize(fi.reshape(n, -1)).T
        v["trNTK cos x label sign"] = k_tr * sign
        # Nonlinear maps of the cosine: retraining may be driven by the nearest texts.
        for power in [2, 3, 5]:
            v[f"centered trNTK cos^{power} (signed) x label sign"] = np.sign(kc) * np.abs(kc) ** power * sign
        for tau in [0.05, 0.1, 0.2, 0.5]:
            v[f"centered trNTK exp(cos / {tau}) x label sign"] = np.exp((kc - 1) / tau) * sign
        v["centered trNTK max(cos, 0) x label sign"] = np.maximum(kc, 0) * sign
        # A constant added to the kernel adds a class-count term (each text votes for its label).
        for gamma in [-0.1, 0.1, 0.2, 0.5, 1]:
            v[f"(centered trNTK cos + {gamma:g}) x label sign"] = (kc + gamma) * sign
        v["class prior (label residual)"] = np.broadcast_to(resid_c[0][:, compared].T, kc.shape)
        kt = kc - kc.mean(1, keepdims=True)
        v["centered trNTK cos, centered per test text, x label sign"] = kt * sign
        kcc = normalize(ci2) @ normalize(ci2).T  # train x train
        v["centered trNTK squared (K K) x label sign"] = (kc @ kcc) * sign
        v["centered trNTK cos of kernel rows x label sign"] = (normalize(kc) @ normalize(kcc).T) * sign
        # Kernel ridge regression of the labels on the normalized kernel: its prediction
        # k_t^T (K + lambda I)^-1 y is linear in the labels; a training text's share is its
        # dual weight times its label. Redundant texts share one vote.
        evals, evecs = np.linalg.eigh(kcc)
        for lam in [0.1, 1, 10, 100]:
            dual = (kc @ evecs) / (evals + lam) @ evecs.T  # [T, n] = k_t^T (K + lam I)^-1
            v[f"centered trNTK kernel ridge, lambda {lam:g}, x label sign"] = dual * sign
        # Residual of the kernel vote's own leave-one-in fit: a training text whose
        # neighbours already vote for its label matters less.
        vote = (kcc * np.where(y[None, :] == y[:, None], 1.0, -1.0))
        np.fill_diagonal(vote, 0)
        support = vote.mean(1)
        for a in [1, 3, 10]:
            v[f"centered trNTK cos x label sign x sigmoid(-{a} support)"] = kc * sign / (1 + np.exp(a * support[None, :]))
        if args.surrogate:
            Kcc = normalize(ci2) @ normalize(ci2).T
            for lam in [1e-3, 1e-1, 10, 1000]:
                W, b = kglm(Kcc, lam)
                a = margin_coefficients(pt, compared)  # [T, C]
                v[f"centered trNTK kGLM representer, lambda {lam:g}"] = (a @ W) * kc
    for name, s in v.items():
        rows.setdefault(name, []).append(s)

for name, ss in rows.items():
    mean = sum(ss) / len(ss)
    per = [lds(s) for s in ss] if len(ss) > 1 else []
    print(f"{lds(mean):.3f}  {name}" + (f"   (per model {', '.join(f'{x:.3f}' for x in per)})" if per else ""))


def lds_on(scores, which):
    """LDS over the subsets `which` only."""
    sums = member[which] @ scores.T
    values = []
    for t in range(T):
        a, b = sums[:, t], margins[which, t]
        if np.ptp(a) == 0 or np.ptp(b) == 0:
            continue
        values.append(np.corrcoef(rankdata(a), rankdata(b))[0, 1])
    return float(np.mean(values))


if args.layers:
    a, b = read(args.layers[0]), read(args.layers[1])
    groups = a["meta"]["layer_groups"].split(",")
    la, lb = a["layer_features"].astype(np.float64), b["layer_features"].astype(np.float64)  # [., G, C, K]
    la -= la.mean(2, keepdims=True)
    lb -= lb.mean(2, keepdims=True)
    # Per group: the test x train products and each text's squared norm.
    dots = np.stack([lb[:, g].reshape(T, -1) @ la[:, g].reshape(n, -1).T for g in range(len(groups))])  # [G, T, n]
    sa = np.stack([np.sum(la[:, g] ** 2, axis=(1, 2)) for g in range(len(groups))])  # [G, n]
    sb = np.stack([np.sum(lb[:, g] ** 2, axis=(1, 2)) for g in range(len(groups))])
    pi = softmax(a["logits"].astype(np.float64))
    sign = np.where(y[None, :] == compared[:, None], 1.0, -1.0)

    def vote(w):
        k = np.tensordot(w, dots, 1) / np.sqrt(np.outer(sb.T @ w, sa.T @ w))
        return k * sign

    M = len(subsets)
    first, second = np.arange(M) < M // 2, np.arange(M) >= M // 2
    print("layer groups:", ", ".join(groups))
    print(f"{lds(vote(np.ones(len(groups)))):.3f}  centered trNTK vote, every group (as the whole-model features)")
    for g, name in enumerate(groups):
        w = np.zeros(len(groups)); w[g] = 1
        print(f"{lds(vote(w)):.3f}  group {name} alone   (share of the mean squared norm {sa[g].mean() / sa.sum(0).mean():.3f})")
    for start in range(1, len(groups)):
        w = np.zeros(len(groups)); w[start:] = 1
        print(f"{lds(vote(w)):.3f}  groups from {groups[start]} on")
    # Every group normalized on its own, then summed (each layer one vote).
    per = sum(dots[g] / np.sqrt(np.outer(sb[g], sa[g])) for g in range(len(groups))) * sign
    print(f"{lds(per):.3f}  sum over groups of each group's cosine")
    # Weights fitted on one half of the subsets, scored on the other (both ways).
    from scipy.optimize import minimize as _min
    for fit, score in [(first, second), (second, first)]:
        f = lambda lw: -lds_on(vote(np.exp(lw)), np.where(fit)[0])
        r = _min(f, np.zeros(len(groups)), method="Nelder-Mead", options={"maxiter": 300, "xatol": 1e-2, "fatol": 1e-4})
        w = np.exp(r.x) / np.exp(r.x).sum()
        print(f"{lds_on(vote(w), np.where(score)[0]):.3f} (held-out half; every group: {lds_on(vote(np.ones(len(groups))), np.where(score)[0]):.3f}, "
              f"fitted half {-r.fun:.3f})  weights " + ", ".join(f"{g} {x:.2f}" for g, x in zip(groups, w)))


if args.checkpoints:
    # TracIn's features of earlier checkpoints are stored with model "(in memory)".
    found = {}
    for path in glob.glob(f"{args.cache}/*.safetensors"):
        m = read_meta(path)
        if m.get("format") == "tangent-features-1" and m.get("kernel") == "grad" and m.get("model") == "(in memory)":
            texts = int(m["texts"])
            part = "train" if m["source"] == "training data" and texts == n else "test" if texts == T else None
            if part:
                found.setdefault(m["model_fingerprint"], {})[part] = path
    cosines = []
    for fingerprint, parts in sorted(found.items()):
        if len(parts) == 2:
            a, b = read(parts["train"]), read(parts["test"])
            c = normalize(b["features"][:, 0, :].astype(np.float64)) @ normalize(a["features"][:, 0, :].astype(np.float64)).T
            accuracy = float((a["logits"].argmax(1) == y).mean())
            print(f"{lds(c):.3f}  grad-cos at checkpoint {fingerprint} (training accuracy {accuracy:.3f})")
            cosines.append(c)
    if cosines:
        final = sum(rows["loss grad, train norm^-1"])
        print(f"{lds(sum(cosines)):.3f}  grad-cos summed over {len(cosines)} checkpoints")
        print(f"{lds(sum(cosines) + final):.3f}  grad-cos summed over the checkpoints and the final weights of {args.models} model(s)")
