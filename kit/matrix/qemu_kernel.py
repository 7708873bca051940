"""Debian kernel packages for the qemu target: resolve, download, unpack, extract, cache.

Nothing here installs anything: a kernel package is fetched with `apt-get download` and
unpacked with `dpkg -x` into a cache directory, one directory per exact package version:

    $KIT_CACHE/kernels/<package>_<version>/      (KIT_CACHE defaults to ~/.cache/kit)
        <package>_<version>_<arch>.deb  what apt-get download fetched
        tree/                           dpkg -x of it: boot/vmlinuz-*, boot/config-*, lib/modules/
        vmlinux                         amd64: the ELF kernel inside vmlinuz (absent if extraction
                                        failed)
        Image                           arm64: the Image the board loads (vmlinuz, inflated)
        initramfs.cpio                  busybox, the 9p-over-virtio modules, /init
        kernel.json                     what was prepared; written last, so it marks completion

The pieces are pure functions where they can be (version comparison, apt output parsing,
payload extraction, ELF notes, module ordering) so that tests need no network and no VM.
"""

from __future__ import annotations

import bz2
import fcntl
import functools
import gzip
import hashlib
import io
import json
import lzma
import os
import re
import shutil
import struct
import subprocess
import tempfile
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path

from debian.debian_support import version_compare
from elftools.common.exceptions import ELFError
from elftools.elf.elffile import ELFFile
from elftools.elf.enums import ENUM_NOTE_N_TYPE

# -- the cache --------------------------------------------------------------------------------


def cache_root() -> Path:
    """$KIT_CACHE, else $XDG_CACHE_HOME/kit, else ~/.cache/kit. Kernels live in kernels/."""
    # absolute: paths below it are handed to qemu and to the guest (KIT_KERNEL_CONFIG)
    if os.environ.get("KIT_CACHE"):
        return Path(os.environ["KIT_CACHE"]).expanduser().resolve()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return ((Path(xdg) if xdg else Path.home() / ".cache") / "kit").resolve()


def kernels_dir() -> Path:
    return cache_root() / "kernels"


# -- Debian versions --------------------------------------------------------------------------


def compare_versions(a: str, b: str) -> int:
    """-1, 0 or 1, as `dpkg --compare-versions` orders Debian version strings."""
    order = version_compare(a, b)
    return (order > 0) - (order < 0)


# -- resolving a package ----------------------------------------------------------------------


class KernelError(Exception):
    """A kernel package could not be resolved, fetched or prepared."""


def parse_apt_show(text: str) -> dict[str, str]:
    """`apt-cache show --no-all-versions A B ...` -> {package: candidate version}."""
    versions: dict[str, str] = {}
    for stanza in re.split(r"\n\s*\n", text):
        fields = dict(re.findall(r"^([A-Za-z0-9-]+):[ \t]*(.*)$", stanza, re.MULTILINE))
        if "Package" in fields and "Version" in fields:
            name, version = fields["Package"], fields["Version"]
            if name not in versions or compare_versions(version, versions[name]) > 0:
                versions[name] = version
    return versions


def literal_prefix(pattern: str) -> str:
    """The literal start of a regular expression: what `apt-cache pkgnames` can narrow by."""
    out = []
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if c == "\\" and i + 1 < len(pattern) and not pattern[i + 1].isalnum():
            out.append(pattern[i + 1])
            i += 2
            continue
        if c in ".^$*+?{}[]()|\\":
            break
        out.append(c)
        i += 1
    # a quantifier applies to the character before it, which is then not literal either
    if i < len(pattern) and pattern[i] in "*?{" and out:
        out.pop()
    return "".join(out)


def pick_newest(pattern: str, versions: dict[str, str]) -> tuple[str, str] | None:
    """The (package, version) with the highest version among names matching `pattern` (a
    Python regular expression matched against the whole name, or an exact name)."""
    if pattern in versions:
        return pattern, versions[pattern]
    regex = re.compile(pattern)
    matching = [(n, v) for n, v in versions.items() if regex.fullmatch(n)]
    if not matching:
        return None
    best = matching[0]
    for name, version in matching[1:]:
        order = compare_versions(version, best[1])
        if order > 0 or (order == 0 and name > best[0]):
            best = (name, version)
    return best


def _run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, check=False, **kw)


