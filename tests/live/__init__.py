# The live tier: runs inside a pmemtrace lab guest (see conftest.py, docs/lab.md).
