#!/usr/bin/env python3
"""Writes Tests/TangentTests/Fixtures/tokenizer-ids.json: ids that the `sentencepiece`
Python package gives for texts under Fixtures/tokenizer-600.model (made with
`tangent tokenizer train --data data/movie-snippets --vocab-size 600`). The Swift test
checks that the toolkit's C++ binding gives the same ids.

Run from the repository root: pip install sentencepiece && python3 scripts/make_tokenizer_fixture.py
"""
import json
import sentencepiece as spm

FIX = "Tests/TangentTests/Fixtures/"
sp = spm.SentencePieceProcessor(model_file=FIX + "tokenizer-600.model")
texts = [
    "An utterly charming film, though overlong.",
    "Unicode: naïve café ☃ — “quotes” 日本語 🙂",
    "  leading and trailing spaces  ",
    "tabs\tand\nnewlines",
    "ALL CAPS!!! 12345 $%^&*",
    "x",
]
for name in ["movie-snippets", "sms-spam", "trec6"]:
    with open(f"data/{name}/test.jsonl", encoding="utf-8") as f:
        for i, line in enumerate(f):
            if i >= 40:
                break
            texts.append(json.loads(line)["text"])
cases = [{"text": t, "ids": sp.encode(t)} for t in texts]
meta = {"vocab_size": sp.get_piece_size(), "pad_id": sp.pad_id(), "unk_id": sp.unk_id(),
        "bos_id": sp.bos_id(), "eos_id": sp.eos_id(), "sentencepiece_version": spm.__version__}
with open(FIX + "tokenizer-ids.json", "w", encoding="utf-8") as f:
    json.dump({"meta": meta, "cases": cases}, f, ensure_ascii=False, indent=0)
print(f"wrote {len(cases)} cases", meta)
