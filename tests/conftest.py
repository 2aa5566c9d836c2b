"""The unit tier tests the INSTALLED pmemtrace (``pip install .`` or
``pip install -e .``), never the checkout by accident: ``python -m pytest``
run from the checkout puts the current directory first on ``sys.path``,
which would shadow a non-editable install with the source tree (and hide
packaging mistakes: a missing package-data file, the unbuilt C engine).
So the checkout is taken off ``sys.path`` here, before any test module
imports pmemtrace; tests/test_live_gate.py checks where it came from."""

import os
import sys

CHECKOUT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != CHECKOUT]
