"""``dreamsound studio`` on the command line: its options, and its one-line errors (exit 2)."""

from __future__ import annotations

import sys

from typer.testing import CliRunner

from dreamsound.cli import app

runner = CliRunner()


def test_help_lists_the_options():
    result = runner.invoke(app, ["studio", "--help"])
    assert result.exit_code == 0
    for option in ("--host", "--port", "--model", "--device"):
        assert option in result.output


def test_missing_extra_is_one_line_with_the_install_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "gradio", None)  # `import gradio` now fails
    result = runner.invoke(app, ["studio", "--model", "debug"])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "the studio needs gradio" in lines[0]
    assert "pip install" in lines[0] and "[studio]" in lines[0]


def test_unknown_model_fails_before_serving(monkeypatch):
    monkeypatch.setenv("DREAMSOUND_OFFLINE", "1")  # the command sets it; keep it to this test
    result = runner.invoke(app, ["studio", "--model", "no-such-model"])
    assert result.exit_code == 2
    assert "unknown model 'no-such-model'" in result.output
    assert "Traceback" not in result.output
