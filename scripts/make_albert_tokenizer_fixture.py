#!/usr/bin/env python3
"""Writes Tests/TangentTests/Fixtures/albert-tokenizer/: an ALBERT tokenizer as the hub
ships them (spiece.model: a SentencePiece Unigram model of 1,000 pieces trained on the
shipped training texts, with ALBERT's <pad> 0, <unk> 1, [CLS] 2, [SEP] 3, [MASK] 4), the
same tokenizer as transformers 5 saves it (saved/: tokenizer.json, whose normalizer holds
the model's Precompiled table, and tokenizer_config.json), a cased variant
(saved-cased/tokenizer_config.json: do_lower_case false, keep_accents true, for
saved/tokenizer.json), and the
ids transformers' AlbertTokenizer gives for the 1,231 texts of the byte-level BPE fixture
(unicode, accents, CJK, quotes, runs of spaces, literal special tokens, the shipped data):
ids.jsonl (from spiece.model and from saved/, which the script checks agree) and
ids-cased.jsonl.

Run from the repository root after scripts/make_bpe_fixture.py (installs what it needs):
    python3 scripts/make_albert_tokenizer_fixture.py
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile

subprocess.run([sys.executable, "-m", "pip", "install", "-q", "transformers", "tokenizers", "sentencepiece", "protobuf"], check=True)
import sentencepiece as spm  # noqa: E402
import transformers  # noqa: E402
from transformers import AutoTokenizer  # noqa: E402

OUT = "Tests/TangentTests/Fixtures/albert-tokenizer"
os.makedirs(OUT, exist_ok=True)
if not os.path.exists(f"{OUT}/spiece.model"):
    work = tempfile.mkdtemp()
    with open(f"{work}/corpus.txt", "w", encoding="utf-8") as f:
        for name in ["movie-snippets", "sms-spam", "trec6"]:
            with open(f"data/{name}/train.jsonl", encoding="utf-8") as d:
                f.writelines(json.loads(line)["text"].replace("\n", " ") + "\n" for line in d)
    spm.SentencePieceTrainer.train(input=f"{work}/corpus.txt", model_prefix=f"{OUT}/spiece", vocab_size=1000, model_type="unigram",
                                   pad_id=0, unk_id=1, bos_id=-1, eos_id=-1, control_symbols=["[CLS]", "[SEP]", "[MASK]"],
                                   character_coverage=0.9995, num_threads=1, minloglevel=2)
    os.remove(f"{OUT}/spiece.vocab")
with open("Tests/TangentTests/Fixtures/bpe/ids.jsonl", encoding="utf-8") as f:
    texts = [json.loads(line)["text"] for line in f]
texts += ["``quoted'' text", "Ça va? ΣΑΣ ὅτι", "ﬁ ① ㎏ Ⅻ", "क़ि मैं", "[CLS] x [SEP] y [MASK] z <pad> <unk>", "▁already ▁marked"]
hub = tempfile.mkdtemp()
shutil.copy(f"{OUT}/spiece.model", hub)
with open(f"{hub}/config.json", "w") as f:
    json.dump({"model_type": "albert"}, f)
tok = AutoTokenizer.from_pretrained(hub)
saved = f"{OUT}/saved"
tok.save_pretrained(saved)
shutil.copy(f"{hub}/config.json", saved)
again = AutoTokenizer.from_pretrained(saved)
os.remove(f"{saved}/config.json")
with open(f"{OUT}/ids.jsonl", "w", encoding="utf-8") as f:
    for t in texts:
        ids = tok(t)["input_ids"]
        assert again(t)["input_ids"] == ids, f"tokenizer.json and spiece.model disagree on {t!r}"
        f.write(json.dumps({"text": t, "ids": ids}, ensure_ascii=False) + "\n")
cased = f"{OUT}/saved-cased"
os.makedirs(cased, exist_ok=True)
shutil.copy(f"{saved}/tokenizer.json", cased)
with open(f"{saved}/tokenizer_config.json", encoding="utf-8") as f:
    tc = json.load(f)
tc["do_lower_case"], tc["keep_accents"] = False, True
with open(f"{cased}/tokenizer_config.json", "w", encoding="utf-8") as f:
    json.dump(tc, f, indent=1)
shutil.copy(f"{hub}/config.json", cased)
ctok = AutoTokenizer.from_pretrained(cased)
# Only the settings are kept: the tests put saved/tokenizer.json beside them.
os.remove(f"{cased}/config.json")
os.remove(f"{cased}/tokenizer.json")
with open(f"{OUT}/ids-cased.jsonl", "w", encoding="utf-8") as f:
    for t in texts:
        f.write(json.dumps({"text": t, "ids": ctok(t)["input_ids"]}, ensure_ascii=False) + "\n")
print(f"wrote {OUT}: {len(texts)} texts, {type(tok).__name__}, transformers {transformers.__version__}")
