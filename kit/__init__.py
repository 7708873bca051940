"""Syscall conformance kit: documented kernel behaviour as declarative specs, checked on the real kernel."""

__version__ = "0.1.0"
