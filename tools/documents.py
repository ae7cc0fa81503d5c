"""Document tools for plain text and Markdown: ``split_document``, ``document_stats``,
``extract_keywords``.

All three are pure and deterministic: the same text gives the same answer on every run, which
keeps agent transcripts reproducible with the offline model. Each tool returns JSON text (what
a model reads); the functions underneath return typed values for Python callers.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Literal

from langchain_core.tools import BaseTool, StructuredTool, ToolException
from pydantic import BaseModel, Field

from state.tool_risk import ToolRisk

__all__ = [
    "Chunk",
    "DocumentError",
    "DocumentStats",
    "Heading",
    "Keyword",
    "MAX_DOCUMENT_CHARS",
    "document_stats",
    "extract_keywords",
    "make_document_stats_tool",
    "make_extract_keywords_tool",
    "make_split_document_tool",
    "split_document",
]

MAX_DOCUMENT_CHARS = 200_000
"""Longest document accepted by the document tools, in characters."""
WORDS_PER_MINUTE = 200
"""Reading speed used for ``reading_time_minutes`` (a common estimate for adult readers)."""

_MIN_CHUNK_SIZE = 50
_MAX_CHUNK_SIZE = 20_000
_MAX_TOP_K = 100

_ATX_HEADING = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.+?)[ \t#]*$")
_SETEXT_UNDERLINE = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")
_FENCE = re.compile(r"^ {0,3}(```|~~~)")
_WORD = re.compile(r"[^\W_]+(?:['’-][^\W_]+)*")
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]]*\s+")
_LINK = re.compile(r"!?\[([^\]]*)\]\([^)]*\)")
_KEYWORD = re.compile(r"[^\W\d_][^\W_]*(?:['’-][^\W_]+)*")

# A small English stop-word list of our own: function words, auxiliaries and the filler
# that dominates raw counts without saying what a text is about.
_STOP_WORDS = frozenset(
    """
    a about above after again against all almost also although always am among an and another
    any anyone anything are around as at be because been before being below between both but
    by can cannot could did do does doing done down during each either else enough etc even
    ever every few for from further get gets getting got had has have having he her here hers
    herself him himself his how however i if in into is it its itself just least less let like
    made make makes many may me might more most much must my myself near need needs neither
    never no nor not now of off often on once one only onto or other others our ours ourselves
    out over own per perhaps quite rather really same see seen several shall she should since
    so some something still such than that the their theirs them themselves then there these
    they thing things this those though through thus to too toward towards under until up upon
    us use used uses using very via was way we well were what whatever when where whether which
    while who whom whose why will with within without would yet you your yours yourself
    yourselves i'm it's don't doesn't isn't aren't wasn't weren't can't won't we're they're
    you're that's there's
    """.split()
)


class DocumentError(ValueError):
    """A document or argument the document tools refuse; the message says why."""


@dataclass(frozen=True)
class Heading:
    """A Markdown heading."""

    level: int
    """1 for ``#`` (or ``===`` underline) through 6 for ``######``."""
    text: str
    """The heading text without markers."""


@dataclass(frozen=True)
class Chunk:
    """One piece of a split document."""

    index: int
    """Position of the chunk, from 0."""
    text: str
    """The chunk text, at most ``chunk_size`` characters, overlap included."""
    heading: str | None
    """Text of the nearest heading above the chunk, for context."""


@dataclass(frozen=True)
class DocumentStats:
    """Counts describing a document."""

    characters: int
    words: int
    sentences: int
    paragraphs: int
    headings: list[Heading]
    reading_time_minutes: float
    """Words divided by :data:`WORDS_PER_MINUTE`, rounded up to a tenth of a minute."""


@dataclass(frozen=True)
class Keyword:
    """A keyword and how often it occurs."""

    keyword: str
    count: int


@dataclass(frozen=True)
class _Block:
    kind: Literal["heading", "paragraph", "code"]
    text: str
    level: int = 0


