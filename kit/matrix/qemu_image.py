"""The guest's Python environment on a local disk image, instead of reading it over 9p.

Under TCG, Python's first start in the guest spent most of its time reading the interpreter's
library (23 MB here), the standard library and the venv's packages over the 9p share, file by
file (one import of the kit: 29 s cold, 9 s warm). So the host copies them into an ext4
image, byte-compiled, and attaches it read-only as a virtio disk; /init mounts it and
bind-mounts each tree over the same path in the guest's view of the host's root, so paths
(tracebacks, reports, replay commands) are the host's. The checkout itself (the kit, its
specs) stays on the share, byte-compiled on the host before each boot (qemu.py): it changes
far more often than the venv, and caches keyed by its files' nanosecond mtimes (the man
pages' sentences) must match the host's, which mke2fs 1.47.0 does not keep.

    $KIT_CACHE/guest-images/python-<key>.img    the image (ext4, no journal, read-only)
    $KIT_CACHE/guest-images/python-<key>.json   what it holds; written last, marks it complete

`key` is a digest of every file that goes in (path, size, mtime) and of this module's format,
so a changed venv (a `pip install`, the kit installed as a wheel) makes a new image and an
unchanged one reuses it. mke2fs (from
e2fsprogs, on every Debian system) builds it without root or loop devices.
"""

from __future__ import annotations

import compileall
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from kit.matrix.qemu_initramfs import IMAGE_BINDS
from kit.matrix.qemu_kernel import KernelError, _say, cache_root

FORMAT = 1                     # bump when the layout below changes
BINDS = IMAGE_BINDS            # in the image: one absolute host path per line
ROOT = "root"                  # in the image: the trees, at their host paths below it
# Never read by `kit run`, and large: left out of the trees the image covers (which then do
# not exist in the guest; everything else in those trees does)
EXCLUDED = {"stdlib": {"test", "idlelib", "tkinter", "turtledemo", "ensurepip",
                       "site-packages", "dist-packages", "lib2to3"},
            "site": {"playwright"}}

_PATHS = """import json, os, sys, sysconfig
lib = os.path.join(sysconfig.get_config_var("LIBDIR") or "",
                   sysconfig.get_config_var("INSTSONAME") or "")
print(json.dumps({"stdlib": sysconfig.get_path("stdlib"),
                  "site": sorted({sysconfig.get_path("purelib"), sysconfig.get_path("platlib")}),
                  "libpython": lib if os.path.isfile(lib) else None,
                  "version": sys.version}))
"""


class ImageError(KernelError):
    """The guest image could not be built: a kit error, never a verdict on the kernel."""


@dataclass
class GuestImage:
    path: Path
    binds: list[str]           # host paths the guest sees from the image
    files: int
    size: int
    built: bool                # False: reused from the cache


def python_paths(python: str) -> dict:
    """Where the guest's interpreter finds its library, stdlib and packages."""
    try:
        proc = subprocess.run([python, "-c", _PATHS], capture_output=True, text=True,
                              timeout=60, check=False)
        return json.loads(proc.stdout)
    except (OSError, ValueError, subprocess.SubprocessError) as exc:
        raise ImageError(f"cannot ask {python} where its library is: {exc}") from None


def trees(python: str) -> list[tuple[Path, set[str]]]:
    """(host path, names left out at its top) of everything the image holds."""
    paths = python_paths(python)
    out: list[tuple[Path, set[str]]] = []
    if paths.get("libpython"):
        out.append((Path(paths["libpython"]), set()))
    out.append((Path(paths["stdlib"]), EXCLUDED["stdlib"]))
    out += [(Path(p), EXCLUDED["site"]) for p in paths["site"]]
    # a tree inside another one is covered by that one
    resolved = [(p.resolve(), skip) for p, skip in out if p.exists()]
    return [(p, skip) for p, skip in resolved
            if not any(q != p and q in p.parents for q, _ in resolved)]


def _walk(tree: Path, skip: set[str], pycache: bool = False):
    """Every regular file and symlink under `tree` (or `tree` itself), top-level `skip`
    names left out, __pycache__ only if asked (the host's .pyc files go into the image, but
    writing one must not make a new image: a stale one is compiled again there)."""
    if not tree.is_dir():
        yield tree
        return
    for top, dirs, files in os.walk(tree):
        if Path(top) == tree:
            dirs[:] = [d for d in dirs if d not in skip]
            files = [f for f in files if f not in skip]
        dirs[:] = sorted(d for d in dirs if pycache or d != "__pycache__")
        for name in sorted(files):
            yield Path(top) / name


