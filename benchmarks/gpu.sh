#!/bin/bash
# The GPU figures in one go, from the repository root on a CUDA machine:
#   bash benchmarks/gpu.sh [OUT] [STEP ...]
# Steps (default: all, in this order; each result is copied into OUT as soon as it is written):
#   study     the study profile's tasks per minute with 1 job and with --jobs auto, GPU busy fraction (study_cuda.json)
#   train128  training at batch 128 against sentence-transformers, fp32 and bf16 (train_cuda.json)
#   train32   the same at batch 32 (train_b32_cuda.json)
#   check     every strategy trained, resumed and evaluated on CUDA (gpu_check.txt)
#   encode    encoding against sentence-transformers (encode_cuda.json)
# Offline: with the compact model copy of ../shared/tools/device_payload.py carried as .device-payload it is
# unpacked first (the model cache and the data then live in /tmp), and wheels carried in .whl (papermill and
# its kernel, for the study step) are installed into /tmp/site.
set -uo pipefail
out=${1:-}
shift || true
steps=${*:-study train128 train32 check encode}
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=true
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}  # the notebooks' kernels import hybridlib from this checkout
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=$PYTHONPATH:/tmp/site PATH=/tmp/site/bin:$PATH
fi
if [ -f .device-payload/unpack.py ]; then
  export HYBRIDLIB_CACHE=/tmp/hlcache HYBRIDLIB_DATA_DIR=/tmp/hybridlib-data
  python3 .device-payload/unpack.py || exit 1
fi
keep() { [ -n "$out" ] && cp "$@" "$out"/ 2>/dev/null; true; }
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm --format=csv,noheader
python3 -c "import torch, transformers, sentence_transformers as st; print('torch', torch.__version__, 'transformers', transformers.__version__, 'sentence-transformers', st.__version__)"
status=0
for step in $steps; do
  echo "== $step $(date +%T)"
  case $step in
    study) python3 benchmarks/study_gpu.py --jobs auto --runs-dir /tmp/study-gpu || status=1
           keep benchmarks/results/study_cuda.json ;;
    train128) (cd benchmarks && BENCH_ROUNDS=2 python3 train.py --device cuda --batch 128) > /tmp/train128.log 2>&1 \
                || { status=1; tail -20 /tmp/train128.log; }
              keep benchmarks/results/train_cuda.json /tmp/train128.log ;;
    train32) (cd benchmarks && BENCH_ROUNDS=1 python3 train.py --device cuda --batch 32) > /tmp/train32.log 2>&1 \
               || { status=1; tail -20 /tmp/train32.log; }
             keep benchmarks/results/train_b32_cuda.json /tmp/train32.log ;;
    check) python3 benchmarks/gpu_check.py --device cuda --out benchmarks/results/gpu_check.txt || status=1
           keep benchmarks/results/gpu_check.txt ;;
    encode) (cd benchmarks && python3 encode.py --device cuda) > /tmp/encode.log 2>&1 || { status=1; tail -20 /tmp/encode.log; }
            keep benchmarks/results/encode_cuda.json ;;
    *) echo "unknown step $step"; status=1 ;;
  esac
done
python3 - <<'PY'
import json
from pathlib import Path
r = Path("benchmarks/results")
for name in ("study_cuda", "train_cuda", "train_b32_cuda", "encode_cuda"):
    f = r / f"{name}.json"
    if not f.exists():
        continue
    d = json.loads(f.read_text())
    keys = [k for k in d if "speedup" in k or "per_s" in k or "fraction" in k or "ratio" in k or "minutes" in k]
    print(name, json.dumps({k: d[k] for k in keys})[:1500])
PY
exit $status
