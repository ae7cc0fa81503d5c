"""Reading ``*.yaml`` roles files safely, with the line of every node, into an organisation."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, get_args

import yaml
from pydantic import (
    BaseModel,
    ValidationError,
)

from state.errors import RoleDefinitionError, RoleFileError, SetupProblem
from state.roles.approvals import ApprovalPolicy
from state.roles.checker import _field_label, validate_organization
from state.roles.fields import _did_you_mean, _Origin
from state.roles.models import Circle, Organization, Role
from state.tool_risk import ToolCatalog

_MAX_FILE_BYTES = 1_000_000
_MAX_FILES = 500


class _LineDict(dict[Any, Any]):
    """A YAML mapping that remembers the line of each key."""

    lines: dict[Any, int]


class _LineList(list[Any]):
    """A YAML sequence that remembers the line of each item."""

    lines: dict[int, int]


class _RoleFileLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that also records line numbers and refuses aliases and duplicate keys.

    It constructs only plain YAML types, exactly as ``yaml.safe_load`` does; the additions
    let schema errors point at a line and keep a small file from expanding into a huge one
    through nested aliases.
    """

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(
                None,
                None,
                "aliases (*name) are not supported in roles files; repeat the value instead",
                event.start_mark,
            )
        return super().compose_node(parent, index)


def _construct_mapping(loader: _RoleFileLoader, node: yaml.MappingNode) -> Iterator[_LineDict]:
    data = _LineDict()
    data.lines = {}
    yield data
    loader.flatten_mapping(node)
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if not isinstance(key, str | int | float | bool) and key is not None:
            raise yaml.constructor.ConstructorError(
                "while constructing a mapping",
                node.start_mark,
                "found an unsupported key type",
                key_node.start_mark,
            )
        if key in data:
            raise yaml.constructor.ConstructorError(
                "while constructing a mapping",
                node.start_mark,
                f"found duplicate key {key!r}",
                key_node.start_mark,
            )
        data[key] = loader.construct_object(value_node, deep=True)
        data.lines[key] = key_node.start_mark.line + 1


def _construct_sequence(loader: _RoleFileLoader, node: yaml.SequenceNode) -> Iterator[_LineList]:
    data = _LineList()
    data.lines = {}
    yield data
    for index, child in enumerate(node.value):
        data.append(loader.construct_object(child, deep=True))
        data.lines[index] = child.start_mark.line + 1


_RoleFileLoader.add_constructor("tag:yaml.org,2002:map", _construct_mapping)
_RoleFileLoader.add_constructor("tag:yaml.org,2002:seq", _construct_sequence)


def _read_yaml(path: Path, label: str) -> Any:
    try:
        size = path.stat().st_size
        if size > _MAX_FILE_BYTES:
            raise RoleFileError(
                f"file is {size} bytes; roles files may be at most {_MAX_FILE_BYTES} bytes. "
                "Split it into one file per circle.",
                file=label,
            )
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise RoleFileError(f"file is not UTF-8 text ({exc.reason}).", file=label) from None
    except OSError as exc:
        raise RoleFileError(f"cannot read file: {exc.strerror or exc}.", file=label) from None
    try:
        # _RoleFileLoader is a SafeLoader: only plain YAML types are ever constructed.
        return yaml.load(text, Loader=_RoleFileLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "cannot parse"
        if isinstance(exc, yaml.scanner.ScannerError | yaml.parser.ParserError):
            problem += ". Fix the syntax at this line"
        raise RoleFileError(
            f"invalid YAML: {problem}.",
            file=label,
            line=mark.line + 1 if mark else None,
            column=mark.column + 1 if mark else None,
        ) from None
    except yaml.YAMLError as exc:
        raise RoleFileError(f"invalid YAML: {exc}.", file=label) from None


_TOP_LEVEL_KEYS = ("circle", "circles", "roles", "approvals")


def _model_field_names(model: type[BaseModel], loc: tuple[str | int, ...]) -> list[str]:
    """Field names of the model found at ``loc`` inside ``model`` (for unknown-key hints)."""
    current: type[BaseModel] | None = model
    for step in loc:
        if current is None:
            return []
        # list indexes and dict keys (``pii.email``) do not change the model
        if isinstance(step, str) and step in current.model_fields:
            current = _model_in(current.model_fields[step].annotation)
    if current is None:
        return []
    names = list(current.model_fields)
    return [*names, "tools"] if current is Role else names


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The model class inside an annotation such as ``Policies`` or ``dict[str, PiiRule]``."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def _schema_problems(
    exc: ValidationError,
    model: type[Role] | type[Circle],
    origin: _Origin,
    subject: str,
) -> list[SetupProblem]:
    problems = []
    for error in exc.errors():
        loc: tuple[str | int, ...] = tuple(error["loc"])
        if loc[:2] == ("policies", "allowed_tools") and "tools" in origin.data:
            loc = ("tools", *loc[2:])  # report the grant where it was written
        if error["type"] == "extra_forbidden":
            key = str(loc[-1])
            known = _model_field_names(model, loc[:-1])
            message = f"unknown field '{key}'.{_did_you_mean(key, known)}"
            hint = f"Known fields here: {', '.join(known)}." if known else ""
        else:
            message = error["msg"].removeprefix("Value error, ")
            message = message[0].lower() + message[1:] if message else "invalid value"
            if not message.endswith("."):
                message += "."
            hint = ""
        label = _field_label(None, loc)
        problems.append(
            SetupProblem(
                message=message,
                hint=hint,
                file=origin.file,
                line=origin.line_of(loc),
                subject=subject,
                field=label or None,
            )
        )
    return problems