def image_key(entries: list[tuple[Path, set[str]]]) -> tuple[str, list[Path]]:
    digest = hashlib.sha256(f"kit guest image {FORMAT}\n".encode())
    files = []
    for tree, skip in entries:
        digest.update(f"tree {tree} {sorted(skip)}\n".encode())
        for path in _walk(tree, skip):
            try:
                st = path.lstat()
            except OSError:
                continue
            digest.update(f"{path}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
            files.append(path)
    return digest.hexdigest()[:16], files


def images_dir() -> Path:
    return cache_root() / "guest-images"


def check_image(image: Path, record: Path) -> str | None:
    """Why a cached image cannot be used (None: it can): missing, another size than when it
    was built, no superblock, or a file system e2fsck finds damaged."""
    try:
        meta = json.loads(record.read_text())
        size = image.stat().st_size
    except (OSError, ValueError) as exc:
        return f"not built ({exc.__class__.__name__})"
    if size != meta.get("size"):
        return f"{image.name} is {size} bytes, {meta.get('size')} when built"
    try:
        with open(image, "rb") as f:      # the primary superblock, which the guest reads
            f.seek(1024 + 56)             # (e2fsck quietly falls back to a backup)
            magic = f.read(2)
    except OSError as exc:
        return f"{image.name} cannot be read: {exc.strerror}"
    if magic != b"\x53\xef":
        return f"{image.name} is damaged: no ext4 superblock"
    fsck = shutil.which("e2fsck") or "/sbin/e2fsck"
    try:
        proc = subprocess.run([fsck, "-fn", str(image)], capture_output=True, text=True,
                              timeout=300, check=False)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"e2fsck cannot check {image.name}: {exc}"
    if proc.returncode != 0:
        return f"e2fsck finds {image.name} damaged: {proc.stdout.strip()[-200:]}"
    return None


def _stage(entries, staging: Path) -> list[str]:
    """Copy the trees with the host's .pyc files (times kept: a .pyc records its source's
    mtime) into staging/root/<host path>; compile what is missing or stale, for host paths."""
    root = staging / ROOT
    for path in (f for tree, skip in entries for f in _walk(tree, skip, pycache=True)):
        target = root / path.relative_to("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        if path.is_symlink():
            os.symlink(os.readlink(path), target)
        elif path.is_file():
            shutil.copy2(path, target)
    binds = []
    for tree, _ in entries:
        copy = root / tree.relative_to("/")
        if not copy.exists():
            continue
        binds.append(str(tree))
        if copy.is_dir():
            # the source paths recorded in the .pyc files are the host's (ddir)
            compileall.compile_dir(copy, ddir=str(tree), quiet=2, workers=1)
    (staging / BINDS).write_text("".join(f"{b}\n" for b in binds))
    return binds


def _mke2fs(staging: Path, image: Path, files: int) -> None:
    used = sum(f.stat().st_size for f in staging.rglob("*") if f.is_file()
               and not f.is_symlink())
    size_mb = int(used * 1.25 / 2**20) + 64
    inodes = files * 2 + 4096          # the .pyc files and directories besides the sources
    mke2fs = shutil.which("mke2fs") or "/sbin/mke2fs"
    cmd = [mke2fs, "-q", "-F", "-t", "ext4", "-L", "kitpython",
           "-O", "^has_journal,^metadata_csum", "-N", str(inodes), "-E", "root_owner=0:0",
           "-d", str(staging), str(image), f"{size_mb}M"]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, check=False)
    except OSError as exc:
        raise ImageError(f"cannot run mke2fs (Debian package: e2fsprogs): {exc}") from None
    if proc.returncode != 0:
        raise ImageError(f"mke2fs failed: {(proc.stderr or proc.stdout).strip()[-400:]}")


KEEP = 3      # images kept in the cache (venvs used lately), ~200 MB each


def _forget_old(directory: Path) -> None:
    """All but the KEEP most recently used images go (a running VM keeps its open file)."""
    records = sorted(directory.glob("python-*.json"), key=lambda r: r.stat().st_mtime,
                     reverse=True)
    for record in records[KEEP:]:
        record.unlink(missing_ok=True)
        record.with_suffix(".img").unlink(missing_ok=True)


def ensure_image(python: str, log=None) -> GuestImage:
    """The image for this interpreter and venv: from the cache, or built now."""
    entries = trees(python)
    key, files = image_key(entries)
    directory = images_dir()
    directory.mkdir(parents=True, exist_ok=True)
    image, record = directory / f"python-{key}.img", directory / f"python-{key}.json"
    with open(directory / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)          # two VMs preparing at once build it once
        problem = check_image(image, record)
        if problem is None:
            os.utime(record)                      # recently used: kept by the clean-up
            meta = json.loads(record.read_text())
            return GuestImage(image, meta["binds"], meta["files"], meta["size"], False)
        _say(log, f"guest image {image.name}: {problem}; building it ({len(files)} files)")
        record.unlink(missing_ok=True)
        with tempfile.TemporaryDirectory(dir=directory, prefix="staging-") as tmp:
            binds = _stage(entries, Path(tmp))
            _mke2fs(Path(tmp), image.with_suffix(".tmp"), len(files))
        image.with_suffix(".tmp").replace(image)
        size = image.stat().st_size
        record.write_text(json.dumps({"binds": binds, "files": len(files), "size": size,
                                      "python": python}, indent=2) + "\n")
        _forget_old(directory)
        return GuestImage(image, binds, len(files), size, True)
