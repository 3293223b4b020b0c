#!/usr/bin/env python3
"""Reference forward pass of the model-format spec in NumPy, reading a model directory
with the official `safetensors` and `sentencepiece` packages. It mirrors the PyTorch
module the spec describes (nn.Linear weights [out, in], nn.LayerNorm with biased
variance, exact erf GELU, key padding mask), so agreement with the Swift toolkit shows
that its checkpoints load into PyTorch with the same meaning.

Usage: python3 scripts/reference_forward.py MODEL_DIR "text" ["text" ...]
       python3 scripts/reference_forward.py --fixture MODEL_DIR OUT.json   (tests' fixture)
"""
import json
import math
import sys

import numpy as np
import sentencepiece as spm
from safetensors.numpy import load_file

ERF = np.vectorize(math.erf)


def layer_norm(x, w, b, eps):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)  # biased, as torch.nn.LayerNorm
    return (x - mu) / np.sqrt(var + eps) * w + b


def linear(x, w, b):
    return x @ w.T + b  # torch.nn.Linear: weight [out, in]


def forward(model_dir, texts):
    cfg = json.load(open(f"{model_dir}/config.json"))
    W = {k: v.astype(np.float64) for k, v in load_file(f"{model_dir}/model.safetensors").items()}
    sp = spm.SentencePieceProcessor(model_file=f"{model_dir}/tokenizer.model")
    seqs = [[cfg["bos_id"]] + sp.encode(t)[: cfg["max_len"] - 1] for t in texts]
    T = max(len(s) for s in seqs)
    ids = np.array([s + [cfg["pad_id"]] * (T - len(s)) for s in seqs])  # padded batch
    mask = ids != cfg["pad_id"]
    D, H = cfg["d_model"], cfg["n_heads"]
    dh = D // H
    eps = cfg["norm_eps"]
    h = W["embeddings.token.weight"][ids] + W["embeddings.position.weight"][:T][None]
    for i in range(cfg["n_layers"]):
        p = f"blocks.{i}."
        a = layer_norm(h, W[p + "norm1.weight"], W[p + "norm1.bias"], eps)
        qkv = linear(a, W[p + "attn.qkv.weight"], W[p + "attn.qkv.bias"])
        q, k, v = np.split(qkv, 3, axis=-1)
        outs = []
        for j in range(H):
            sl = slice(j * dh, (j + 1) * dh)
            s = q[..., sl] @ np.swapaxes(k[..., sl], 1, 2) / math.sqrt(dh)
            s = np.where(mask[:, None, :], s, -np.inf)
            s = np.exp(s - s.max(-1, keepdims=True))
            s /= s.sum(-1, keepdims=True)
            outs.append(s @ v[..., sl])
        h = h + linear(np.concatenate(outs, -1), W[p + "attn.proj.weight"], W[p + "attn.proj.bias"])
        m = layer_norm(h, W[p + "norm2.weight"], W[p + "norm2.bias"], eps)
        f = linear(m, W[p + "mlp.fc1.weight"], W[p + "mlp.fc1.bias"])
        f = f * 0.5 * (1 + ERF(f / math.sqrt(2)))
        h = h + linear(f, W[p + "mlp.fc2.weight"], W[p + "mlp.fc2.bias"])
    hf = layer_norm(h, W["norm.weight"], W["norm.bias"], eps)
    if cfg.get("pooling", "mean") == "cls":
        e = hf[:, 0]
    else:
        e = (hf * mask[..., None]).sum(1) / mask.sum(1, keepdims=True)
    return seqs, e, linear(e, W["head.weight"], W["head.bias"])


if __name__ == "__main__":
    if sys.argv[1] == "--fixture":
        model_dir, out = sys.argv[2], sys.argv[3]
        texts = [json.loads(l)["text"] for l in open("data/movie-snippets/test.jsonl", encoding="utf-8")][:24]
        texts += ["x", "Unicode: naïve café ☃ 🙂 " * 6]
        seqs, e, z = forward(model_dir, texts)
        json.dump({"cases": [{"text": t, "ids": s, "embedding": ei.tolist(), "logits": zi.tolist()}
                             for t, s, ei, zi in zip(texts, seqs, e, z)]},
                  open(out, "w", encoding="utf-8"), ensure_ascii=False)
        print(f"wrote {len(texts)} cases to {out}")
    else:
        _, _, z = forward(sys.argv[1], sys.argv[2:])
        for t, zi in zip(sys.argv[2:], z):
            print(" ".join(f"{x:.6f}" for x in zi), "\t", t)
