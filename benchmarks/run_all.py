"""Run every benchmark; each prints its figures and writes benchmarks/results/<name>.json."""
import subprocess
import sys
from pathlib import Path

here = Path(__file__).parent
for name in ("samplers", "encode", "train", "bf16_effect", "path_sensitivity", "analysis"):
    print(f"== {name}", flush=True)
    subprocess.run([sys.executable, str(here / f"{name}.py")], check=True, cwd=here)
