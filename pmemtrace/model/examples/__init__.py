"""Embedded example cases (pmemtrace explain --example NAME)."""