def _check_size(text: str) -> None:
    if len(text) > MAX_DOCUMENT_CHARS:
        raise DocumentError(
            f"Document is {len(text)} characters long; the limit is {MAX_DOCUMENT_CHARS}. "
            "Split it and send the parts separately."
        )


def _blocks(text: str) -> list[_Block]:
    """Cut Markdown into headings, paragraphs and fenced code blocks, in order."""
    blocks: list[_Block] = []
    paragraph: list[str] = []
    code: list[str] = []
    fence: str | None = None

    def flush() -> None:
        if paragraph:
            blocks.append(_Block("paragraph", "\n".join(paragraph).strip()))
            paragraph.clear()

    for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        if fence is not None:
            code.append(line)
            if line.lstrip().startswith(fence):
                blocks.append(_Block("code", "\n".join(code)))
                code.clear()
                fence = None
            continue
        fence_match = _FENCE.match(line)
        if fence_match:
            flush()
            fence = fence_match.group(1)
            code.append(line)
            continue
        if not line.strip():
            flush()
            continue
        heading = _ATX_HEADING.match(line)
        if heading:
            flush()
            blocks.append(_Block("heading", heading.group(2).strip(), len(heading.group(1))))
            continue
        # A setext underline turns the single line above it into a heading; a longer
        # paragraph followed by ``---`` is a paragraph and a thematic break in Markdown.
        underline = _SETEXT_UNDERLINE.match(line)
        if underline and len(paragraph) == 1:
            level = 1 if underline.group(1).startswith("=") else 2
            blocks.append(_Block("heading", paragraph[0].strip(), level))
            paragraph.clear()
            continue
        if underline and not paragraph:
            continue  # a thematic break on its own: no text to count or keep
        paragraph.append(line)
    flush()
    if code:
        # An unclosed fence runs to the end of the document, as in CommonMark.
        blocks.append(_Block("code", "\n".join(code)))
    return [block for block in blocks if block.text]


def _split_long(text: str, limit: int) -> list[str]:
    """Cut text longer than ``limit`` into sentences; over-long ones at words, then characters.

    The pieces are small on purpose: the chunk packer joins neighbours back while they fit.
    """
    if len(text) <= limit:
        return [text]
    pieces: list[str] = []
    for sentence in _SENTENCE_END.split(text):
        if len(sentence) <= limit:
            pieces.append(sentence)
            continue
        current = ""
        for word in sentence.split():
            while len(word) > limit:
                if current:
                    pieces.append(current)
                    current = ""
                pieces.append(word[:limit])
                word = word[limit:]
            candidate = f"{current} {word}" if current else word
            if len(candidate) <= limit:
                current = candidate
            else:
                pieces.append(current)
                current = word
        if current:
            pieces.append(current)
    return pieces


def _overlap_tail(text: str, size: int) -> str:
    """The last ``size`` characters of ``text``, starting at a word boundary."""
    if size <= 0 or not text:
        return ""
    if len(text) <= size:
        return text
    tail = text[-size:]
    boundary = re.search(r"\s", tail)
    # Without a word boundary inside the window, a clipped word helps nobody.
    return tail[boundary.end() :].lstrip() if boundary else ""