def apt_candidates(pattern: str, apt_options: list[str] = ()) -> dict[str, str]:
    """Package names the apt cache knows that match `pattern`, with candidate versions;
    `apt_options` point apt at a private configuration (kit.matrix.apt)."""
    if shutil.which("apt-cache") is None:
        raise KernelError("apt-cache is missing: the qemu target needs a Debian-based host")
    cache = ["apt-cache", *apt_options]
    names = [pattern] if _run([*cache, "show", "--no-all-versions", pattern],
                              timeout=120).returncode == 0 else []
    if not names:
        try:
            regex = re.compile(pattern)
        except re.error as exc:
            raise KernelError(f"package {pattern!r} is neither a known package nor a valid "
                              f"regular expression: {exc}") from None
        listed = _run([*cache, "pkgnames", literal_prefix(pattern)], timeout=120)
        names = sorted(n for n in listed.stdout.split() if regex.fullmatch(n))
    if not names:
        return {}
    shown = _run([*cache, "show", "--no-all-versions", *names], timeout=120)
    return parse_apt_show(shown.stdout)


# -- the bzImage payload and the ELF inside it -------------------------------------------------

# (name, magic) as scripts/extract-vmlinux looks for them
MAGICS = [
    ("gzip", b"\x1f\x8b\x08"),
    ("xz", b"\xfd7zXZ\x00"),
    ("bzip2", b"BZh"),
    ("lzma", b"\x5d\x00\x00\x00"),
    ("lzo", b"\x89LZO"),
    ("lz4", b"\x02\x21\x4c\x18"),
    ("zstd", b"\x28\xb5\x2f\xfd"),
]

_TOOLS = {"zstd": ["zstd", "-dcq"], "lz4": ["lz4", "-dcq"], "lzo": ["lzop", "-dcq"]}


def decompress(kind: str, data: bytes) -> bytes:
    """Decompress one stream, ignoring whatever follows it (the kernel appends its size)."""
    if kind == "gzip":
        return zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(data)
    if kind == "xz":
        return lzma.LZMADecompressor(lzma.FORMAT_XZ).decompress(data)
    if kind == "lzma":
        return lzma.LZMADecompressor(lzma.FORMAT_ALONE).decompress(data)
    if kind == "bzip2":
        return bz2.BZ2Decompressor().decompress(data)
    if kind == "zstd":
        try:
            import zstandard  # optional; the zstd command does as well
            return zstandard.ZstdDecompressor().decompressobj().decompress(data)
        except ImportError:
            pass
    tool = _TOOLS.get(kind)
    if tool is None or shutil.which(tool[0]) is None:
        raise KernelError(f"no decompressor for {kind} (install Debian's "
                          f"{ {'lzo': 'lzop'}.get(kind, kind)} package)")
    # the command exits non-zero on the trailing bytes after the stream; its output stands
    proc = subprocess.run(tool, input=data, capture_output=True, check=False, timeout=300)
    return proc.stdout


def bzimage_payload(image: bytes) -> bytes | None:
    """The compressed kernel inside a bzImage, located by its setup header (boot protocol
    2.08+: payload_offset and payload_length), or None if the header is not there."""
    if len(image) < 0x250 or image[0x202:0x206] != b"HdrS":
        return None
    if struct.unpack_from("<H", image, 0x206)[0] < 0x208:
        return None
    setup_sects = image[0x1F1] or 4
    offset, length = struct.unpack_from("<II", image, 0x248)
    start = (setup_sects + 1) * 512 + offset
    payload = image[start:start + length]
    return payload if len(payload) == length and length else None


def extract_vmlinux(image: bytes) -> tuple[bytes, str]:
    """The uncompressed ELF vmlinux inside a vmlinuz, and its compression.

    As scripts/extract-vmlinux does: look for each compression's magic and decompress from
    there until the result is an ELF file. The payload the setup header points at is tried
    first (exact), then every magic found anywhere in the image.
    """
    candidates: list[tuple[str, int, bytes]] = []
    payload = bzimage_payload(image)
    if payload:
        candidates += [(kind, 0, payload) for kind, magic in MAGICS
                       if payload.startswith(magic)]
    for kind, magic in MAGICS:
        at = image.find(magic)
        tries = 0
        while at != -1 and tries < 8:
            candidates.append((kind, at, image))
            at, tries = image.find(magic, at + 1), tries + 1
    errors = []
    for kind, at, blob in candidates:
        try:
            out = decompress(kind, blob[at:])
        except (KernelError, OSError, EOFError, ValueError, lzma.LZMAError, zlib.error) as exc:
            errors.append(f"{kind}@{at}: {exc}")
            continue
        if out[:4] == b"\x7fELF":
            return out, kind
    raise KernelError("no compressed ELF kernel found in the image"
                      + (f" ({'; '.join(errors[:3])})" if errors else ""))


