"""The local MiniLM on ONNX Runtime gives sentence-transformers' vectors, faster and torch-free.

``LocalEmbeddings`` runs all-MiniLM-L6-v2 on an ONNX graph built in memory from the model
package's weights (``nodes/onnx_bert.py``); sentence-transformers on torch is the reference
these tests hold it to, text by text and in a retrieval check. They need the ``local`` extra,
which the test command installs.
"""

from __future__ import annotations

import random

import numpy as np
import pytest

import nodes.embeddings as embeddings_module
from nodes.embeddings import LocalEmbeddings, describe_embeddings, local_model_available
from nodes.onnx_bert import UnsupportedModelError, build_bert_graph
from tests.support.imports import modules_loaded_by

_WORDS = (
    "invoice budget Berlin office onboarding guide espresso Kubernetes cluster refund audit "
    "vendor contract sprint outage hiring plan dashboard dark-mode Postgres upgrade security "
    "training marketing launch rate-limit API on-call rotation quarterly revenue Europe Asia "
    "customer Acme legal review CTO night shift data team design guild travel expenses"
).split()
_UNICODE = [
    "Café déjà vu, naïve façade — über Straße",
    "日本語のテキストを埋め込む",
    "中文文本嵌入测试，人工智能",
    "Привет, как дела? Всё хорошо.",
    "مرحبا بالعالم، هذا نص عربي",
    "🚀🔥 launch day! 👩‍💻 ships the fix ✅",
    "e\u0301le\u0300ve combining accents",
    "zero\u200bwidth\u200bspaces and\u00a0nbsp",
    "Ελληνικά γράμματα αλφάβητο",
    "한국어 문장 임베딩",
]
_EDGE = [
    "",
    " ",
    "\n\t  \n",
    "a",
    "?",
    "[CLS] [SEP] [PAD] [MASK] [UNK]",
    "supercalifragilisticexpialidocious" * 30,
    "https://example.com/path?q=1&r=2 mail me at a.b@example.org",
    "def f(x):\n    return x ** 2  # code",
    "12345 67.89 -3e10 0xFF 1/2",
]


def _varied_texts(count: int = 300) -> list[str]:
    rng = random.Random(20261202)
    texts = list(_EDGE) + list(_UNICODE)
    # Longer than the model's 256 word pieces: the tail must be cut the same way.
    texts.append(" ".join(rng.choice(_WORDS) for _ in range(400)))
    texts.append(" ".join(rng.choice(_UNICODE) for _ in range(60)))
    while len(texts) < count:
        n = rng.choice([1, 2, 3, 5, 8, 13, 21, 40, 90])
        words = [rng.choice(_WORDS) for _ in range(n)]
        if rng.random() < 0.3:
            words.insert(rng.randrange(n + 1), rng.choice(_UNICODE))
        text = " ".join(words)
        texts.append(text.capitalize() + rng.choice([".", "?", "!", "", "..."]))
    return texts


@pytest.fixture(scope="module")
def onnx() -> LocalEmbeddings:
    embeddings = LocalEmbeddings(runtime="onnxruntime")
    embeddings.load()
    return embeddings


@pytest.fixture(scope="module")
def reference() -> LocalEmbeddings:
    embeddings = LocalEmbeddings(runtime="sentence-transformers")
    embeddings.load()
    return embeddings


def test_auto_runtime_is_onnxruntime_and_says_so() -> None:
    embeddings = LocalEmbeddings()
    assert embeddings.runtime == "onnxruntime"
    assert describe_embeddings(embeddings)["runtime"] == "onnxruntime"
    # ONNX Runtime runs on the CPU; another device goes to torch.
    assert LocalEmbeddings(device="cuda").runtime == "sentence-transformers"
    with pytest.raises(ValueError, match="CPU"):
        LocalEmbeddings(runtime="onnxruntime", device="cuda")
    with pytest.raises(ValueError, match="runtime"):
        LocalEmbeddings(runtime="tensorflow")  # type: ignore[arg-type]


def test_without_onnxruntime_the_model_runs_on_sentence_transformers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(embeddings_module, "_ONNX_MODULES", ("onnxruntime_not_installed_zq9",))
    assert local_model_available()
    embeddings = LocalEmbeddings()
    assert embeddings.runtime == "sentence-transformers"
    assert describe_embeddings(embeddings)["runtime"] == "sentence-transformers"
    with pytest.raises(ValueError, match="onnxruntime is not installed"):
        LocalEmbeddings(runtime="onnxruntime")


