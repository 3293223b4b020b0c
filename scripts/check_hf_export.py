#!/usr/bin/env python3
"""Checks a directory written by `tangent train --init` against transformers itself:
AutoModelForSequenceClassification and AutoTokenizer load it, id2label names the labels,
and for every text of DATA (tokenized by transformers, truncated at the saved
model_max_length) the logits equal tangent's (`tangent predict --json`, which this script
runs). Prints the largest relative logit difference and exits non-zero above 1e-4.

    python3 scripts/check_hf_export.py MODEL_DIR DATA.jsonl [--tangent .build/release/tangent]

Installs transformers, torch and safetensors from PyPI when missing.
"""
import argparse
import json
import subprocess
import sys

parser = argparse.ArgumentParser()
parser.add_argument("model")
parser.add_argument("data")
parser.add_argument("--tangent", default=".build/release/tangent")
parser.add_argument("--max-texts", type=int, default=500)
args = parser.parse_args()

try:
    import torch
    import transformers
except ImportError:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "transformers", "safetensors", "torch"], check=True)
    import torch
    import transformers
from transformers import AutoModelForSequenceClassification, AutoTokenizer  # noqa: E402

with open(args.data, encoding="utf-8") as f:
    texts = [json.loads(line)["text"] for line in f if line.strip()][: args.max_texts]
model = AutoModelForSequenceClassification.from_pretrained(args.model, dtype=torch.float32).eval()
tok = AutoTokenizer.from_pretrained(args.model)
out = subprocess.run([args.tangent, "predict", "--model", args.model, "--json", "--data", args.data],
                     check=True, capture_output=True, text=True).stdout.splitlines()[: len(texts)]
labels = [model.config.id2label[i] for i in range(model.config.num_labels)]
worst = 0.0
with torch.no_grad():
    for text, line in zip(texts, out):
        enc = tok(text, truncation=True, return_tensors="pt")
        theirs = model(**enc).logits[0].tolist()
        mine = json.loads(line)["logits"]
        mine = [mine[name] for name in labels] if isinstance(mine, dict) else mine
        worst = max(worst, max(abs(a - b) / max(1.0, abs(b)) for a, b in zip(mine, theirs)))
print(f"{args.model}: transformers {transformers.__version__} loads it ({type(model).__name__}, labels {labels}); "
      f"{len(texts)} texts, largest relative logit difference {worst:.3g}")
sys.exit(0 if worst < 1e-4 else 1)