XEN_ELFNOTE_PHYS32_ENTRY = 18


def _elf(data: bytes) -> ELFFile:
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        raise KernelError("not a little-endian ELF64 file")
    try:
        return ELFFile(io.BytesIO(data))
    except ELFError as exc:
        raise KernelError(f"not a readable ELF file: {exc}") from None


def elf_notes(data: bytes):
    """(name, type, desc) of every note in the PT_NOTE segments of an ELF64 file. The type
    is the number in the file (pyelftools names some numbers by their GNU meaning, whoever
    the note's owner is: a Xen note 5 is not NT_GNU_PROPERTY_TYPE_0)."""
    for segment in _elf(data).iter_segments("PT_NOTE"):
        for note in segment.iter_notes():
            ntype = note["n_type"]
            if not isinstance(ntype, int):
                ntype = ENUM_NOTE_N_TYPE.get(ntype, ntype)
            desc = note["n_descdata"]
            yield note["n_name"], ntype, desc.encode("latin-1") if isinstance(desc, str) \
                else desc


def has_pvh_note(vmlinux: bytes) -> bool:
    """The kernel has a PVH entry point (CONFIG_PVH): qemu -kernel can boot the ELF."""
    try:
        return any(name == "Xen" and ntype == XEN_ELFNOTE_PHYS32_ENTRY
                   for name, ntype, _ in elf_notes(vmlinux))
    except (KernelError, ELFError, struct.error):
        return False


def elf_section(data: bytes, wanted: str) -> bytes | None:
    """The contents of one section of an ELF64 relocatable (a kernel module)."""
    try:
        section = _elf(data).get_section_by_name(wanted)
        return section.data() if section is not None else None
    except (ELFError, struct.error) as exc:
        raise KernelError(f"cannot read section {wanted}: {exc}") from None


# -- modules ----------------------------------------------------------------------------------


def module_name(path: str) -> str:
    """kernel/net/9p/9pnet-virtio.ko.xz -> 9pnet_virtio (the kernel's own normalisation)."""
    base = path.rsplit("/", 1)[-1]
    base = re.sub(r"\.ko(\.(xz|gz|zst))?$", "", base)
    return base.replace("-", "_")


def read_module(path: Path) -> bytes:
    """A module file's ELF, decompressed when Debian compressed it."""
    data = path.read_bytes()
    if path.name.endswith(".xz"):
        return lzma.decompress(data)
    if path.name.endswith(".gz"):
        return gzip.decompress(data)
    if path.name.endswith(".zst"):
        return decompress("zstd", data)
    return data


def module_depends(elf: bytes) -> list[str]:
    """The `depends=` of a module's .modinfo: what depmod writes into modules.dep."""
    info = elf_section(elf, ".modinfo") or b""
    for entry in info.split(b"\0"):
        if entry.startswith(b"depends="):
            return [d.replace("-", "_") for d in entry[8:].decode().split(",") if d]
    return []


def parse_modules_dep(text: str) -> dict[str, tuple[str, list[str]]]:
    """modules.dep -> {module: (path, [dependency modules])}."""
    out = {}
    for line in text.splitlines():
        path, sep, deps = line.partition(":")
        if sep:
            out[module_name(path)] = (path.strip(), [module_name(d) for d in deps.split()])
    return out


def load_order(wanted: list[str], deps: dict[str, list[str]],
               builtin: set[str]) -> list[str]:
    """The modules to insmod, dependencies first; built-in ones are left out.

    `deps` maps every loadable module to the modules it needs; a wanted module that is
    neither loadable nor built in is an error (the kernel cannot do 9p over virtio).
    """
    order: list[str] = []
    visiting: set[str] = set()

    def visit(name: str, chain: tuple[str, ...]) -> None:
        if name in order or name in builtin and name not in deps:
            return
        if name not in deps:
            raise KernelError(f"module {name} (needed by {' <- '.join(chain) or 'the guest'})"
                              f" is neither built in nor shipped in the package")
        if name in visiting:
            raise KernelError(f"module dependency cycle through {name}")
        visiting.add(name)
        for dep in deps[name]:
            visit(dep, (name, *chain))
        visiting.discard(name)
        order.append(name)

    for name in wanted:
        visit(name.replace("-", "_"), ())
    return order


