"""The command line: --help everywhere, validation errors naming the file, definitions that load."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from iarbre_assets import cli

REPO = Path(__file__).resolve().parents[2]
SUBCOMMANDS = ["run", "refresh", "ui", "freshness", "inbox", "report", "explain", "diff", "label", "provenance",
               "catalogue", "validate", "dbt-prepare"]


@pytest.mark.parametrize("command", [None, *SUBCOMMANDS])
def test_help(command, capsys):
    with pytest.raises(SystemExit) as excinfo:
        cli.main([command, "--help"] if command else ["--help"])
    assert excinfo.value.code == 0
    assert "usage: iarbre" in capsys.readouterr().out


def test_validate_reports_the_file_and_field(tmp_path, capsys):
    assert cli.main(["validate", "--territory", "lyon"]) == 0
    bad = tmp_path / "bad.yaml"
    bad.write_text((REPO / "iarbre_assets/catalog/territories/demo.yaml").read_text().replace(
        "cell_size_m: 5", "cell_size_m: 5.5"))
    assert cli.main(["validate", "--territory", str(bad)]) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and "grid" in err


def test_definitions_load_with_dagster_and_write_nothing(tmp_path):
    """`dagster definitions validate` loads the code location of workspace.yaml; loading writes nothing."""
    from iarbre_demo import cli as demo_cli

    home = tmp_path / "home"
    assert demo_cli.main(["--home", str(home)]) == 0
    before = sorted(p.relative_to(home) for p in home.rglob("*"))
    env = dict(os.environ, IARBRE_HOME=str(home), DAGSTER_HOME=str(tmp_path / "dagster"),
               IARBRE_TERRITORY="demo")
    env.pop("IARBRE_DATA_DIR", None)
    (tmp_path / "dagster").mkdir()
    result = subprocess.run([str(Path(sys.executable).with_name("dagster")), "definitions", "validate",
                             "-w", str(REPO / "workspace.yaml")], cwd=REPO, env=env, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "Validation successful for code location iarbre" in result.stdout + result.stderr
    assert sorted(p.relative_to(home) for p in home.rglob("*")) == before


def test_a_fresh_home_without_the_demo_says_how_to_make_it(tmp_path, capsys):
    assert cli.main(["run", "--home", str(tmp_path / "empty")]) == 2
    assert "iarbre-demo" in capsys.readouterr().err
