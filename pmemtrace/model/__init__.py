"""The reference model: predicts, fault by fault, what a Linux kernel does
when a process touches a DAX mapping, and why.  Pure Python, no I/O.

>>> from pmemtrace.model import explain, parse_case
"""

from .case import Case, load_case, parse_case
from .engine import Prediction, explain
from .geometry import namespace_layout
from .profiles import PROFILES, select_profile
from .reasons import REASONS

__all__ = [
    "Case",
    "load_case",
    "parse_case",
    "Prediction",
    "explain",
    "namespace_layout",
    "PROFILES",
    "select_profile",
    "REASONS",
]
