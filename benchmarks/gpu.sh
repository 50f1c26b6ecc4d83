#!/bin/bash
# The GPU figures in one go, from the repository root on a CUDA machine:
# the check of every strategy (results/gpu_check.txt), then encoding and training against sentence-transformers
# on the same GPU (results/encode_cuda.json, results/train_cuda.json, batch 128).
#   bash benchmarks/gpu.sh [OUT]     # also copies the results and the log into OUT
# Offline, with the compact model copy of ../shared/tools/device_payload.py carried as .device-payload,
# it is unpacked first (the model cache and the data then live in /tmp).
set -uo pipefail
out=${1:-}
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=true
if [ -f .device-payload/unpack.py ]; then
  export HYBRIDLIB_CACHE=/tmp/hlcache HYBRIDLIB_DATA_DIR=/tmp/hybridlib-data
  python3 .device-payload/unpack.py || exit 1
fi
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm --format=csv,noheader
python3 -c "import torch, transformers, sentence_transformers as st; print('torch', torch.__version__, 'transformers', transformers.__version__, 'sentence-transformers', st.__version__)"
status=0
python3 benchmarks/gpu_check.py --device cuda --out benchmarks/results/gpu_check.txt || status=1
(cd benchmarks && python3 encode.py --device cuda > /tmp/encode.log 2>&1) || { status=1; tail -20 /tmp/encode.log; }
(cd benchmarks && python3 train.py --device cuda --batch 128 > /tmp/train.log 2>&1) || { status=1; tail -20 /tmp/train.log; }
python3 - <<'EOF'
import json
from pathlib import Path
r = Path("benchmarks/results")
for name in ("encode_cuda", "train_cuda"):
    f = r / f"{name}.json"
    if not f.exists():
        print(name, "missing"); continue
    d = json.loads(f.read_text())
    keys = [k for k in d if "speedup" in k or "per_s" in k or "fraction" in k or k == "device_busy_fraction"]
    print(name, json.dumps({k: d[k] for k in keys}))
    for side, p in (d.get("op_profile") or {}).items():
        if isinstance(p, dict):
            print(" ", side, {k: p.get(k) for k in ("wall_s", "device_busy_s", "device_busy_fraction", "kernel_launches")})
            print("   ", [(o["op"][:40], round(o["share"], 3)) for o in p["ops"][:6]])
EOF
if [ -n "$out" ]; then cp benchmarks/results/gpu_check.txt benchmarks/results/*_cuda.json /tmp/encode.log /tmp/train.log "$out"/ 2>/dev/null; fi
exit $status
