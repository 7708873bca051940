"""`exclusive:` behaviours run one at a time across processes, never wait forever, and
a bad name is a spec error."""

from __future__ import annotations

import multiprocessing
import os
import stat
import tempfile
import time
import uuid
from pathlib import Path

import pytest

from kit.engine import exclusive
from kit.engine.runner import check_behaviour
from kit.engine.target import Target
from kit.spec.loader import load_text

SPEC = """
behaviours:
  - id: x.exclusive.sleeper
    title: Holds the test lock for a while
    cite: {page: timerfd_create(2), section: DESCRIPTION, quote: "a discontinuous change"}
    exclusive: [kit_test_lock]
    steps:
      - sleep: 0.3
"""


@pytest.fixture
def lock():
    """A lock name of this test's own: tests on other xdist workers hold theirs meanwhile."""
    return f"kit_test_{uuid.uuid4().hex[:12]}"


def _behaviour(lock: str = "kit_test_lock"):
    loaded = load_text(SPEC.replace("kit_test_lock", lock), "exclusive.yaml")
    assert not loaded.errors, loaded.errors
    return loaded.behaviours[0]


def _hold(name: str, seconds: float, ready) -> None:
    with exclusive.held([name]):
        ready.set()
        time.sleep(seconds)


def test_the_spec_names_its_lock():
    assert _behaviour().exclusive == ("kit_test_lock",)


def test_behaviours_sharing_a_lock_run_one_after_the_other(lock):
    ready = multiprocessing.Event()
    holder = multiprocessing.Process(target=_hold, args=(lock, 0.5, ready))
    holder.start()
    try:
        assert ready.wait(10)
        started = time.monotonic()
        verdict = check_behaviour(_behaviour(lock), Target.current())
        assert verdict.status == "conforms", verdict.message
        # it waited for the other holder (about 0.5 s) and then slept its own 0.3 s
        assert time.monotonic() - started >= 0.6
    finally:
        holder.join(10)


def test_a_lock_held_too_long_gives_an_error_verdict_not_a_hang(monkeypatch, lock):
    monkeypatch.setattr(exclusive, "WAIT", 0.2)
    ready = multiprocessing.Event()
    holder = multiprocessing.Process(target=_hold, args=(lock, 3, ready))
    holder.start()
    try:
        assert ready.wait(10)
        verdict = check_behaviour(_behaviour(lock), Target.current())
        assert verdict.status == "error"
        assert lock in verdict.message and "stayed locked" in verdict.message
    finally:
        holder.kill()
        holder.join(10)
    # the holder's death released it
    with exclusive.held([lock], wait=1):
        pass


@pytest.mark.parametrize("bad", ["[Realtime-Clock]", "realtime_clock", "[]"])
def test_a_bad_exclusive_is_a_spec_error(bad):
    loaded = load_text(SPEC.replace("[kit_test_lock]", bad), "exclusive.yaml")
    assert loaded.errors
    error = str(loaded.errors[0])
    assert "exclusive.yaml:" in error and "exclusive" in error


def test_a_lock_file_made_by_another_user_can_be_taken(tmp_path, monkeypatch):
    monkeypatch.setattr(exclusive, "lock_dir", lambda: str(tmp_path))
    (tmp_path / "kit_test_lock").write_text("")
    (tmp_path / "kit_test_lock").chmod(0o444)       # as root's file looks to nobody
    with exclusive.held(["kit_test_lock"], wait=1):
        pass


# -- the lock directory is this user's own ------------------------------------------------

NOBODY = 65534


@pytest.fixture
def lock_base(tmp_path, monkeypatch):
    """The temporary directory the lock directory is made in, as another user sees it."""
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    tmp_path.chmod(0o1777)              # like /tmp: anyone may plant something
    return tmp_path


def _planted_by_nobody(path: Path, make) -> None:
    """`make()` the path, then give it to the unprivileged user nobody (as if nobody had
    made it: pytest's temporary directories are closed to nobody)."""
    make()
    os.lchown(path, NOBODY, NOBODY)


