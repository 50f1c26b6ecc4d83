"""The effect of bf16 autocast on evaluation: the zero-shot encoder on the whole XQuAD-R collection in fp32
and in bf16 (AMX), headline mAP and rank distance per setting, and the encoding time of each."""
import time

from common import save

from hybridlib import evalsets, evaluate
from hybridlib.encoders import bf16_available, load_encoder

coll = evalsets.xquad_r()
encoder = load_encoder()
out = {}
for bf16 in (False, True):
    encoder.bf16 = bf16
    start = time.perf_counter()
    per_query, _, timing = evaluate.evaluate(encoder, coll, cache=False, progress=False)
    table = evaluate.summarize(per_query, n_boot=10)
    head = table[(table.qlang == "all") & table.metric.isin(["map", "rank_distance"])]
    out[encoder.precision] = {"seconds": time.perf_counter() - start,
                              "figures": {f"{r.setting} {r.metric}": r.value for r in head.itertuples()}}
if bf16_available(encoder.device):
    out["max_abs_map_difference"] = max(abs(v - out["fp32"]["figures"][k]) for k, v in out["bf16"]["figures"].items()
                                        if k.endswith("map"))
save("bf16_effect", out)