@dataclass
class ModuleTree:
    """The modules of one unpacked kernel package: where each is, what each needs."""

    root: Path                      # tree/lib/modules/<release>
    paths: dict[str, Path] = field(default_factory=dict)
    deps: dict[str, list[str]] = field(default_factory=dict)
    builtin: set[str] = field(default_factory=set)
    source: str = ""                # "modules.dep" or "modinfo"

    @classmethod
    def scan(cls, root: Path) -> ModuleTree:
        tree = cls(root)
        builtin = root / "modules.builtin"
        if builtin.exists():
            tree.builtin = {module_name(line) for line in builtin.read_text().split()}
        dep_file = root / "modules.dep"
        for path in root.rglob("*.ko*"):
            if re.search(r"\.ko(\.(xz|gz|zst))?$", path.name):
                tree.paths[module_name(path.name)] = path
        if dep_file.exists():
            tree.source = "modules.dep"
            for name, (_, deps) in parse_modules_dep(dep_file.read_text()).items():
                tree.deps[name] = deps
        else:
            # Debian's packages ship no modules.dep (depmod makes it on install): read the
            # same information, the depends= of each module's .modinfo, lazily in needs().
            tree.source = "modinfo"
        return tree

    def needs(self, name: str) -> list[str]:
        if name not in self.deps:
            self.deps[name] = module_depends(read_module(self.paths[name]))
        return self.deps[name]

    def order(self, wanted: list[str]) -> list[str]:
        # resolve the closure first (reading .modinfo only of modules on the way)
        pending, seen = [w.replace("-", "_") for w in wanted], set()
        while pending:
            name = pending.pop()
            if name in seen or name not in self.paths:
                continue
            seen.add(name)
            pending.extend(self.needs(name))
        return load_order(wanted, {n: self.deps[n] for n in seen}, self.builtin)


# -- kernel config ----------------------------------------------------------------------------


def parse_config(text: str) -> dict[str, str]:
    """/boot/config-*: {CONFIG_X: 'y'|'m'|value}; `# CONFIG_X is not set` is left out."""
    return dict(re.findall(r"^(CONFIG_\w+)=(.*)$", text, re.MULTILINE))


# -- the prepared kernel ----------------------------------------------------------------------


@dataclass
class PreparedKernel:
    package: str
    version: str
    release: str                       # uname -r of the guest, from boot/vmlinuz-<release>
    directory: str
    vmlinuz: str
    vmlinux: str | None                # None when no ELF with a PVH note could be extracted
    vmlinux_note: str                  # why there is no vmlinux, or the compression it had
    initramfs: str
    modules: list[str]                 # insmod order
    modules_source: str                # "modules.dep" or "modinfo"
    config: dict = field(default_factory=dict)   # the few options that matter here
    initramfs_id: str = ""             # what the initramfs was built from (see initramfs_id)
    disk: bool = False                 # the initramfs can mount the Python image
    architecture: str = "amd64"        # Debian's name of the kernel's architecture
    image: str | None = None           # arm64: the Image the board loads

    @classmethod
    def load(cls, directory: Path) -> PreparedKernel | None:
        try:
            data = json.loads((directory / "kernel.json").read_text())
            kernel = cls(**data)
        except (OSError, ValueError, TypeError):
            return None
        needed = [kernel.vmlinuz, kernel.initramfs] + [p for p in (kernel.vmlinux,
                                                                   kernel.image) if p]
        return kernel if all(Path(p).exists() for p in needed) else None

    def config_file(self) -> Path | None:
        """The package's boot/config-<release> as dpkg -x unpacked it, if it ships one."""
        path = Path(self.directory) / "tree" / "boot" / f"config-{self.release}"
        return path if path.is_file() else None

    def save(self) -> None:
        path = Path(self.directory) / "kernel.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2) + "\n")
        tmp.replace(path)


def cached_kernels(pattern: str) -> list[PreparedKernel]:
    """Prepared kernels in the cache whose package matches `pattern`, newest first."""
    found = []
    root = kernels_dir()
    if not root.is_dir():
        return []
    try:
        regex = re.compile(pattern)
    except re.error:
        regex = None
    for directory in root.iterdir():
        kernel = PreparedKernel.load(directory)
        if kernel and (kernel.package == pattern or regex and regex.fullmatch(kernel.package)):
            found.append(kernel)
    found.sort(key=functools.cmp_to_key(lambda a, b: compare_versions(b.version, a.version)))
    return found


