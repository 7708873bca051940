"""Target files (targets/*.yaml, kit/matrix/targets.py): a name that could become a path
outside the output directory, a duplicate name, or a file that is not a regular file is an
error naming the file, the line and the field, and `kit matrix` exits 3 on it."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest
from helpers import run_kit

from kit.matrix.targets import TargetFileError, load_target, load_targets

REPO = Path(__file__).resolve().parent.parent


def target_file(directory: Path, stem: str, name: str, kind: str = "host") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{stem}.yaml"
    path.write_text(textwrap.dedent(f"""\
        # a comment, so that `name` is not on the first line
        kind: {kind}
        description: a test target
        name: {name}
        timeout: 60
        """))
    return path


def test_the_shipped_target_files_load():
    names = [t.name for t in load_targets(REPO / "targets")]
    assert len(names) == len(set(names)) and "host" in names


@pytest.mark.parametrize("name", ["../../etc", "/tmp/abs", "a/b", "'..'", "'.'", ".hidden",
                                  "'two words'", "'-x'", "x" * 65, "[host]"])
def test_a_bad_name_names_file_line_and_field(tmp_path, name):
    path = target_file(tmp_path, "bad", name)
    with pytest.raises(TargetFileError) as caught:
        load_target(path)
    assert str(caught.value).startswith(f"{path}:4: field name: ")
    assert caught.value.line == 4 and caught.value.field == "name"


def test_a_duplicate_name_is_an_error_naming_both_files(tmp_path):
    first = target_file(tmp_path, "a", "twin")
    second = target_file(tmp_path, "b", "twin")
    with pytest.raises(TargetFileError) as caught:
        load_targets(tmp_path)
    message = str(caught.value)
    assert message.startswith(f"{second}:4: field name: ") and str(first) in message


def test_an_unknown_kind_names_its_line(tmp_path):
    path = target_file(tmp_path, "k", "x", kind="teleport")
    with pytest.raises(TargetFileError, match=r":2: field kind: unknown kind 'teleport'"):
        load_target(path)


def test_a_fifo_among_the_targets_is_refused_without_blocking(tmp_path):
    target_file(tmp_path, "a", "host")
    os.mkfifo(tmp_path / "b.yaml")
    with pytest.raises(TargetFileError, match="b.yaml: not a regular file"):
        load_targets(tmp_path)


def test_an_oversized_target_file_is_refused(tmp_path):
    path = target_file(tmp_path, "big", "host")
    path.write_text(path.read_text() + "# padding\n" * 10_000)
    with pytest.raises(TargetFileError, match="at most"):
        load_target(path)


def test_broken_yaml_names_its_line(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("name: x\nkind: host\ndescription: [unclosed\n")
    with pytest.raises(TargetFileError) as caught:
        load_target(path)
    assert caught.value.line >= 3 and str(caught.value).startswith(f"{path}:")


# -- as a user sees it: `kit matrix` exits 3 with the reason -------------------------------


def test_kit_matrix_exits_3_on_a_bad_target_name(tmp_path):
    path = target_file(tmp_path / "targets", "evil", "../../tmp/evil")
    ran = run_kit(tmp_path, "matrix", "--targets", str(tmp_path / "targets"),
                  "-o", str(tmp_path / "out"))
    assert ran.ret == 3, ran.output
    assert f"{path}:4: field name: '../../tmp/evil' is not a valid target name" in ran.stderr
    assert not (tmp_path / "out").exists()


def test_kit_matrix_exits_3_when_the_output_directory_is_a_file(tmp_path):
    target_file(tmp_path / "targets", "host", "host")
    (tmp_path / "out").write_text("not a directory")
    ran = run_kit(tmp_path, "matrix", "--targets", str(tmp_path / "targets"),
                  "-o", "out")
    assert ran.ret == 3, ran.output
    assert "not a directory" in ran.stderr and "Traceback" not in ran.output
    assert (tmp_path / "out").read_text() == "not a directory"
