#!/usr/bin/env bash
# What the transfer check's gpu size needs on a lent GPU machine (no tree-sitter, no hub, no pydantic there), made on
# the CPU machine under data/ (git-ignored, about 56 MB in all; a device call carries up to 64 MiB):
#   data/transfer        the exception data (every sample this machine's Python yields; about 8 MB)
#   data/minilm-fp16     all-MiniLM-L6-v2 re-saved in fp16 (45 MB; Teacher.load trains it in float32)
#   data/wheels          pydantic and its dependencies for Python 3.12 (tasks/custom.py imports pydantic)
#
#   bash benchmarks/transfer_gpu_prepare.sh        # here, from the repository root
# then, on the GPU machine (carry: data), from the repository root:
#   pip install --no-index --find-links data/wheels pydantic
#   HF_HUB_OFFLINE=1 python -m orchestrator.bench transfer --size gpu --data data/transfer \
#       --teacher data/minilm-fp16 --out transfer_gpu.json
set -euo pipefail
PY=${PYTHON:-python}
$PY -m tasks.build_local --out data/transfer --tasks exception --train 6000 --validation 400 --test 600
HF_HUB_OFFLINE=1 $PY - <<'PYEOF'
import shutil
from pathlib import Path

from transformers import AutoModel

from models.teacher import minilm_path

src, dst = minilm_path(), Path("data/minilm-fp16")
dst.mkdir(parents=True, exist_ok=True)
AutoModel.from_pretrained(str(src)).half().save_pretrained(dst)
for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
    shutil.copy(src / name, dst / name)
print(f"{dst}: all-MiniLM-L6-v2 in fp16")
PYEOF
PYDANTIC=$($PY -c "import pydantic; print(pydantic.VERSION)")
$PY -m pip download --only-binary=:all: --python-version 3.12 --platform manylinux2014_x86_64 --implementation cp \
  -d data/wheels "pydantic==$PYDANTIC" -q
du -sh data/transfer data/minilm-fp16 data/wheels
