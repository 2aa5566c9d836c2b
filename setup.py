# Minimal setup.py: only for cffi_modules (the workload engine's C module),
# which pyproject.toml cannot express.  Everything else is in pyproject.toml.
from setuptools import find_packages, setup

setup(
    # bpf/ is installed as pmemtrace._bpf (package-dir in pyproject.toml); it is
    # listed here because [tool.setuptools.packages.find] cannot name a mapped package.
    packages=find_packages(include=["pmemtrace*"]) + ["pmemtrace._bpf"],
    cffi_modules=["cffi_build/build_engine.py:ffibuilder"],
)
