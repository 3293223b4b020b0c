#!/usr/bin/env python3
"""Writes Tests/TangentTests/Fixtures/hf-ARCH/ for each architecture named (all by
default): a tiny random ...ForSequenceClassification made with `transformers`, weights
drawn with std 0.2 so that every layer matters, the hf-bert fixture's 1,000-piece
WordPiece vocabulary saved as transformers 5 saves it (tokenizer.json), and
reference.json: the token ids and logits transformers gives for the same 502 texts as the
hf-bert fixture. Then run scripts/make_hf_gradient_fixtures.py for per-example gradients.

- distilbert: dim 32, 2 layers, 4 heads, hidden_dim 64, gelu.
- electra: hidden 32, embedding_size 24 (projected by embeddings_project), 2 layers,
  4 heads, intermediate 64, gelu; ElectraClassificationHead (dense + GELU).
- albert: hidden 32, embedding_size 24, 3 layers over 2 groups of 2 shared inner layers,
  4 heads, intermediate 64, gelu_new; with the ALBERT tokenizer of
  scripts/make_albert_tokenizer_fixture.py (run it first) instead of the WordPiece one.

Run from the repository root after make_hf_fixtures.py (installs what it needs):
    python3 scripts/make_hf_arch_fixtures.py [distilbert] [electra]
"""
import json
import os
import subprocess
import sys

subprocess.run([sys.executable, "-m", "pip", "install", "-q", "transformers", "tokenizers", "safetensors", "torch"], check=True)
import torch  # noqa: E402
import transformers  # noqa: E402
from transformers import (AlbertConfig, AlbertForSequenceClassification, AutoTokenizer, DistilBertConfig,  # noqa: E402
                          DistilBertForSequenceClassification, ElectraConfig, ElectraForSequenceClassification)

FIX = "Tests/TangentTests/Fixtures"
LABELS = dict(num_labels=2, id2label={0: "negative", 1: "positive"}, label2id={"negative": 0, "positive": 1})


def distilbert(vocab):
    return DistilBertForSequenceClassification(DistilBertConfig(
        vocab_size=vocab, dim=32, n_layers=2, n_heads=4, hidden_dim=64, max_position_embeddings=128, activation="gelu",
        pad_token_id=0, **LABELS))


def electra(vocab):
    return ElectraForSequenceClassification(ElectraConfig(
        vocab_size=vocab, embedding_size=24, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
        max_position_embeddings=128, hidden_act="gelu", pad_token_id=0, **LABELS))


def albert(vocab):
    return AlbertForSequenceClassification(AlbertConfig(
        vocab_size=vocab, embedding_size=24, hidden_size=32, num_hidden_layers=3, num_hidden_groups=2, inner_group_num=2,
        num_attention_heads=4, intermediate_size=64, max_position_embeddings=128, hidden_act="gelu_new", pad_token_id=0,
        **LABELS))


BUILDERS = {"distilbert": distilbert, "electra": electra, "albert": albert}
TOKENIZERS = {"albert": f"{FIX}/albert-tokenizer/saved"}
with open(f"{FIX}/hf-bert/reference.json", encoding="utf-8") as f:
    texts = [c["text"] for c in json.load(f)["cases"]]
for arch in sys.argv[1:] or list(BUILDERS):
    out = f"{FIX}/hf-{arch}"
    os.makedirs(out, exist_ok=True)
    tok = AutoTokenizer.from_pretrained(TOKENIZERS.get(arch, f"{FIX}/hf-bert"))
    torch.manual_seed(2)
    model = BUILDERS[arch](len(tok))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "layer_norm" in name or "LayerNorm" in name:
                p.copy_(1 + 0.2 * torch.randn_like(p) if name.endswith("weight") else 0.2 * torch.randn_like(p))
            else:
                p.copy_(0.2 * torch.randn_like(p))
    model.eval()
    model.save_pretrained(out)
    tok.save_pretrained(out)
    cases = []
    with torch.no_grad():
        for t in texts:
            enc = tok(t, truncation=True, max_length=128, return_tensors="pt")
            cases.append({"text": t, "ids": enc["input_ids"][0].tolist(),
                          "logits": model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).logits[0].tolist()})
    with open(f"{out}/reference.json", "w", encoding="utf-8") as f:
        json.dump({"transformers": transformers.__version__, "torch": torch.__version__, "cases": cases}, f, ensure_ascii=False)
    print(f"wrote {out}: {len(cases)} texts, transformers {transformers.__version__}, torch {torch.__version__}")
