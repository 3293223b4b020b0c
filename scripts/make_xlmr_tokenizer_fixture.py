#!/usr/bin/env python3
"""Writes Tests/TangentTests/Fixtures/xlmr/: a SentencePiece model in XLM-R's layout
(unk=0, <s>=1, </s>=2, no pad; unigram, 1,000 pieces, trained on the shipped training
texts) saved as `sentencepiece.bpe.model`, the same tokenizer as transformers saves it
(saved/tokenizer.json, no .model file), and ids.jsonl: the ids `transformers`'
XLMRobertaTokenizer gives (fairseq layout, <s> ... </s>, truncated to 512) for the texts
of Fixtures/wordpiece/ids.jsonl. The Swift test checks FairseqSentencePiece against them.

Run from the repository root after scripts/make_wordpiece_fixture.py (installs what it needs):
    python3 scripts/make_xlmr_tokenizer_fixture.py
"""
import json
import os
import subprocess
import sys

subprocess.run([sys.executable, "-m", "pip", "install", "-q", "transformers", "sentencepiece", "protobuf"], check=True)
import sentencepiece as spm  # noqa: E402
import transformers  # noqa: E402
from transformers import XLMRobertaTokenizer  # noqa: E402

OUT = "Tests/TangentTests/Fixtures/xlmr"
os.makedirs(OUT, exist_ok=True)
corpus = os.path.join(OUT, "corpus.tmp")
with open(corpus, "w", encoding="utf-8") as f:
    for name in ["movie-snippets", "sms-spam", "trec6"]:
        with open(f"data/{name}/train.jsonl", encoding="utf-8") as g:
            for line in g:
                f.write(json.loads(line)["text"].replace("\n", " ") + "\n")
spm.SentencePieceTrainer.train(input=corpus, model_prefix=os.path.join(OUT, "sentencepiece.bpe"), vocab_size=1000,
                               unk_id=0, bos_id=1, eos_id=2, pad_id=-1, model_type="unigram", num_threads=1,
                               max_sentence_length=20000, minloglevel=2)
os.remove(corpus)
os.remove(os.path.join(OUT, "sentencepiece.bpe.vocab"))
tok = XLMRobertaTokenizer.from_pretrained(OUT)
with open("Tests/TangentTests/Fixtures/wordpiece/ids.jsonl", encoding="utf-8") as f:
    texts = [json.loads(line)["text"] for line in f]
with open(os.path.join(OUT, "ids.jsonl"), "w", encoding="utf-8") as f:
    for t in texts:
        f.write(json.dumps({"text": t, "ids": tok(t, truncation=True, max_length=512)["input_ids"]}, ensure_ascii=False) + "\n")
# The same tokenizer as transformers 5 saves it: tokenizer.json only (no .model file).
tok.save_pretrained(os.path.join(OUT, "saved"))
for name in os.listdir(os.path.join(OUT, "saved")):
    if name != "tokenizer.json":
        os.remove(os.path.join(OUT, "saved", name))
print(f"wrote {OUT}: {len(texts)} texts, transformers {transformers.__version__}, sentencepiece {spm.__version__}")
