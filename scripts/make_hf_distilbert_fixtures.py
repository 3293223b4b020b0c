#!/usr/bin/env python3
"""Writes Tests/TangentTests/Fixtures/hf-distilbert/: a tiny random
DistilBertForSequenceClassification made with `transformers` (dim 32, 2 layers, 4 heads,
hidden_dim 64, gelu; the hf-bert fixture's 1,000-piece WordPiece vocabulary, saved as
transformers 5 saves it: tokenizer.json), weights drawn with std 0.2 so that every layer
matters, and reference.json: the token ids and logits transformers gives for the same 502
texts as the hf-bert fixture. Then run scripts/make_hf_gradient_fixtures.py for its
per-example gradients.

Run from the repository root after make_hf_fixtures.py (installs what it needs):
    python3 scripts/make_hf_distilbert_fixtures.py
"""
import json
import os
import subprocess
import sys

subprocess.run([sys.executable, "-m", "pip", "install", "-q", "transformers", "tokenizers", "safetensors", "torch"], check=True)
import torch  # noqa: E402
import transformers  # noqa: E402
from transformers import AutoTokenizer, DistilBertConfig, DistilBertForSequenceClassification  # noqa: E402

FIX = "Tests/TangentTests/Fixtures"
OUT = f"{FIX}/hf-distilbert"
os.makedirs(OUT, exist_ok=True)
tok = AutoTokenizer.from_pretrained(f"{FIX}/hf-bert")
torch.manual_seed(2)
config = DistilBertConfig(vocab_size=len(tok), dim=32, n_layers=2, n_heads=4, hidden_dim=64, max_position_embeddings=128,
                          num_labels=2, id2label={0: "negative", 1: "positive"}, label2id={"negative": 0, "positive": 1},
                          activation="gelu", pad_token_id=0)
model = DistilBertForSequenceClassification(config)
with torch.no_grad():
    for name, p in model.named_parameters():
        if "layer_norm" in name or "LayerNorm" in name:
            p.copy_(1 + 0.2 * torch.randn_like(p) if name.endswith("weight") else 0.2 * torch.randn_like(p))
        else:
            p.copy_(0.2 * torch.randn_like(p))
model.eval()
model.save_pretrained(OUT)
tok.save_pretrained(OUT)
with open(f"{FIX}/hf-bert/reference.json", encoding="utf-8") as f:
    texts = [c["text"] for c in json.load(f)["cases"]]
cases = []
with torch.no_grad():
    for t in texts:
        enc = tok(t, truncation=True, max_length=128, return_tensors="pt")
        cases.append({"text": t, "ids": enc["input_ids"][0].tolist(),
                      "logits": model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).logits[0].tolist()})
with open(f"{OUT}/reference.json", "w", encoding="utf-8") as f:
    json.dump({"transformers": transformers.__version__, "torch": torch.__version__, "cases": cases}, f, ensure_ascii=False)
print(f"wrote {OUT}: {len(cases)} texts, transformers {transformers.__version__}, torch {torch.__version__}")