def _load_entries(
    data: Any, label: str, roles: list[Role], circles: list[Circle], problems: list[SetupProblem]
) -> None:
    if not _layout_ok(data, label, problems):
        return
    lines = getattr(data, "lines", {})
    for key, entries, model in _sections(data):
        if not isinstance(entries, list):
            problems.append(
                SetupProblem(
                    message=f"'{key}' must be a list.",
                    hint=f"Write each entry under '{key}:' as '- name: ...'.",
                    file=label,
                    line=lines.get(key),
                )
            )
            continue
        entry_lines = getattr(entries, "lines", {})
        for index, entry in enumerate(entries):
            where = (label, entry_lines.get(index), index)
            _load_entry(entry, model, where, roles, circles, problems)


def _layout_ok(data: Any, label: str, problems: list[SetupProblem]) -> bool:
    """Record what is wrong with a file's top level; False when its entries cannot be read."""
    if data is None:
        problems.append(
            SetupProblem(
                message="file is empty.",
                hint="Add a 'circle:' and 'roles:' section or delete the file.",
                file=label,
            )
        )
        return False
    if not isinstance(data, Mapping):
        problems.append(
            SetupProblem(
                message="the top level must be a mapping with 'circle', 'circles' or 'roles'.",
                hint="See state/roles/default/operations.yaml for the layout.",
                file=label,
                line=1,
            )
        )
        return False
    lines = getattr(data, "lines", {})
    for key in data:
        if key not in _TOP_LEVEL_KEYS:
            problems.append(
                SetupProblem(
                    message=f"unknown top-level key '{key}'."
                    + _did_you_mean(str(key), _TOP_LEVEL_KEYS),
                    hint="Use 'circle', 'circles', 'roles' or 'approvals'.",
                    file=label,
                    line=lines.get(key),
                )
            )
    if "circle" in data and "circles" in data:
        problems.append(
            SetupProblem(
                message="both 'circle' and 'circles' are given.",
                hint="Use 'circle' for one circle or 'circles' for a list, not both.",
                file=label,
                line=lines.get("circles"),
            )
        )
    return True


def _sections(data: Mapping[str, Any]) -> list[tuple[str, Any, type[Role] | type[Circle]]]:
    """The file's lists of entries: ``circle`` (as a list of one), ``circles`` and ``roles``."""
    lines = getattr(data, "lines", {})
    sections: list[tuple[str, Any, type[Role] | type[Circle]]] = []
    if "circle" in data:
        single = _LineList([data["circle"]])
        single.lines = {0: lines.get("circle", 1)}
        sections.append(("circle", single, Circle))
    if "circles" in data:
        sections.append(("circles", data["circles"], Circle))
    if "roles" in data:
        sections.append(("roles", data["roles"], Role))
    return sections


