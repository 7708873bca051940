"""How a report names the kernel version it judged by, the same in every writer."""

from __future__ import annotations


def judged_as(target: dict) -> str:
    """'judged as 6.1.192 from uname -v (Debian)' for a report's `target`; '' when the
    report does not say (written by an older kit that read only `uname -r`)."""
    if target.get("kernel_source"):
        return f"judged as {target['kernel']} from {target['kernel_source']}"
    if target.get("assume_kernel"):     # older kits' override, gVisor's
        return f"judged as {target['assume_kernel']}"
    return ""


def kernel_text(target: dict) -> str:
    """'6.1.0-57-amd64, judged as 6.1.192 from uname -v (Debian)': the release as the
    kernel names itself, then the version the gates used."""
    judged = judged_as(target)
    return f"{target['release']}, {judged}" if judged else str(target["release"])
