"""What each profile (`--profile quick|default|thorough`) asks of a run, in one place.

quick is CI on every commit and must keep the whole suite within its budget on two loaded
cores; thorough is before a release. Examples are Hypothesis's per behaviour (a spec's own
`max_examples` caps them); a `repeat` loop runs this share of its iterations and of its
time cap; a step that must see nothing happen (a `woken` step's window, a wait written
with `$quiet_ms`) watches this long.
"""

from __future__ import annotations

NAMES = ("quick", "default", "thorough")

EXAMPLES = {"quick": 25, "default": 60, "thorough": 400}

LOOP_SHARE = {"quick": 0.02, "default": 0.1, "thorough": 1.0}

# Seconds. Short is enough to see a wrong wake-up: the kernel wakes a waiter inside the
# call that triggers it, and a `woken` step gives a waiter that left its sleep but has
# not returned yet the whole step bound to finish, so a slow machine delays the verdict,
# not the evidence. Longer windows in the other profiles catch a late, stray wake-up.
QUIET = {"quick": 0.1, "default": 0.3, "thorough": 1.0}


def bindings(profile: str) -> dict:
    """The names every example gets: $quiet (seconds), $quiet_ms and $loop_share (for a
    loop an operation runs by itself, such as race_loop)."""
    seconds = QUIET.get(profile, QUIET["quick"])
    return {"quiet": seconds, "quiet_ms": round(seconds * 1000),
            "loop_share": LOOP_SHARE.get(profile, LOOP_SHARE["quick"])}

