"""Native helpers: small C programs the kit builds on the spot with the system's compiler
(kit.native.build) and runs as subprocesses, for loops Python is too slow to drive (the race
executor, kit.native.race) and for timings Python would blur (kit bench's helper)."""
