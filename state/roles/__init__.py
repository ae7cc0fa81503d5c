"""Roles and circles: who the AI staff are, what each may do, and the checks made at build time.

An organisation is a tree of circles. Each circle has a purpose, a lead role, member roles and
sub-circles; each role has a purpose, accountabilities, the domains it alone may change, a
personality, and :class:`Policies` — data the graphs enforce (tool grants, which risk levels
need human approval, token budget, where it may hand work off, PII handling, content rules,
call limits), not prompt text.

Definitions are YAML, loaded with :func:`load_organization`, which checks them with
:func:`validate_organization` before anything is built. Every problem found is reported at
once, each naming the file, line, role or circle, and field. The default organisation ships
inside the package (``state/roles/default/*.yaml``, see :func:`default_roles_dir`).

The package: ``fields`` (names, texts, :class:`Policies`), ``models`` (:class:`Role`,
:class:`Circle`, :class:`Organization`), ``checker`` (:func:`validate_organization`),
``loader`` (YAML with lines, :func:`load_organization`).

A roles file holds ``circle:`` (one circle), ``circles:`` (a list) and ``roles:`` (a list)::

    circle:
      name: research
      purpose: Find and analyse information.
      lead: researcher
      members: [analyst]
    roles:
      - name: researcher
        purpose: Finds sources on the web.
        tools: [http_get]
        policies:
          approval_required: [external]
"""

from state.roles.checker import validate_organization
from state.roles.fields import (
    BUILTIN_PII_TYPES,
    CallLimits,
    ContentRules,
    Personality,
    PiiRule,
    Policies,
)
from state.roles.loader import default_roles_dir, load_organization
from state.roles.models import Circle, Organization, Role

__all__ = [
    "BUILTIN_PII_TYPES",
    "CallLimits",
    "Circle",
    "ContentRules",
    "Organization",
    "Personality",
    "PiiRule",
    "Policies",
    "Role",
    "default_roles_dir",
    "load_organization",
    "validate_organization",
]
