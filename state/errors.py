"""Build-time errors: problems found while assembling an organisation or a graph.

These are raised before any run starts (loading roles files, checking tool grants,
compiling graphs) and always say what to change. Run-time failures (a tool timing out, a
model refusing) are a different family and must not subclass :class:`GraphSetupError`, so
that callers can tell "fix your configuration" apart from "this run went wrong".
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

__all__ = [
    "GraphSetupError",
    "RoleDefinitionError",
    "RoleFileError",
    "SetupProblem",
]


class GraphSetupError(Exception):
    """A configuration problem found while building graphs, roles or tools."""


@dataclass(frozen=True, kw_only=True)
class SetupProblem:
    """One problem in an organisation definition, located as precisely as we can.

    Attributes:
        message: What is wrong, in one sentence.
        hint: What to do about it.
        file: The YAML file the definition came from, if it came from one.
        line: 1-based line in ``file`` where the offending value starts, when known.
        subject: What the problem belongs to, e.g. ``"role 'writer'"`` or ``"circle 'ops'"``.
        field: Dotted path of the offending field inside the subject, e.g. ``"policies.tools"``.
    """

    message: str
    hint: str = ""
    file: str | None = None
    line: int | None = None
    subject: str | None = None
    field: str | None = None

    def describe(self) -> str:
        """Render the problem as one line: ``file:line: subject, field 'x': message hint``."""
        location = self.file or "<organization>"
        if self.line is not None:
            location = f"{location}:{self.line}"
        where = [part for part in (self.subject, self.field and f"field '{self.field}'") if part]
        prefix = ", ".join(where)
        text = f"{location}: {prefix}: {self.message}" if prefix else f"{location}: {self.message}"
        if self.hint:
            text = f"{text} {self.hint}"
        return text


class RoleDefinitionError(GraphSetupError):
    """Circles or roles that fail schema or governance checks.

    Every problem found is reported at once, one line each, so a definition can be fixed in
    one pass instead of one error per attempt.

    Attributes:
        problems: The problems, in the order they were found.
    """

    def __init__(self, problems: Iterable[SetupProblem]) -> None:
        self.problems: tuple[SetupProblem, ...] = tuple(problems)
        if not self.problems:
            raise ValueError("RoleDefinitionError needs at least one problem")
        count = len(self.problems)
        heading = (
            "Organization definition has 1 problem:"
            if count == 1
            else f"Organization definition has {count} problems:"
        )
        lines = [heading, *(f"  - {problem.describe()}" for problem in self.problems)]
        super().__init__("\n".join(lines))


class RoleFileError(GraphSetupError):
    """A roles file that cannot be read or is not valid YAML.

    Attributes:
        file: The offending file.
        line: 1-based line of the problem, when the YAML parser reported one.
        column: 1-based column of the problem, when known.
    """

    def __init__(
        self,
        message: str,
        *,
        file: str,
        line: int | None = None,
        column: int | None = None,
    ) -> None:
        self.file = file
        self.line = line
        self.column = column
        location = file
        if line is not None:
            location = f"{location}:{line}"
            if column is not None:
                location = f"{location}:{column}"
        super().__init__(f"{location}: {message}")
