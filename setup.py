# Minimal setup.py: only for cffi_modules (the workload engine's C module),
# which pyproject.toml cannot express.  Everything else is in pyproject.toml.
from setuptools import setup

setup(
    cffi_modules=[],
)
