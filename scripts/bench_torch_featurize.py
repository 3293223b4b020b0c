#!/usr/bin/env python3
"""PyTorch's per-example gradients of a BERT-family classifier, the reference for
`tangent bench featurize --model-config CONFIG`: the same architecture from the same
config.json (random weights, 2 labels, eval mode), texts of T random ids, and
torch.func.vmap(grad) of the pNTK output (sum of the logits / sqrt(2)) over chunks of
texts. No projection: this is PyTorch's gradients alone. Prints texts/s and peak memory.

    python3 scripts/bench_torch_featurize.py CONFIG.json [--tokens 64] [--texts 64] [--chunk 8] [--threads 2]

Needs torch and transformers (installed from PyPI when missing).
"""
import argparse
import json
import resource
import subprocess
import sys
import time

parser = argparse.ArgumentParser()
parser.add_argument("config")
parser.add_argument("--tokens", type=int, default=64)
parser.add_argument("--texts", type=int, default=64)
parser.add_argument("--chunk", type=int, default=8)
parser.add_argument("--threads", type=int, default=2)
args = parser.parse_args()

try:
    import torch
    import transformers
except ImportError:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "transformers", "torch"], check=True)
    import torch
    import transformers
from torch.func import functional_call, grad, vmap  # noqa: E402
from transformers import AutoConfig, AutoModelForSequenceClassification  # noqa: E402

torch.set_num_threads(args.threads)
with open(args.config) as f:
    raw = json.load(f)
config = AutoConfig.for_model(raw["model_type"], **{k: v for k, v in raw.items() if k not in ("model_type", "architectures")})
config.num_labels = 2
config._attn_implementation = "eager"
torch.manual_seed(0)
model = AutoModelForSequenceClassification.from_config(config).eval()
params = {k: v.detach() for k, v in model.named_parameters()}
count = sum(v.numel() for v in params.values())
generator = torch.Generator().manual_seed(3)
ids = torch.randint(5, config.vocab_size, (args.texts, args.tokens), generator=generator)


# DeBERTa warns when the last or first id is the padding id, a data-dependent test that
# vmap cannot trace; an explicit all-ones mask skips it (and masks nothing). The other
# types branch on the mask's values instead, so they get none.
mask = {"attention_mask": torch.ones(1, args.tokens, dtype=torch.long)} if raw["model_type"] == "deberta-v2" else {}


def output(p, x):
    return functional_call(model, p, (x.unsqueeze(0),), mask).logits[0].sum() / 2 ** 0.5


per_example = vmap(grad(output), in_dims=(None, 0))
per_example(params, ids[: args.chunk])  # warm-up
start = time.perf_counter()
for s in range(0, args.texts, args.chunk):
    g = per_example(params, ids[s : s + args.chunk])
    del g
elapsed = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(f"torch {torch.__version__}, transformers {transformers.__version__}: {raw['model_type']} hidden {config.hidden_size}, "
      f"{config.num_hidden_layers} layers, {count} parameters, {args.tokens} tokens, {args.texts} texts in chunks of {args.chunk}, "
      f"{args.threads} threads")
print(f"torch.func.vmap(grad): {elapsed:.2f} s, {args.texts / elapsed:.1f} examples/s; peak memory {peak:.0f} MiB")
