"""Live tracing: probe table, bcc and tracefs backends, recorder, replay.

Nothing here imports bcc at module level: the bcc backend imports it lazily,
so ``pmemtrace replay`` and the model run on hosts without bcc.
"""

import os
from importlib import resources


def bpf_file(name):
    """Path of a file of bpf/ (installed as package ``pmemtrace._bpf``).

    Found with importlib.resources, so it works from an installed wheel; an
    editable install made before the package mapping existed falls back to
    the checkout's ``bpf/`` directory next to the package.
    """
    try:
        p = resources.files("pmemtrace._bpf").joinpath(name)
        if p.is_file():
            return str(p)
    except ModuleNotFoundError:
        pass
    p = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "bpf", name)
    if os.path.isfile(p):
        return p
    from ..errors import KernelFeatureMissing

    raise KernelFeatureMissing(f"BPF source {name} not found: reinstall pmemtrace (package pmemtrace._bpf)")