def split_document(
    text: str, *, chunk_size: int = 1000, chunk_overlap: int | None = None
) -> list[Chunk]:
    """Split text or Markdown into chunks that respect paragraphs and headings.

    A heading always starts a new chunk, together with the paragraphs under it as far as they
    fit. Paragraphs are kept whole when they fit and cut at sentence, then word boundaries
    when they do not. Within a section each chunk after the first begins with up to
    ``chunk_overlap`` characters from the end of the previous chunk, so a sentence near a cut
    is seen in full by at least one chunk.

    Args:
        text: The document, at most :data:`MAX_DOCUMENT_CHARS` characters.
        chunk_size: Most characters per chunk (50 to 20000), overlap included.
        chunk_overlap: Characters repeated from the previous chunk (0 to half of chunk_size);
            by default a tenth of ``chunk_size``.

    Returns:
        The chunks in document order; empty for a blank document.

    Raises:
        DocumentError: The text is too long or the sizes are out of range.
    """
    _check_size(text)
    if not _MIN_CHUNK_SIZE <= chunk_size <= _MAX_CHUNK_SIZE:
        raise DocumentError(
            f"chunk_size must be between {_MIN_CHUNK_SIZE} and {_MAX_CHUNK_SIZE}, got {chunk_size}."
        )
    if chunk_overlap is None:
        chunk_overlap = chunk_size // 10
    if not 0 <= chunk_overlap <= chunk_size // 2:
        raise DocumentError(
            f"chunk_overlap must be between 0 and {chunk_size // 2} (half of chunk_size), "
            f"got {chunk_overlap}."
        )
    # Pieces are cut small enough that overlap + separator + piece always fits in one chunk.
    piece_limit = chunk_size - chunk_overlap - 2
    # Each piece remembers whether it starts a paragraph: pieces of one paragraph are joined
    # back with a space, paragraphs with a blank line.
    sections: list[tuple[str | None, list[tuple[str, bool]]]] = [(None, [])]
    for block in _blocks(text):
        if block.kind == "heading":
            source = f"{'#' * block.level} {block.text}"
            sections.append((block.text, []))
        else:
            source = block.text
        parts = _split_long(source, piece_limit)
        sections[-1][1].extend((part, index == 0) for index, part in enumerate(parts))

    chunks: list[Chunk] = []
    for heading, pieces in sections:
        current = ""
        for piece, starts_paragraph in pieces:
            separator = "\n\n" if starts_paragraph else " "
            if current and len(current) + len(separator) + len(piece) > chunk_size:
                chunks.append(Chunk(len(chunks), current, heading))
                current = _overlap_tail(current, chunk_overlap)
            current = f"{current}{separator}{piece}" if current else piece
        if current:
            chunks.append(Chunk(len(chunks), current, heading))
    return chunks


def _plain(text: str) -> str:
    """Markdown text with link targets and emphasis markers removed, for counting words."""
    text = _LINK.sub(r"\1", text)
    return re.sub(r"[*_`~>|]+", " ", text)


def document_stats(text: str) -> DocumentStats:
    """Count words, sentences, paragraphs and headings of text or Markdown.

    Args:
        text: The document, at most :data:`MAX_DOCUMENT_CHARS` characters.

    Returns:
        The counts. Headings are listed with their level; fenced code counts as a paragraph
        but not towards sentences.

    Raises:
        DocumentError: The text is too long.
    """
    _check_size(text)
    blocks = _blocks(text)
    words = 0
    sentences = 0
    for block in blocks:
        count = len(_WORD.findall(_plain(block.text)))
        words += count
        if block.kind == "paragraph" and count:
            parts = [part for part in _SENTENCE_END.split(block.text) if _WORD.search(part)]
            sentences += max(1, len(parts))
    minutes = math.ceil(words / WORDS_PER_MINUTE * 10) / 10 if words else 0.0
    return DocumentStats(
        characters=len(text),
        words=words,
        sentences=sentences,
        paragraphs=sum(1 for block in blocks if block.kind != "heading"),
        headings=[Heading(block.level, block.text) for block in blocks if block.kind == "heading"],
        reading_time_minutes=minutes,
    )


def extract_keywords(text: str, *, top_k: int = 10) -> list[Keyword]:
    """Return the most frequent meaningful words of a document.

    Words are lower-cased; stop words, numbers, words shorter than three letters and fenced
    code are left out. Ties are broken by first appearance in the text, so the result is
    deterministic.

    Args:
        text: The document, at most :data:`MAX_DOCUMENT_CHARS` characters.
        top_k: How many keywords to return (1 to 100).

    Returns:
        Up to ``top_k`` keywords, most frequent first.

    Raises:
        DocumentError: The text is too long or ``top_k`` is out of range.
    """
    _check_size(text)
    if not 1 <= top_k <= _MAX_TOP_K:
        raise DocumentError(f"top_k must be between 1 and {_MAX_TOP_K}, got {top_k}.")
    counts: Counter[str] = Counter()
    first_seen: dict[str, int] = {}
    # Code is left out: identifiers and syntax say little about what a document is about.
    prose = "\n".join(block.text for block in _blocks(text) if block.kind != "code")
    for position, match in enumerate(_KEYWORD.finditer(_plain(prose).lower())):
        word = match.group().replace("’", "'")
        if len(word) < 3 or word in _STOP_WORDS:
            continue
        counts[word] += 1
        first_seen.setdefault(word, position)
    ranked = sorted(counts, key=lambda word: (-counts[word], first_seen[word]))
    return [Keyword(word, counts[word]) for word in ranked[:top_k]]


