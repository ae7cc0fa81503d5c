"""Chat-model factory: the offline model by default, any LangChain provider by ``MODEL``.

``MODEL=offline`` gives :class:`~nodes.offline.OfflineChatModel`; ``MODEL=auto`` (the default)
gives ``openai:gpt-4o-mini`` when an OpenAI key is configured and the offline model otherwise;
``MODEL=provider:model`` goes through ``langchain.chat_models.init_chat_model``. For OpenAI the
key and ``OPENAI_BASE_URL`` come from :class:`~state.settings.ModelSettings`, so any
OpenAI-compatible server (vLLM, Ollama, LM Studio, a gateway) works by URL.
"""

from __future__ import annotations

from typing import Any

from langchain.chat_models import init_chat_model
from langchain_core.language_models import BaseChatModel
from langchain_core.runnables import Runnable, RunnableBinding

from nodes.offline import MODEL_NAME, PROVIDER, OfflineChatModel
from state.settings import ModelSettings

__all__ = [
    "AUTO_OPENAI_MODEL",
    "describe_chat_model",
    "get_chat_model",
    "resolve_model_spec",
]

AUTO_OPENAI_MODEL = "openai:gpt-4o-mini"
"""What ``MODEL=auto`` resolves to when an OpenAI key is configured."""

# Local OpenAI-compatible servers ignore the key, but the OpenAI client refuses to start
# without one.
_PLACEHOLDER_KEY = "not-needed"


def resolve_model_spec(spec: str | None = None, *, settings: ModelSettings | None = None) -> str:
    """Turn ``auto`` (or no spec) into the concrete spec that :func:`get_chat_model` builds.

    Args:
        spec: ``"auto"``, ``"offline"`` or ``"provider:model"``; ``None`` reads settings.
        settings: model settings; read from the environment when omitted.

    Returns:
        ``"offline"`` or a ``"provider:model"`` string.
    """
    settings = settings or ModelSettings()
    resolved = (spec if spec is not None else settings.model).strip()
    if resolved == "auto":
        return AUTO_OPENAI_MODEL if settings.openai_api_key is not None else "offline"
    return resolved


def get_chat_model(
    spec: str | None = None, *, settings: ModelSettings | None = None, **kwargs: Any
) -> BaseChatModel:
    """Build the chat model named by ``spec`` (or by ``MODEL`` when ``spec`` is None).

    Args:
        spec: ``"offline"``, ``"auto"`` or ``"provider:model"`` (``openai:gpt-4o-mini``,
            ``anthropic:claude-sonnet-4-5``, ``ollama:llama3.1:8b``, ...).
        settings: model settings; read from the environment when omitted.
        **kwargs: passed to the provider's chat model (``temperature``, ``timeout``, ...).
            The offline model takes none and ignores them.

    Returns:
        A LangChain chat model.

    Raises:
        ValueError: the spec is malformed, the provider is unknown, its package is not
            installed, or OpenAI is asked for with neither a key nor a base URL. The message
            says what to install or set.
    """
    settings = settings or ModelSettings()
    resolved = resolve_model_spec(spec, settings=settings)
    if resolved == "offline":
        return OfflineChatModel()
    provider, _, model = resolved.partition(":")
    provider = provider.strip().lower()
    model = model.strip()
    if not provider or not model:
        raise ValueError(
            f"Chat model spec {resolved!r} must be `provider:model` (e.g. {AUTO_OPENAI_MODEL}), "
            "`offline` or `auto`"
        )
    if provider == "openai":
        kwargs = _openai_kwargs(resolved, settings, kwargs)
    try:
        return init_chat_model(model, model_provider=provider, **kwargs)
    except ImportError as exc:
        raise ValueError(
            f"MODEL={resolved} needs the LangChain integration for {provider!r}: {exc}"
        ) from exc
    except ValueError as exc:
        raise ValueError(f"MODEL={resolved} cannot be used: {exc}") from exc


def _openai_kwargs(spec: str, settings: ModelSettings, kwargs: dict[str, Any]) -> dict[str, Any]:
    merged = dict(kwargs)
    if settings.openai_api_key is not None:
        merged.setdefault("api_key", settings.openai_api_key.get_secret_value())
    if settings.openai_base_url is not None:
        merged.setdefault("base_url", settings.openai_base_url)
    if "api_key" not in merged:
        if "base_url" not in merged:
            raise ValueError(
                f"MODEL={spec} needs OPENAI_API_KEY (or OPENAI_BASE_URL pointing at an "
                "OpenAI-compatible server); unset MODEL to use the offline model"
            )
        merged["api_key"] = _PLACEHOLDER_KEY
    return merged


def _unwrap(model: Any) -> Any:
    # Bound models (bind_tools, with_config) wrap the chat model; describe the model inside.
    seen = 0
    while isinstance(model, RunnableBinding) and seen < 16:
        model = model.bound
        seen += 1
    return model


def describe_chat_model(model: BaseChatModel | Runnable[Any, Any]) -> dict[str, Any]:
    """Say which chat model this is, for ``/info`` and logs (never includes secrets).

    Args:
        model: a chat model, possibly bound (``bind_tools``, ``with_config``).

    Returns:
        ``{"provider": str, "model": str | None, "offline": bool}``.
    """
    inner = _unwrap(model)
    if isinstance(inner, OfflineChatModel):
        return {"provider": PROVIDER, "model": MODEL_NAME, "offline": True}
    if isinstance(inner, BaseChatModel):
        params = inner._get_ls_params()
        return {
            "provider": params.get("ls_provider") or type(inner).__name__,
            "model": params.get("ls_model_name"),
            "offline": False,
        }
    return {"provider": type(inner).__name__, "model": None, "offline": False}
