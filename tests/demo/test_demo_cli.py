"""`iarbre-demo` (iarbre_demo.cli): where it writes, what it prints, and --if-missing."""

from __future__ import annotations

import json
import os

from iarbre_assets.catalog import load_territory
from iarbre_demo.cli import main
from iarbre_demo.generator import GENERATOR_VERSION, MARKER, is_generated


def test_generates_the_demo_in_the_homes_data_directory_and_says_how_to_run_it(tmp_path, capsys):
    home = tmp_path / "home"
    environment = dict(os.environ)
    assert main(["--home", str(home)]) == 0
    out = load_territory("demo").data_dir_path(home)
    assert out == (home / "data" / "demo").resolve() and is_generated(out)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(f"demo territory written to {out} in ")
    assert lines[1] == f"territory file: {json.loads((out / MARKER).read_text())['territory_file']}"
    assert lines[2].startswith("run it with: iarbre run --territory ")
    assert dict(os.environ) == environment  # nothing exported

    before = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    assert main(["--home", str(home), "--if-missing"]) == 0
    assert "nothing generated (--if-missing)" in capsys.readouterr().out
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()} == before


def test_home_defaults_to_the_iarbre_home_environment_variable(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("IARBRE_HOME", str(tmp_path))
    out = load_territory("demo").data_dir_path(tmp_path)
    out.mkdir(parents=True)
    (out / MARKER).write_text(json.dumps({"generator_version": GENERATOR_VERSION, "territory_file": "t.yaml"}))
    assert main(["--if-missing"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        f"demo territory already in {out}: nothing generated (--if-missing)", "territory file: t.yaml"]


def test_out_and_options_are_those_of_the_former_iarbre_demo_command(tmp_path, capsys):
    out = tmp_path / "files"
    assert main(["--out", str(out), "--mode", "files", "--seed", "7", "--name", "essai"]) == 0
    marker = json.loads((out / MARKER).read_text())
    assert (marker["seed"], marker["mode"], marker["scale"]) == (7, "files", "small")
    assert f"run it with: iarbre run --territory {out / 'territory.yaml'}" in capsys.readouterr().out


def test_a_missing_communes_file_is_a_clear_error(tmp_path, capsys):
    assert main(["--out", str(tmp_path / "x"), "--communes", str(tmp_path / "nope.geojson")]) == 2
    assert "error: --communes" in capsys.readouterr().err
