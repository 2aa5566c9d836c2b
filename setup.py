"""Minimal setup.py: only for the workload engine's C module (cffi_modules),
which pyproject.toml cannot express.  Everything else is in pyproject.toml.

The engine is optional: the reference model and the CLI are pure Python and
must install where there is no C compiler (slim CI images).  When the
engine's compile fails, the install goes on without it and says so once;
the commands that need it (run, check) then exit with a one-line error
(pmemtrace/workload/engine.py).  PMEMTRACE_REQUIRE_ENGINE=1 makes a failed
engine build fail the install instead (scripts/install-deps.sh sets it: the
live tier needs the engine).
"""

import os
import sys

from setuptools import find_packages, setup
from setuptools.command.build_ext import build_ext

try:  # setuptools >= 59 vendors distutils; both spellings name the same classes
    from setuptools.errors import CCompilerError, CompileError, ExecError, LinkError, PlatformError
except ImportError:  # pragma: no cover - old setuptools
    from distutils.errors import CCompilerError, CompileError, LinkError
    from distutils.errors import DistutilsExecError as ExecError
    from distutils.errors import DistutilsPlatformError as PlatformError

ENGINE = "pmemtrace._engine"
# the compiled cores of explain and replay: optional too (pure-Python paths run without them)
EXPLAIN_CORE = "pmemtrace._explain_core"
REPLAYFAST = "pmemtrace._replayfast"
OPTIONAL = (ENGINE, EXPLAIN_CORE, REPLAYFAST)
REQUIRE_ENV = "PMEMTRACE_REQUIRE_ENGINE"
_BUILD_ERRORS = (CCompilerError, CompileError, LinkError, ExecError, PlatformError, OSError)


class OptionalEngineBuildExt(build_ext):
    """build_ext that lets the engine's compile fail (unless required)."""

    def _skip(self, exc, name=ENGINE):
        # PMEMTRACE_REQUIRE_ENGINE=1 (scripts/install-deps.sh) makes every
        # C module required, so the test machine always has them all.
        if os.environ.get(REQUIRE_ENV) == "1":
            raise exc
        sys.stderr.write(
            f"pmemtrace: the C module {name} was not built ({exc}); model mode (explain, model, "
            "reasons, replay, diagnose) works without it, on its pure-Python paths; for 'run' and "
            "'check' install a C compiler (gcc, libc6-dev) and reinstall\n"
        )

    def run(self):
        try:
            super().run()
        except _BUILD_ERRORS as exc:  # e.g. no compiler found at all
            self._skip(exc)

    def build_extension(self, ext):
        try:
            super().build_extension(ext)
        except _BUILD_ERRORS as exc:
            if ext.name not in OPTIONAL:
                raise
            self._skip(exc, ext.name)


setup(
    # bpf/ is installed as pmemtrace._bpf (package-dir in pyproject.toml); it is
    # listed here because [tool.setuptools.packages.find] cannot name a mapped package.
    packages=find_packages(include=["pmemtrace*"]) + ["pmemtrace._bpf"],
    cffi_modules=[
        "cffi_build/build_engine.py:ffibuilder",
        "cffi_build/build_explain.py:ffibuilder",
        "cffi_build/build_replayfast.py:ffibuilder",
    ],
    cmdclass={"build_ext": OptionalEngineBuildExt},
)
