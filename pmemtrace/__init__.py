"""pmemtrace: explain Linux DAX mapping behaviour (PMD vs PTE, fallback reasons, DAX-GUP)."""

__version__ = "0.1.0"