# Modules the guest needs for 9p over virtio-pci; their dependencies (netfs, fscache,
# 9pnet, virtio, virtio_ring, virtio_pci_*_dev ...) come from the package's own metadata.
GUEST_MODULES = ["virtio_pci", "9pnet_virtio", "9p"]
# ... and to mount the Python image (qemu_image.py), an ext4 file system on a virtio disk
# (ext4 asks for crc32c when mounting, which an initramfs without modprobe cannot load on
# demand). A kernel without them reads Python over 9p.
DISK_MODULES = ["virtio_blk", "crc32c_generic", "ext4"]
CONFIG_KEYS = ["CONFIG_PVH", "CONFIG_VIRTIO", "CONFIG_VIRTIO_PCI", "CONFIG_NET_9P",
               "CONFIG_NET_9P_VIRTIO", "CONFIG_9P_FS", "CONFIG_NETFS_SUPPORT",
               "CONFIG_FSCACHE", "CONFIG_DEVTMPFS", "CONFIG_SERIAL_8250_CONSOLE",
               "CONFIG_MODULE_DECOMPRESS"]


def _say(log, message: str) -> None:
    if log is not None:
        log.write(f"[kit qemu] {message}\n")
        log.flush()


def _extract(vmlinuz: Path, vmlinux: Path) -> str:
    """Write the ELF kernel with a PVH note beside the package; say what happened."""
    try:
        elf, compression = extract_vmlinux(vmlinuz.read_bytes())
    except KernelError as exc:
        return str(exc)
    if not has_pvh_note(elf):
        return "the ELF kernel has no PVH entry note (CONFIG_PVH is off)"
    tmp = vmlinux.with_suffix(".tmp")
    tmp.write_bytes(elf)
    tmp.replace(vmlinux)
    return f"extracted from {compression}-compressed vmlinuz"


def initramfs_id(busybox: Path, extra_modules: list[str]) -> str:
    """Changes when the cached initramfs must be rebuilt: another /init, busybox, modules."""
    from kit.matrix.qemu_initramfs import init_script

    digest = hashlib.sha256(init_script().encode())
    digest.update(Path(busybox).read_bytes())
    digest.update(" ".join(GUEST_MODULES + DISK_MODULES + sorted(extra_modules)).encode())
    return digest.hexdigest()[:16]


def download_uri(package: str, version: str, apt_options: list[str] = ()) -> str:
    """Where apt would fetch the package from (nothing is downloaded)."""
    proc = _run(["apt-get", *apt_options, "download", "--print-uris", f"{package}={version}"],
                timeout=120)
    found = re.search(r"^'([^']+)'", proc.stdout, re.MULTILINE)
    if proc.returncode != 0 or not found:
        raise KernelError(f"apt cannot fetch {package}={version}: "
                          f"{(proc.stderr or proc.stdout).strip()[-300:]}")
    return found.group(1)


def fetch_deb(package: str, version: str, directory: Path, apt_options: list[str] = (),
              log=None) -> Path:
    """The package's .deb in `directory`: `apt-get download` once, then the cached file."""
    debs = sorted(directory.glob("*.deb"))
    if debs:
        return debs[0]
    _say(log, f"apt-get download {package}={version}")
    with tempfile.TemporaryDirectory(dir=directory) as tmp:
        proc = _run(["apt-get", *apt_options, "download", f"{package}={version}"], cwd=tmp,
                    timeout=1800)
        got = list(Path(tmp).glob("*.deb"))
        if proc.returncode != 0 or not got:
            raise KernelError(f"apt-get download {package}={version} failed: "
                              f"{(proc.stderr or proc.stdout).strip()[-500:]}")
        got[0].replace(directory / got[0].name)
    return directory / got[0].name


def unpack_deb(deb: Path, tree: Path, log=None) -> None:
    """`dpkg -x` of the package into `tree` (never installed), once."""
    if (tree / ".complete").exists():
        return
    _say(log, f"dpkg -x {deb.name}")
    shutil.rmtree(tree, ignore_errors=True)
    proc = _run(["dpkg", "-x", str(deb), str(tree)], timeout=1800)
    if proc.returncode != 0:
        raise KernelError(f"dpkg -x failed: {proc.stderr.strip()[-500:]}")
    (tree / ".complete").write_text("")


