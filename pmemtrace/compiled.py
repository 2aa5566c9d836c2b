"""The one switch of the compiled fast paths (explain's core,
pmemtrace/model/core.py; replay's path, pmemtrace/live/fasttext.py):
PMEMTRACE_PURE_PYTHON=1 sends both to their pure-Python paths, which give
the same bytes (tests/test_explain_core.py, tests/test_replay_compiled.py)."""

import os

PURE_ENV = "PMEMTRACE_PURE_PYTHON"


def pure_python_forced() -> bool:
    """Has the user asked for the pure-Python paths?"""
    return os.environ.get(PURE_ENV, "").lower() in ("1", "yes", "true")
