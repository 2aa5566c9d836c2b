"""Differential fidelity: generated cases run on real DAX and compared with
the model access by access (docs/model-validation.md).

* :mod:`.generate` -- seeded, reproducible cases over the case format;
* :mod:`.execute`  -- carry a case out on a DAX directory or device-dax
  device through the cffi engine and record what the kernel did per access;
* :mod:`.compare`  -- the model's answer against that observation, and the
  minimisation of a disagreeing case.
"""
