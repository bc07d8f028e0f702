"""Medical guardrails (``medtune.guard``): emergency referral, refusal/deferral templates, injection removal,
dose checks and a disclaimer on every answer. See docs/guard.md and docs/ARCHITECTURE.md ("Guard API")."""

from medtune.guard.config import GuardConfig, load_guard_config
from medtune.guard.decisions import GuardDecision, GuardedAnswer
from medtune.guard.guard import Guard

__all__ = ["Guard", "GuardConfig", "GuardDecision", "GuardedAnswer", "load_guard_config"]

import logging as _logging

_logging.getLogger("medtune.guard").addHandler(_logging.NullHandler())