needs_root = pytest.mark.skipif(os.getuid() != 0, reason="needs root to act as another user")


def test_the_lock_directory_is_private_to_the_user(lock_base, lock):
    with exclusive.held([lock], wait=1):
        pass
    info = os.lstat(exclusive.lock_dir())
    assert exclusive.lock_dir() == str(lock_base / f"kit-locks-{os.getuid()}")
    assert stat.S_ISDIR(info.st_mode) and info.st_uid == os.getuid()
    # root's may be read by all, so that unprivileged runs can share its locks
    assert stat.S_IMODE(info.st_mode) == (0o755 if os.getuid() == 0 else 0o700)


@needs_root
def test_a_lock_directory_planted_by_another_user_is_refused(lock_base, lock, target):
    planted = lock_base / f"kit-locks-{os.getuid()}"
    _planted_by_nobody(planted, lambda: os.mkdir(planted, 0o777))
    assert planted.stat().st_uid == NOBODY
    verdict = check_behaviour(_behaviour(lock), target)
    assert verdict.status == "error"
    assert verdict.message.startswith(f"not run: lock directory {planted} refused: owned "
                                      f"by uid {NOBODY}")
    assert list(planted.iterdir()) == []            # nothing created in it


@needs_root
def test_a_symlink_planted_for_the_lock_directory_is_refused(lock_base, lock, target,
                                                              tmp_path_factory):
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    planted = lock_base / f"kit-locks-{os.getuid()}"
    _planted_by_nobody(planted, lambda: os.symlink(elsewhere, planted))
    verdict = check_behaviour(_behaviour(lock), target)
    assert verdict.status == "error"
    assert f"lock directory {planted} refused" in verdict.message
    assert "symlink" in verdict.message
    assert list(elsewhere.iterdir()) == []          # the root run made nothing there


def test_a_lock_directory_others_may_write_is_refused(lock_base, lock):
    mine = lock_base / f"kit-locks-{os.getuid()}"
    mine.mkdir()
    mine.chmod(0o777)
    with pytest.raises(exclusive.Unsafe, match="mode 0777"), exclusive.held([lock], wait=1):
        pass


def test_a_lock_file_that_is_a_symlink_is_not_followed(lock_base, lock, tmp_path_factory):
    victim = tmp_path_factory.mktemp("victim") / "would-be-created"
    mine = Path(exclusive.lock_dir())
    (mine / lock).symlink_to(victim)
    with pytest.raises(exclusive.Unsafe, match="symlink is never followed"), \
            exclusive.held([lock], wait=1):
        pass
    assert not victim.exists()


def _flock_as_nobody(path: str) -> str:
    """In a forked child dropped to nobody: whether the lock `path`'s name is free."""
    from kit.adapter.process import run_forked

    def probe():
        os.setgroups([])
        os.setgid(NOBODY)
        os.setuid(NOBODY)
        try:
            with exclusive.held([os.path.basename(path)], wait=0.2):
                return "free"
        except exclusive.Busy:
            return "busy"

    status, data = run_forked(probe, 10)
    assert status == "ok", data
    return data


@pytest.fixture
def shared_base(monkeypatch):
    """A temporary directory that nobody can reach too (pytest's are closed to others)."""
    import shutil

    where = tempfile.mkdtemp(prefix="kit-test-locks-", dir="/tmp")
    os.chmod(where, 0o1777)
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    monkeypatch.setattr(tempfile, "tempdir", where)
    yield Path(where)
    shutil.rmtree(where)


@needs_root
def test_an_unprivileged_run_waits_for_a_root_run_holding_the_same_state(shared_base, lock):
    """Setting the clock as root cancels nobody's cancel-on-set timers: the two runs must
    exclude each other although their own lock directories differ."""
    exclusive.prepare([lock])
    where = os.path.join(exclusive.lock_dir(), lock)
    with exclusive.held([lock], wait=1):
        assert _flock_as_nobody(where) == "busy"
    assert _flock_as_nobody(where) == "free"
