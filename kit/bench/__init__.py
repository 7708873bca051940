"""`kit bench`: how fast the target kernel wakes a waiter.

The figures come from a small C helper (notify.c, built on the spot with cc -O2 -pthread
and cached by a hash of its source): Python's own overhead would blur microsecond wake-ups.
See kit.bench.run.
"""
