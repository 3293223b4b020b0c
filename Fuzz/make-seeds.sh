#!/usr/bin/env bash
# Regenerates the seed corpora in Fuzz/corpus/ from the built CLI and the test fixtures:
# small valid inputs of every reader (checkpoint with training record, feature files,
# data files, configs, labels, reports), plus hand-written edge cases. Run from anywhere.
set -euo pipefail
cd "$(dirname "$0")/.."
swift build -c release --product tangent >&2
bin=$PWD/.build/release/tangent
fx=Tests/TangentTests/Fixtures
c=Fuzz/corpus
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
rm -rf "$c"; mkdir -p "$c"/{safetensors,features,feature-metadata,jsonl,csv,tsv,config,labels,report}

# Data files: tiny training set and hand-written edge cases.
head -n 24 "$fx/train-sample.jsonl" > "$work/train.jsonl"; tail -n 24 "$fx/train-sample.jsonl" >> "$work/train.jsonl"
head -n 6 "$fx/train-sample.jsonl" > "$c/jsonl/sample.jsonl"
printf '{"text": "caf\\u00e9 \\"quoted\\"", "label": 1}\r\n\r\n{"text": "x", "label": null}\n' > "$c/jsonl/escapes.jsonl"
printf 'text,label\n"a, quoted ""field""",pos\nplain,neg\r\n"multi\nline",pos\n' > "$c/csv/quoted.csv"
printf 'id,label,text\n1,pos,caf\xc3\xa9\n2,neg,"x"\n' > "$c/csv/columns.csv"
printf 'text\tlabel\nwhat is 5" in cm ?\tNUM\nwho\tHUM\r\n' > "$c/tsv/quotes.tsv"
printf 'label\ttext\nneg\tboring\n' > "$c/tsv/columns.tsv"

# A tiny model, trained with checkpoints (safetensors with a training record).
TANGENT_THREADS=1 $bin train --data "$work/train.jsonl" --test "$work/train.jsonl" --tokenizer "$fx/tokenizer-600.model" --out "$work/m" \
  --d-model 8 --heads 2 --layers 1 --d-ff 16 --max-len 16 --epochs 2 --batch-size 16 --keep-checkpoints >&2
cp "$work/m/checkpoints/epoch-2.safetensors" "$c/safetensors/checkpoint.safetensors"
cp "$work/m/config.json" "$c/config/trained.json"; cp "$fx/tiny-model/config.json" "$c/config/tiny.json"
cp "$work/m/labels.json" "$c/labels/two.json"; printf '["A","B","C"]' > "$c/labels/three.json"

# Feature files: projected (with layer groups), unprojected embedding features.
head -n 3 "$work/train.jsonl" > "$work/few.jsonl"
$bin featurize --model "$work/m" --data "$work/few.jsonl" --kernel pntk --proj-dim 4 --per-layer --out "$c/features/pntk-layers.safetensors" >&2
$bin featurize --model "$work/m" --data "$work/few.jsonl" --kernel embedding --out "$c/features/embedding.safetensors" >&2
cp "$c/features/embedding.safetensors" "$c/safetensors/features.safetensors"

# Reports: a comparison and a poisoning benchmark on the tiny model.
$bin compare --model "$work/m" --train "$work/train.jsonl" --test "$work/few.jsonl" --kernels proj-pntk,embedding --proj-dim 4 \
  --cache "$work/cache" --out "$work/r" >&2
cp "$work/r/report.json" "$c/report/report.json"
$bin poison --data "$work/train.jsonl" --test "$work/train.jsonl" --tokenizer "$fx/tokenizer-600.model" --d-model 8 --heads 2 --layers 1 --d-ff 16 \
  --max-len 16 --epochs 1 --fraction 0.2 --k 1 --proj-dim 4 --kernels embedding --cache "$work/cache" --out "$work/r" >&2 || true
[ -f "$work/r/poisoning.json" ] && cp "$work/r/poisoning.json" "$c/report/poisoning.json"
ls -lR "$c" | awk '{print $5, $9}' | grep -v '^ $' >&2

# Feature-metadata edits (records of a field selector byte and a little-endian Int64; see
# MetadataEdits in the harness): the boundaries the probes found, as starting points.
python3 - "$c/feature-metadata" <<'PY'
import struct, sys
def rec(sel, val): return bytes([sel]) + struct.pack('<q', val)
seeds = {'block-size-0': rec(5, 0), 'block-size-max': rec(5, 2**63 - 1), 'block-size-neg': rec(5, -1),
         'classes-6': rec(3, 6), 'width-0': rec(2, 0), 'features-shape-huge': rec(9, 2**61) + rec(9 + 4 * 6, 0),
         'shard': rec(8, 1 + 2 * 256) + rec(6, 0) + rec(7, 10), 'small-values': rec(0x80 | 0, 5) + rec(0x80 | 1, 3)}
for name, data in seeds.items():
    open(f'{sys.argv[1]}/{name}.bin', 'wb').write(data)
PY

# Hugging Face files: a WordPiece vocabulary, a SentencePiece model, and edit records of
# JSON values (a 2-byte selector and a little-endian Int64; see JSONEdits in the harness).
mkdir -p "$c"/{vocab,sentencepiece,tokenizer-json,hf-config,tokenizer-config,safetensors-index}
cp "$fx/hf-bert/vocab.txt" "$c/vocab/bert.txt"
printf '[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nhello\n##s\nhello\n' > "$c/vocab/duplicates.txt"
$bin tokenizer train --data "$fx/train-sample.jsonl" --vocab-size 400 --out "$c/sentencepiece/tiny-400.model" >&2
python3 - "$c" <<'PY'
import struct, sys
def rec(sel, kind, val=0): return struct.pack('<H', sel) + struct.pack('<q', (val << 4) | kind)
c = sys.argv[1]
seeds = {'tokenizer-json': {'wordpiece-none': b'\x00', 'unigram-none': b'\x01', 'wordpiece-edits': b'\x00' + rec(3, 8) + rec(40, 5, 7),
                            'unigram-edits': b'\x01' + rec(10, 1, 3) + rec(2, 11)},
         'hf-config': {'pad-huge': rec(20, 0, 1 << 40), 'act-number': rec(9, 2, 42), 'labels-null': rec(12, 8) + rec(1, 6)},
         'tokenizer-config': {'lower-string': rec(3, 5, 1), 'max-length-negative': rec(8, 1, 1), 'none': b''},
         'safetensors-index': {'none': b'', 'shard-path': rec(5, 12, 3), 'map-null': rec(2, 8)}}
for target, files in seeds.items():
    for name, data in files.items():
        open(f'{c}/{target}/{name}.bin', 'wb').write(data)
PY