def test_onnx_vectors_match_sentence_transformers(
    onnx: LocalEmbeddings, reference: LocalEmbeddings
) -> None:
    texts = _varied_texts()
    got = np.array(onnx.embed_documents(texts))
    want = np.array(reference.embed_documents(texts))
    assert got.shape == want.shape == (len(texts), 384)
    assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    cosines = (got * want).sum(axis=1)
    worst = int(cosines.argmin())
    assert cosines[worst] >= 0.9999, (texts[worst][:80], float(cosines[worst]))
    assert float(np.abs(got - want).max()) < 1e-4


def test_long_text_is_cut_at_256_word_pieces_like_the_reference(
    onnx: LocalEmbeddings, reference: LocalEmbeddings
) -> None:
    rng = random.Random(5)
    head = " ".join(rng.choice(_WORDS) for _ in range(300))
    assert len(onnx._load()._tokenizer.encode(head).ids) == 256  # cut: 300 words > 256 pieces
    longer = head + " and a different ending about espresso machines in Tokyo"
    a, b = onnx.embed_documents([head, longer])
    assert np.allclose(a, b, atol=1e-6)  # what lies past 256 pieces is not read
    assert float(np.dot(a, reference.embed_query(longer))) >= 0.9999


def test_a_batch_gives_each_text_its_own_vector(onnx: LocalEmbeddings) -> None:
    # Texts of very different lengths share a padded batch; the padding must not leak in.
    texts = ["", "short", "a somewhat longer sentence about quarterly invoices in Berlin"]
    texts += _UNICODE + [" ".join(_WORDS) * 3]
    batched = np.array(onnx.embed_documents(texts))
    single = np.array([onnx.embed_query(text) for text in texts])
    assert np.allclose(batched, single, atol=1e-5)
    small_batches = LocalEmbeddings(runtime="onnxruntime", batch_size=2)
    assert np.allclose(np.array(small_batches.embed_documents(texts)), single, atol=1e-5)


def test_onnx_retrieves_the_same_top_10_as_the_reference(
    onnx: LocalEmbeddings, reference: LocalEmbeddings
) -> None:
    rng = random.Random(11)
    docs = [
        f"{rng.choice(_WORDS).capitalize()} team {rng.choice(_WORDS)} the {rng.choice(_WORDS)} "
        f"{rng.choice(_WORDS)} {rng.choice(['on Mondays', 'next quarter', 'since March'])}"
        for _ in range(400)
    ]
    queries = [f"who {rng.choice(_WORDS)} {rng.choice(_WORDS)}?" for _ in range(40)]
    rankings = []
    for embeddings in (onnx, reference):
        doc_vectors = np.array(embeddings.embed_documents(docs))
        query_vectors = np.array(embeddings.embed_documents(queries))
        rankings.append(np.argsort(-(query_vectors @ doc_vectors.T), axis=1)[:, :10])
    overlap = [len(set(a) & set(b)) / 10 for a, b in zip(*rankings, strict=True)]
    assert sum(overlap) / len(overlap) == 1.0, overlap


def test_the_onnx_runtime_never_imports_torch() -> None:
    code = (
        "from nodes.embeddings import LocalEmbeddings\n"
        "emb = LocalEmbeddings()\n"
        "emb.load()\n"
        "assert len(emb.embed_query('torch-free')) == 384\n"
        "assert emb.runtime == 'onnxruntime', emb.runtime\n"
    )
    assert modules_loaded_by(code, ("torch", "sentence_transformers", "transformers")) == []


def test_a_model_that_is_not_bert_is_refused() -> None:
    with pytest.raises(UnsupportedModelError, match="not bert"):
        build_bert_graph({"model_type": "gpt2"}, {})
    config = {"model_type": "bert", "hidden_size": 8, "num_attention_heads": 2}
    with pytest.raises(UnsupportedModelError, match="gelu"):
        build_bert_graph({**config, "hidden_act": "relu"}, {})
    with pytest.raises(UnsupportedModelError, match="no embeddings.word_embeddings"):
        build_bert_graph({**config, "num_hidden_layers": 1}, {})