def _load_entry(
    entry: Any,
    model: type[Role] | type[Circle],
    where: tuple[str, int | None, int],
    roles: list[Role],
    circles: list[Circle],
    problems: list[SetupProblem],
) -> None:
    """Validate one entry (at file, line and position ``where``) into roles or circles."""
    label, line, index = where
    kind = "role" if model is Role else "circle"
    raw_name = entry.get("name") if isinstance(entry, Mapping) else None
    subject = f"{kind} '{raw_name}'" if isinstance(raw_name, str) else f"{kind} #{index + 1}"
    if not isinstance(entry, Mapping):
        problems.append(
            SetupProblem(
                message=f"each {kind} must be a mapping of fields.",
                hint="Start the entry with 'name:'.",
                file=label,
                line=line,
                subject=subject,
            )
        )
        return
    origin = _Origin(label, entry, line)
    try:
        item = model.model_validate(entry)
    except ValidationError as exc:
        problems.extend(_schema_problems(exc, model, origin, subject))
        return
    item._origin = origin
    if isinstance(item, Role):
        roles.append(item)
    else:
        circles.append(item)


def _load_approvals(
    data: Any, label: str, found: list[tuple[str, ApprovalPolicy]], problems: list[SetupProblem]
) -> None:
    """Read a file's ``approvals:`` section (at most one file of the organisation has one)."""
    if not isinstance(data, Mapping) or "approvals" not in data:
        return
    line = getattr(data, "lines", {}).get("approvals")
    if found:
        problems.append(
            SetupProblem(
                message=f"a second 'approvals' section (the first is in {found[0][0]}).",
                hint="Keep one 'approvals:' section for the whole organisation.",
                file=label,
                line=line,
            )
        )
        return
    try:
        found.append((label, ApprovalPolicy.model_validate(data["approvals"] or {})))
    except ValidationError as exc:
        for error in exc.errors():
            where = ".".join(str(p) for p in error["loc"])
            problems.append(
                SetupProblem(
                    message=f"approvals.{where}: {error['msg']}." if where else error["msg"],
                    hint="See 'Who may approve' in the README for the fields.",
                    file=label,
                    line=line,
                )
            )


def _files(path: Path) -> list[Path]:
    if not path.exists():
        raise RoleFileError("no such file or directory.", file=str(path))
    if path.is_file():
        return [path]
    files = sorted(p for p in path.glob("*.yaml") if p.is_file())
    if not files:
        raise RoleFileError(
            "no *.yaml files in this directory; add one file per circle.", file=str(path)
        )
    if len(files) > _MAX_FILES:
        raise RoleFileError(
            f"{len(files)} roles files; at most {_MAX_FILES} are read.", file=str(path)
        )
    return files


def load_organization(
    path_or_dir: str | os.PathLike[str], *, registry: ToolCatalog
) -> Organization:
    """Load circles and roles from one YAML file or every ``*.yaml`` file in a directory.

    Files are parsed with a ``yaml.SafeLoader`` (no Python objects are ever constructed),
    checked against the schema, merged into one organisation and validated with
    :func:`validate_organization`.

    Args:
        path_or_dir: A ``.yaml`` file, or a directory whose ``*.yaml`` files are read in name
            order (not recursively).
        registry: The tools roles may be granted, e.g. ``tools.default_registry()``.

    Returns:
        The validated organisation.

    Raises:
        RoleFileError: A file is missing, unreadable, too large or not valid YAML (with line).
        RoleDefinitionError: Schema or governance problems, all of them, one per line.
    """
    root = Path(path_or_dir)
    roles: list[Role] = []
    circles: list[Circle] = []
    problems: list[SetupProblem] = []
    approvals: list[tuple[str, ApprovalPolicy]] = []
    for file in _files(root):
        data = _read_yaml(file, str(file))
        _load_entries(data, str(file), roles, circles, problems)
        _load_approvals(data, str(file), approvals, problems)
    if problems:
        raise RoleDefinitionError(problems)
    policy = approvals[0][1] if approvals else ApprovalPolicy()
    org = Organization(circles=tuple(circles), roles=tuple(roles), approvals=policy)
    validate_organization(org, registry)
    return org


def default_roles_dir() -> Path:
    """Return the directory of the shipped default organisation.

    The YAML files are package data (``state/roles/default/*.yaml``), so the default
    organisation is there after ``pip install staffgraph`` as well as in a checkout.
    """
    return Path(__file__).resolve().parent / "default"
