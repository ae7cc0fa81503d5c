"""Settings: every group reads its variables; bad values stop start-up with a safe message."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from state.settings import Settings, SettingsInvalid, load_settings, redact_url

# Every variable a settings group reads, so a developer's shell cannot leak into these tests.
_PREFIXES = ("DATABASE_", "REDIS_", "LANGSMITH_", "STAFFGRAPH_", "OPENAI_")
_NAMES = ("MODEL", "EMBEDDINGS", "LANGGRAPH_CONFIG")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.upper().startswith(_PREFIXES) or name.upper() in _NAMES:
            monkeypatch.delenv(name)


def _load(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> Settings:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return load_settings()


def _rejection(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> str:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SettingsInvalid) as caught:
        load_settings()
    return str(caught.value)


def test_defaults_without_any_variable() -> None:
    settings = load_settings()

    assert settings.database.url is None  # the embedded server
    assert (settings.database.pool_min_size, settings.database.pool_max_size) == (1, 10)
    assert settings.redis.url is None  # the in-process broker
    assert settings.model.model == "auto"
    assert settings.model.openai_api_key is None
    assert settings.embeddings.spec == "auto"
    assert settings.tracing.tracing is False
    assert settings.server.home == Path(".staffgraph")
    assert (settings.server.host, settings.server.port) == ("127.0.0.1", 8123)
    assert settings.server.config == Path("langgraph.json")
    assert settings.server.log_level == "info"
    assert settings.server.env == "development"


def test_every_group_reads_its_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = _load(
        monkeypatch,
        {
            "DATABASE_URL": "postgresql://app:pw@db.internal:6543/staff",
            "DATABASE_POOL_MIN_SIZE": "3",
            "DATABASE_POOL_MAX_SIZE": "7",
            "DATABASE_CONNECT_TIMEOUT": "2.5",
            "REDIS_URL": "rediss://:pw@cache.internal:6380/2",
            "REDIS_STREAM_TTL_SECONDS": "120",
            "MODEL": "openai:gpt-4o-mini",
            "OPENAI_API_KEY": "sk-test-key",
            "OPENAI_BASE_URL": "http://127.0.0.1:9999/v1",
            "EMBEDDINGS": "openai:text-embedding-3-small",
            "LANGSMITH_TRACING": "true",
            "LANGSMITH_API_KEY": "lsv2-test-key",
            "LANGSMITH_ENDPOINT": "https://langsmith.internal",
            "LANGSMITH_PROJECT": "staff",
            "STAFFGRAPH_HOME": "/srv/staffgraph",
            "STAFFGRAPH_HOST": "0.0.0.0",
            "STAFFGRAPH_PORT": "9001",
            "STAFFGRAPH_CONFIG": "/srv/app/langgraph.json",
            "STAFFGRAPH_WORKERS": "0",
            "STAFFGRAPH_LOG_LEVEL": "WARNING",
            "STAFFGRAPH_MAX_BODY_BYTES": "2048",
            "STAFFGRAPH_ENV": "production",
        },
    )

    db = settings.database
    assert db.url is not None
    assert db.url.get_secret_value() == "postgresql://app:pw@db.internal:6543/staff"
    assert (db.pool_min_size, db.pool_max_size, db.connect_timeout) == (3, 7, 2.5)
    assert settings.redis.url is not None
    assert settings.redis.url.get_secret_value() == "rediss://:pw@cache.internal:6380/2"
    assert settings.redis.stream_ttl_seconds == 120
    assert settings.model.model == "openai:gpt-4o-mini"
    assert settings.model.openai_api_key is not None
    assert settings.model.openai_api_key.get_secret_value() == "sk-test-key"
    assert settings.model.openai_base_url == "http://127.0.0.1:9999/v1"
    assert settings.embeddings.spec == "openai:text-embedding-3-small"
    tracing = settings.tracing
    assert tracing.tracing is True
    assert tracing.api_key is not None and tracing.api_key.get_secret_value() == "lsv2-test-key"
    assert (tracing.endpoint, tracing.project) == ("https://langsmith.internal", "staff")
    server = settings.server
    assert server.home == Path("/srv/staffgraph")
    assert (server.host, server.port, server.workers) == ("0.0.0.0", 9001, 0)
    assert server.config == Path("/srv/app/langgraph.json")
    assert server.log_level == "warning"  # case-insensitive
    assert (server.max_body_bytes, server.env) == (2048, "production")


@pytest.mark.parametrize(
    ("env", "attribute", "expected"),
    [
        ({"STAFFGRAPH_MODEL": "offline"}, ("model", "model"), "offline"),
        ({"STAFFGRAPH_EMBEDDINGS": "hashing"}, ("embeddings", "spec"), "hashing"),
        (
            {"LANGGRAPH_CONFIG": "/x/langgraph.json"},
            ("server", "config"),
            Path("/x/langgraph.json"),
        ),
        ({"DATABASE_URL": "postgres://u@h/db"}, ("database", "url"), "postgres://u@h/db"),
        ({"REDIS_URL": "unix:///run/redis.sock"}, ("redis", "url"), "unix:///run/redis.sock"),
    ],
)
def test_aliases_and_accepted_forms(
    monkeypatch: pytest.MonkeyPatch,
    env: dict[str, str],
    attribute: tuple[str, str],
    expected: object,
) -> None:
    settings = _load(monkeypatch, env)
    value = getattr(getattr(settings, attribute[0]), attribute[1])
    if hasattr(value, "get_secret_value"):
        value = value.get_secret_value()
    assert value == expected


def test_empty_variable_counts_as_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    # `DATABASE_URL=` in a .env file or compose file means "use the embedded server".
    settings = _load(monkeypatch, {"DATABASE_URL": "", "STAFFGRAPH_PORT": ""})
    assert settings.database.url is None
    assert settings.server.port == 8123


@pytest.mark.parametrize(
    ("env", "names", "secret"),
    [
        (
            {"DATABASE_URL": "mysql://admin:Zq9-db-secret@db:3306/app"},
            ["DATABASE_URL"],
            "Zq9-db-secret",
        ),
        ({"DATABASE_URL": "Zq9-not-a-url"}, ["DATABASE_URL"], "Zq9-not-a-url"),
        ({"STAFFGRAPH_PORT": "70000"}, ["STAFFGRAPH_PORT"], "70000"),
        ({"STAFFGRAPH_PORT": "Zq9-port"}, ["STAFFGRAPH_PORT"], "Zq9-port"),
        (
            {"DATABASE_POOL_MIN_SIZE": "30", "DATABASE_POOL_MAX_SIZE": "10"},
            ["DATABASE_POOL_MIN_SIZE", "DATABASE_POOL_MAX_SIZE"],
            None,
        ),
        ({"DATABASE_POOL_MAX_SIZE": "0"}, ["DATABASE_POOL_MAX_SIZE"], None),
        ({"DATABASE_CONNECT_TIMEOUT": "Zq9-timeout"}, ["DATABASE_CONNECT_TIMEOUT"], "Zq9-timeout"),
        ({"MODEL": "Zq9-model-without-provider"}, ["MODEL"], "Zq9-model-without-provider"),
        ({"STAFFGRAPH_MODEL": "Zq9-alias-model"}, ["MODEL"], "Zq9-alias-model"),
        ({"EMBEDDINGS": "Zq9-embeddings"}, ["EMBEDDINGS"], "Zq9-embeddings"),
        (
            {"REDIS_URL": "http://:Zq9-redis-secret@cache:6379/0"},
            ["REDIS_URL"],
            "Zq9-redis-secret",
        ),
        ({"REDIS_STREAM_TTL_SECONDS": "1"}, ["REDIS_STREAM_TTL_SECONDS"], None),
        ({"LANGSMITH_TRACING": "true"}, ["LANGSMITH_TRACING", "LANGSMITH_API_KEY"], None),
        ({"LANGSMITH_TRACING": "Zq9-maybe"}, ["LANGSMITH_TRACING"], "Zq9-maybe"),
        ({"STAFFGRAPH_LOG_LEVEL": "Zq9-Verbose"}, ["STAFFGRAPH_LOG_LEVEL"], "Zq9-Verbose"),
        (
            {"OPENAI_BASE_URL": "ftp://user:Zq9-base-secret@models"},
            ["OPENAI_BASE_URL"],
            "Zq9-base-secret",
        ),
        ({"STAFFGRAPH_WORKERS": "-1"}, ["STAFFGRAPH_WORKERS"], None),
        ({"STAFFGRAPH_ENV": "Zq9-staging"}, ["STAFFGRAPH_ENV"], "Zq9-staging"),
        (
            {"STAFFGRAPH_LEASE_SECONDS": "15", "STAFFGRAPH_HEARTBEAT_SECONDS": "10"},
            ["STAFFGRAPH_LEASE_SECONDS", "STAFFGRAPH_HEARTBEAT_SECONDS"],
            None,
        ),
        ({"STAFFGRAPH_RUNS_PER_WORKER": "0"}, ["STAFFGRAPH_RUNS_PER_WORKER"], None),
    ],
)
def test_invalid_value_names_the_variable_and_hides_the_value(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], names: list[str], secret: str | None
) -> None:
    message = _rejection(monkeypatch, env)

    assert "\n" not in message
    for name in names:
        assert name in message
    if secret is not None:
        assert secret.lower() not in message.lower()


def test_several_bad_values_are_all_named_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    message = _rejection(
        monkeypatch,
        {
            "DATABASE_URL": "mysql://root:Zq9-one@db/app",
            "REDIS_URL": "http://:Zq9-two@cache",
            "MODEL": "Zq9-three",
            "EMBEDDINGS": "Zq9-four",
            "LANGSMITH_TRACING": "true",
            "STAFFGRAPH_PORT": "0",
            "STAFFGRAPH_LOG_LEVEL": "loud",
        },
    )

    for name in (
        "DATABASE_URL",
        "REDIS_URL",
        "MODEL",
        "EMBEDDINGS",
        "LANGSMITH_API_KEY",
        "STAFFGRAPH_PORT",
        "STAFFGRAPH_LOG_LEVEL",
    ):
        assert name in message
    assert "Zq9" not in message
    assert "\n" not in message


def test_loaded_settings_never_show_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = _load(
        monkeypatch,
        {
            "DATABASE_URL": "postgresql://app:Zq9-db@db/staff",
            "REDIS_URL": "redis://:Zq9-redis@cache:6379",
            "OPENAI_API_KEY": "Zq9-openai",
            "LANGSMITH_TRACING": "true",
            "LANGSMITH_API_KEY": "Zq9-langsmith",
        },
    )

    for shown in (repr(settings), str(settings), str(settings.model_dump())):
        assert "Zq9" not in shown


@pytest.mark.parametrize(
    ("url", "redacted"),
    [
        ("postgresql://app:Zq9-pw@db:5432/staff", "postgresql://app:***@db:5432/staff"),
        ("redis://:Zq9-pw@cache:6379/0", "redis://:***@cache:6379/0"),
        ("postgresql://app:Zq9-pw@[::1]:5432/staff", "postgresql://app:***@[::1]:5432/staff"),
        ("postgresql://app:Zq9%40pw@db/staff", "postgresql://app:***@db/staff"),
        (
            "postgresql://app:Zq9-pw@h1:5432,h2:5433/staff",
            "postgresql://app:***@h1:5432,h2:5433/staff",
        ),
        (
            "postgresql://app@db/staff?sslmode=require&password=Zq9-pw",
            "postgresql://app@db/staff?sslmode=require&password=***",
        ),
        ("postgresql://app@db:5432/staff", "postgresql://app@db:5432/staff"),
        (
            "postgresql://postgres:@/staffgraph?host=/tmp/pg",
            "postgresql://postgres:@/staffgraph?host=/tmp/pg",
        ),
    ],
)
def test_redact_url_hides_passwords_and_keeps_the_rest(url: str, redacted: str) -> None:
    assert redact_url(url) == redacted
    assert "Zq9" not in redact_url(url)


def test_processes_default_to_the_cores_less_one_for_postgres(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cores = len(os.sched_getaffinity(0))
    settings = load_settings()
    assert settings.server.processes == "auto"
    assert settings.server.process_count == max(1, cores - 1)
    assert _load(monkeypatch, {"STAFFGRAPH_PROCESSES": "auto"}).server.process_count == max(
        1, cores - 1
    )
    assert _load(monkeypatch, {"STAFFGRAPH_PROCESSES": "3"}).server.process_count == 3
    # Five usable cores: four server processes and one core for Postgres; one core: one.
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3, 4})
    assert _load(monkeypatch, {"STAFFGRAPH_PROCESSES": "auto"}).server.process_count == 4
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0})
    assert _load(monkeypatch, {"STAFFGRAPH_PROCESSES": "auto"}).server.process_count == 1


@pytest.mark.parametrize("value", ["0", "257", "many", "-2"])
def test_processes_must_be_a_count_or_auto(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    assert "STAFFGRAPH_PROCESSES" in _rejection(monkeypatch, {"STAFFGRAPH_PROCESSES": value})