ARM64_IMAGE_MAGIC = b"ARM\x64"        # at offset 56 of an arm64 Image's header


def arm64_image(vmlinuz: Path, out: Path) -> str:
    """Write the bootable arm64 Image beside the package and say what it was. Debian's
    vmlinuz is the Image itself (6.1 in bookworm) or a gzip'd one: QEMU would inflate the
    latter itself, but one unpacked here is checked once, and not inflated at every boot."""
    data = vmlinuz.read_bytes()
    how = "vmlinuz is an uncompressed Image"
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as exc:
            raise KernelError(f"{vmlinuz.name}: a gzip stream that does not inflate: "
                              f"{exc}") from None
        how = "inflated from a gzip'd vmlinuz"
    if data[56:60] != ARM64_IMAGE_MAGIC:
        raise KernelError(f"{vmlinuz.name} is not an arm64 kernel Image (no ARM\\x64 magic "
                          f"at offset 56)")
    tmp = out.with_suffix(".tmp")
    tmp.write_bytes(data)
    tmp.replace(out)
    return how


def prepare_kernel(package: str, version: str, busybox: Path, log=None,
                   extra_modules: list[str] | None = None,
                   apt_options: list[str] = (), architecture: str = "amd64") -> PreparedKernel:
    """Download, unpack and prepare one exact package version (once; then from the cache).
    An amd64 kernel is booted from its vmlinux (PVH) or bzImage, an arm64 one from its
    Image; `busybox` is a static one of the kernel's architecture."""
    from kit.matrix.qemu_initramfs import build_base_initramfs

    extra_modules = list(extra_modules or [])
    wanted_id = initramfs_id(busybox, extra_modules)
    directory = kernels_dir() / f"{package}_{version}"
    kernel = PreparedKernel.load(directory)
    if kernel and kernel.initramfs_id == wanted_id:
        return kernel
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)      # a concurrent prepare of the same kernel waits
        kernel = PreparedKernel.load(directory)
        if kernel and kernel.initramfs_id == wanted_id:
            return kernel
        deb = fetch_deb(package, version, directory, apt_options, log)
        tree = directory / "tree"
        unpack_deb(deb, tree, log)
        vmlinuzes = sorted((tree / "boot").glob("vmlinuz-*"))
        if not vmlinuzes:
            raise KernelError(f"{package} has no boot/vmlinuz-*: not a kernel image package")
        vmlinuz = vmlinuzes[0]
        release = vmlinuz.name[len("vmlinuz-"):]
        config_path = tree / "boot" / f"config-{release}"
        config = parse_config(config_path.read_text()) if config_path.exists() else {}

        vmlinux_path, note, image = directory / "vmlinux", "", None
        if architecture == "arm64":
            # the board loads the Image itself: no ELF, no PVH entry to look for
            image = directory / "Image"
            note = kernel.vmlinux_note if kernel and kernel.image and image.exists() else \
                arm64_image(vmlinuz, image)
            _say(log, f"Image: {note}")
        elif kernel and kernel.vmlinux and vmlinux_path.exists():
            note = kernel.vmlinux_note          # only the initramfs is out of date
        else:
            note = _extract(vmlinuz, vmlinux_path)
        if architecture != "arm64":
            _say(log, f"vmlinux: {note}")

        modules = ModuleTree.scan(tree / "lib" / "modules" / release)
        order = modules.order(GUEST_MODULES + extra_modules)
        try:
            order, disk = modules.order(GUEST_MODULES + extra_modules + DISK_MODULES), True
        except KernelError as exc:
            disk = False
            _say(log, f"no Python image for this kernel: {exc}")
        _say(log, f"guest modules ({modules.source}): {' '.join(order) or 'all built in'}")
        initramfs = directory / "initramfs.cpio"
        build_base_initramfs(initramfs, busybox, [(m, read_module(modules.paths[m]))
                                                  for m in order])
        kernel = PreparedKernel(
            package=package, version=version, release=release, directory=str(directory),
            vmlinuz=str(vmlinuz), vmlinux=str(vmlinux_path) if vmlinux_path.exists() else None,
            vmlinux_note=note, initramfs=str(initramfs), modules=order,
            modules_source=modules.source,
            config={k: config[k] for k in CONFIG_KEYS if k in config}, initramfs_id=wanted_id,
            disk=disk, architecture=architecture, image=str(image) if image else None)
        kernel.save()
        return kernel
