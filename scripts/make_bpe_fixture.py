#!/usr/bin/env python3
"""Writes Tests/TangentTests/Fixtures/bpe/: a byte-level BPE tokenizer as RoBERTa and GPT-2
use (vocab.json + merges.txt, 1,000 pieces, trained with `tokenizers` on the shipped
training texts) and ids.jsonl: the ids `transformers`' RobertaTokenizer gives (with
`<s> ... </s>`) for 1,227 texts: the shipped data and hand-made ones (unicode, emoji,
accents, CJK, contractions, runs of spaces and newlines, literal special tokens).

Also the same tokenizer as transformers 5 saves it (saved/: tokenizer.json with a BPE
model and ByteLevel pre-tokenizer, and tokenizer_config.json; the script checks it gives
ids.jsonl's ids), and a variant as the hub's RoBERTa files have it and a user may set it
(saved-prefix/: `<mask>` with lstrip in tokenizer.json, add_prefix_space true in
tokenizer_config.json) with its ids in ids-prefix.jsonl.

The vocabulary is trained only when vocab.json is missing, so the fixture stays as it is.

Run from the repository root (installs what it needs):
    python3 scripts/make_bpe_fixture.py
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile

subprocess.run([sys.executable, "-m", "pip", "install", "-q", "transformers", "tokenizers"], check=True)
from tokenizers import ByteLevelBPETokenizer  # noqa: E402
import transformers  # noqa: E402
from transformers import AutoTokenizer  # noqa: E402

OUT = "Tests/TangentTests/Fixtures/bpe"
os.makedirs(OUT, exist_ok=True)
train = []
for name in ["movie-snippets", "sms-spam", "trec6"]:
    with open(f"data/{name}/train.jsonl", encoding="utf-8") as f:
        train += [json.loads(line)["text"] for line in f]
if not os.path.exists(f"{OUT}/vocab.json"):
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(train, vocab_size=1000, min_frequency=2, special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"],
                            show_progress=False)
    bpe.save_model(OUT)  # vocab.json, merges.txt
work = tempfile.mkdtemp()
for f in ["vocab.json", "merges.txt"]:
    shutil.copy(f"{OUT}/{f}", work)
with open(f"{work}/config.json", "w") as f:
    json.dump({"model_type": "roberta"}, f)
tok = AutoTokenizer.from_pretrained(work)
texts = ["", " ", "hello", "hello ", " hello", "a  b", "a\tb", "a\n\nb", "a \t b", "x\u3000y", "ｈｅｌｌｏ", "a\u00a0b",
         "don't you're it's I'll we've they'd I'm", "DON'T 'S ''quoted''", "Ça va? naïve café résumé", "東京は日本の首都です",
         "😀 emoji 👍🏽 test", "Straße ﬁ ligature", "hello <mask> world", "a<s>b</s>c<pad>d<unk>", "<mask><mask>",
         "Привет, мир", "مرحبا بالعالم", "  leading and trailing  ", "tabs\tand\nnewlines\r\n", "numbers 3.14 1,000,000 42% ½ ²",
         "URL https://example.com/a?b=c", "   x", "!!!?? ...", "a\n \nb", "x \n y"]
for name in ["movie-snippets", "sms-spam", "trec6"]:
    with open(f"data/{name}/test.jsonl", encoding="utf-8") as f:
        texts += [json.loads(line)["text"] for line in list(f)[:400]]
with open(f"{OUT}/ids.jsonl", "w", encoding="utf-8") as f:
    for t in texts:
        f.write(json.dumps({"text": t, "ids": tok(t)["input_ids"]}, ensure_ascii=False) + "\n")
saved = f"{OUT}/saved"
tok.save_pretrained(saved)
with open(f"{saved}/config.json", "w") as f:
    json.dump({"model_type": "roberta"}, f)
again = AutoTokenizer.from_pretrained(saved)
assert all(again(t)["input_ids"] == tok(t)["input_ids"] for t in texts), "tokenizer.json gives other ids than vocab.json + merges.txt"
prefix = f"{OUT}/saved-prefix"
os.makedirs(prefix, exist_ok=True)
with open(f"{saved}/tokenizer.json", encoding="utf-8") as f:
    tj = json.load(f)
for a in tj["added_tokens"]:
    if a["content"] == "<mask>":
        a["lstrip"] = True
with open(f"{prefix}/tokenizer.json", "w", encoding="utf-8") as f:
    json.dump(tj, f, ensure_ascii=False)
with open(f"{saved}/tokenizer_config.json", encoding="utf-8") as f:
    tc = json.load(f)
tc["add_prefix_space"] = True
with open(f"{prefix}/tokenizer_config.json", "w", encoding="utf-8") as f:
    json.dump(tc, f, indent=1)
with open(f"{prefix}/config.json", "w") as f:
    json.dump({"model_type": "roberta"}, f)
ptok = AutoTokenizer.from_pretrained(prefix)
with open(f"{OUT}/ids-prefix.jsonl", "w", encoding="utf-8") as f:
    for t in texts:
        f.write(json.dumps({"text": t, "ids": ptok(t)["input_ids"]}, ensure_ascii=False) + "\n")
for d in [saved, prefix]:
    os.remove(f"{d}/config.json")
print(f"wrote {OUT}: {len(texts)} texts, {type(tok).__name__}, transformers {transformers.__version__}")
