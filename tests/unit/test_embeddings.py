"""Embeddings factory: hashing embedder, local MiniLM (when installed), spec handling."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest

from nodes.embeddings import (
    HashingEmbeddings,
    LocalEmbeddings,
    describe_embeddings,
    embedding_dims,
    get_embeddings,
    local_model_available,
)
from state.settings import EmbeddingsSettings, ModelSettings


def cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


def test_hashing_is_deterministic_across_processes() -> None:
    text = "The quarterly report shows revenue growth in Europe"
    here = HashingEmbeddings().embed_query(text)
    # A fresh interpreter has a different str-hash seed; the vector must not change.
    code = (
        "import json; from nodes.embeddings import HashingEmbeddings; "
        f"print(json.dumps(HashingEmbeddings().embed_query({text!r})))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONHASHSEED": "12345", "PATH": ""},
    )
    there = [float(x) for x in out.stdout.strip().strip("[]").split(",")]
    assert there == pytest.approx(here, abs=1e-12)
    assert len(here) == 384
    assert math.isclose(math.sqrt(sum(x * x for x in here)), 1.0, rel_tol=1e-9)


def test_hashing_ranks_similar_text_higher() -> None:
    emb = HashingEmbeddings()
    query = emb.embed_query("reset my account password")
    docs = emb.embed_documents(
        [
            "how do I reset the password of my account",
            "password policy for new accounts",
            "the cafeteria menu for friday lunch",
        ]
    )
    scores = [cosine(query, d) for d in docs]
    assert scores[0] > scores[1] > scores[2]


async def test_hashing_async_and_empty_text() -> None:
    emb = HashingEmbeddings(dims=64)
    vectors = await emb.aembed_documents(["", "alpha beta"])
    assert [len(v) for v in vectors] == [64, 64]
    assert math.isclose(sum(x * x for x in vectors[0]), 1.0)
    assert await emb.aembed_query("alpha beta") == vectors[1]
    with pytest.raises(ValueError, match="dims"):
        HashingEmbeddings(dims=2)


def test_factory_specs() -> None:
    hashing = get_embeddings("hashing")
    assert isinstance(hashing, HashingEmbeddings)
    assert embedding_dims(hashing) == 384
    assert describe_embeddings(hashing) == {
        "provider": "hashing",
        "model": "hashing",
        "dims": 384,
        "offline": True,
    }
    from_settings = get_embeddings(settings=EmbeddingsSettings(EMBEDDINGS="hashing"))
    assert isinstance(from_settings, HashingEmbeddings)
    auto = get_embeddings("auto")
    expected = LocalEmbeddings if local_model_available() else HashingEmbeddings
    assert isinstance(auto, expected)
    with pytest.raises(ValueError, match="provider:model"):
        get_embeddings("openai:")
    with pytest.raises(ValueError, match="not supported"):
        get_embeddings("nosuchprovider:model")
    with pytest.raises(ValueError, match="OPENAI_API_KEY"):
        get_embeddings(
            "openai:text-embedding-3-small", model_settings=ModelSettings.model_construct()
        )


def test_openai_embeddings_spec_takes_key_and_base_url() -> None:
    settings = ModelSettings.model_construct(
        model="auto", openai_api_key=None, openai_base_url="http://127.0.0.1:9/v1"
    )
    emb = get_embeddings("openai:text-embedding-3-small", model_settings=settings)
    assert embedding_dims(emb) == 1536
    info = describe_embeddings(emb)
    assert info == {
        "provider": "openai",
        "model": "text-embedding-3-small",
        "dims": 1536,
        "offline": False,
    }


async def test_local_minilm_ranks_paraphrase_above_unrelated() -> None:
    if not local_model_available():
        # Without the extra, asking for it must say how to get it (CI installs it, so the
        # branch below runs there).
        with pytest.raises(ValueError, match="`local` extra"):
            get_embeddings("local")
        return
    emb = get_embeddings("local")
    assert isinstance(emb, LocalEmbeddings)
    assert embedding_dims(emb) == 384
    query = emb.embed_query("A man is playing a guitar on stage.")
    paraphrase, unrelated = emb.embed_documents(
        ["Someone performs music with a guitar at a concert.", "The invoice is due next Tuesday."]
    )
    assert len(query) == len(paraphrase) == 384
    assert math.isclose(math.sqrt(sum(x * x for x in query)), 1.0, rel_tol=1e-4)
    assert cosine(query, paraphrase) > cosine(query, unrelated) + 0.2
    assert describe_embeddings(emb)["model"] == "all-MiniLM-L6-v2"
    texts = ["offline embeddings", "vector search in postgres"]
    # The async path encodes in a worker thread and must give the same vectors.
    for asynced, synced in zip(
        await emb.aembed_documents(texts), emb.embed_documents(texts), strict=True
    ):
        assert asynced == pytest.approx(synced, abs=1e-5)
