"""Encoding: hybridlib's length-sorted encoder against SentenceTransformer.encode on the XQuAD-R pool
(same saved model, batch size, max length and threads), embeddings compared; retrieval: FAISS flat
inner product against torch matmul + topk; FLOP/s against the machine's dense matmul. ``--device cuda``
runs both encoders on the GPU (sentence-transformers in fp32 and in bf16 as its peers)."""
import importlib.util
import os

import numpy as np
import torch
from common import alternate, device, flops_per_token, matmul_peak, save, timed

from hybridlib.encoders import load_encoder
from hybridlib.evalsets import xquad_r
from hybridlib.paths import cache_dir
from hybridlib.retrieval import search

N, BATCH, MAXLEN = (256 if os.environ.get("BENCH_QUICK") else 2048), 128, 128
texts = xquad_r().pool["text"].tolist()
rng = np.random.default_rng(0)
texts = [texts[i] for i in rng.choice(len(texts), N, replace=False)]
DEVICE = device()
ours = load_encoder(device=DEVICE)
from sentence_transformers import SentenceTransformer  # noqa: E402  (after the embedded model's cache is built)

st = SentenceTransformer(str(cache_dir() / "models" / "multilingual-e5-small"), device=DEVICE)
st.max_seq_length = MAXLEN
a = ours.encode(texts, "passage", BATCH, MAXLEN)
b = st.encode(texts, prompt_name="passage", batch_size=BATCH, convert_to_numpy=True)
cos = (a * b).sum(1) / np.linalg.norm(b, axis=1)
fp32 = alternate(lambda: ours.encode(texts, "passage", BATCH, MAXLEN),
                 lambda: st.encode(texts, prompt_name="passage", batch_size=BATCH), rounds=3)
ours.bf16 = True
c = ours.encode(texts, "passage", BATCH, MAXLEN)  # also the warm-up: a GPU plans each padded length once
bf16_s, st_bf16_s = timed(lambda: ours.encode(texts, "passage", BATCH, MAXLEN)), None
if DEVICE != "cpu":  # sentence-transformers' own bf16: the model cast to bfloat16, warmed on the same texts
    st_bf16 = SentenceTransformer(str(cache_dir() / "models" / "multilingual-e5-small"), device=DEVICE,
                                  model_kwargs={"dtype": torch.bfloat16})
    st_bf16.max_seq_length = MAXLEN
    st_bf16.encode(texts, prompt_name="passage", batch_size=BATCH)
    bf16 = alternate(lambda: ours.encode(texts, "passage", BATCH, MAXLEN),
                     lambda: st_bf16.encode(texts, prompt_name="passage", batch_size=BATCH), rounds=3)
    bf16_s, st_bf16_s = float(np.median(bf16["a_s"])), float(np.median(bf16["b_s"]))
ours.bf16 = False

tokens = sum(len(x) for x in ours.tokenizer(["passage: " + t for t in texts], truncation=True, max_length=MAXLEN)["input_ids"])
flops = tokens * flops_per_token(ours, tokens / N)
peak32, peak16 = matmul_peak(torch.float32, on=DEVICE), matmul_peak(torch.bfloat16, on=DEVICE)

pool = torch.nn.functional.normalize(torch.randn(13014, 384), dim=-1).numpy()
queries = torch.nn.functional.normalize(torch.randn(13090, 384), dim=-1).numpy()
retrieval = alternate(lambda: search(queries, pool, k=10),
                      lambda: torch.topk(torch.from_numpy(queries) @ torch.from_numpy(pool).T, 10, dim=1), rounds=3)
ours_s = float(np.median(fp32["a_s"]))
save("encode", {
    "texts": N, "tokens": tokens, "batch_size": BATCH, "max_length": MAXLEN,
    "hybridlib_texts_per_s": N / ours_s, "sentence_transformers_texts_per_s": N / float(np.median(fp32["b_s"])),
    "speedup_over_sentence_transformers": fp32["speedup_a_over_b"], "speedup_range": [fp32["speedup_min"], fp32["speedup_max"]],
    "cosine_min_vs_sentence_transformers": float(cos.min()),
    "bf16_texts_per_s": N / bf16_s, "bf16_cosine_min_vs_fp32": float(((a * c).sum(1)).min()),
    "sentence_transformers_bf16_texts_per_s": N / st_bf16_s if st_bf16_s else None,
    "bf16_speedup_over_sentence_transformers_bf16": st_bf16_s / bf16_s if st_bf16_s else None,
    "achieved_gflops_fp32": flops / ours_s / 1e9, "achieved_gflops_bf16": flops / bf16_s / 1e9,
    "matmul_peak_gflops_fp32": peak32 / 1e9, "matmul_peak_gflops_bf16": peak16 / 1e9,
    "fraction_of_matmul_peak_fp32": flops / ours_s / peak32, "fraction_of_matmul_peak_bf16": flops / bf16_s / peak16,
    "retrieval_13090x13014_top10": {"faiss_installed": importlib.util.find_spec("faiss") is not None,
                                    "faiss_flat_s": float(np.median(retrieval["a_s"])),
                                    "torch_matmul_topk_s": float(np.median(retrieval["b_s"])),
                                    "faiss_speedup": retrieval["speedup_a_over_b"]},
})