class SplitDocumentInput(BaseModel):
    """Arguments of the ``split_document`` tool."""

    text: str = Field(description="The text or Markdown document to split.")
    chunk_size: int = Field(default=1000, description="Most characters per chunk (50-20000).")
    chunk_overlap: int | None = Field(
        default=None,
        description="Characters repeated from the previous chunk (0 to chunk_size/2); "
        "default a tenth of chunk_size.",
    )


class DocumentStatsInput(BaseModel):
    """Arguments of the ``document_stats`` tool."""

    text: str = Field(description="The text or Markdown document to measure.")


class ExtractKeywordsInput(BaseModel):
    """Arguments of the ``extract_keywords`` tool."""

    text: str = Field(description="The text or Markdown document to summarise as keywords.")
    top_k: int = Field(default=10, description="How many keywords to return (1-100).")


def _to_json(value: object) -> str:
    return json.dumps(value, ensure_ascii=False)


def _split_tool(text: str, chunk_size: int = 1000, chunk_overlap: int | None = None) -> str:
    try:
        chunks = split_document(text, chunk_size=chunk_size, chunk_overlap=chunk_overlap)
    except DocumentError as exc:
        raise ToolException(f"split_document error: {exc}") from None
    return _to_json([asdict(chunk) for chunk in chunks])


def _stats_tool(text: str) -> str:
    try:
        return _to_json(asdict(document_stats(text)))
    except DocumentError as exc:
        raise ToolException(f"document_stats error: {exc}") from None


def _keywords_tool(text: str, top_k: int = 10) -> str:
    try:
        return _to_json([asdict(keyword) for keyword in extract_keywords(text, top_k=top_k)])
    except DocumentError as exc:
        raise ToolException(f"extract_keywords error: {exc}") from None


def _read_tool(
    func: Callable[..., str], *, name: str, description: str, args_schema: type[BaseModel]
) -> BaseTool:
    # Errors become tool messages the model can read and correct, not failed runs.
    return StructuredTool.from_function(
        func=func,
        name=name,
        description=description,
        args_schema=args_schema,
        metadata={"risk": ToolRisk.READ.value},
        handle_tool_error=True,
    )


def make_split_document_tool() -> BaseTool:
    """Return a new ``split_document`` tool (risk ``read``)."""
    return _read_tool(
        _split_tool,
        name="split_document",
        description=(
            "Split a long text or Markdown document into overlapping chunks that keep paragraphs "
            "and sections together. Returns a JSON list of {index, text, heading}."
        ),
        args_schema=SplitDocumentInput,
    )


def make_document_stats_tool() -> BaseTool:
    """Return a new ``document_stats`` tool (risk ``read``)."""
    return _read_tool(
        _stats_tool,
        name="document_stats",
        description=(
            "Measure a text or Markdown document: characters, words, sentences, paragraphs, "
            "headings with their levels, and estimated reading time. Returns JSON."
        ),
        args_schema=DocumentStatsInput,
    )


def make_extract_keywords_tool() -> BaseTool:
    """Return a new ``extract_keywords`` tool (risk ``read``)."""
    return _read_tool(
        _keywords_tool,
        name="extract_keywords",
        description=(
            "List the most frequent meaningful words of a document (stop words removed), most "
            "frequent first. Returns a JSON list of {keyword, count}."
        ),
        args_schema=ExtractKeywordsInput,
    )
