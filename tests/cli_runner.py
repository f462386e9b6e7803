"""Running the `nanum` command in-process for tests: one helper, so every CLI test checks the
same things (no traceback, no stray exception, the expected exit code) with no NANUM_* setting
of the developer's shell leaking in."""

from __future__ import annotations

from click.testing import CliRunner, Result

from cli.main import main

CLEAN_ENV = {"NANUM_KEY": None, "NANUM_CLIENT": None, "NANUM_CONFIG": None}


def nanum(*args: object, code: int = 0, env: dict | None = None) -> Result:
    result = CliRunner().invoke(main, [str(a) for a in args], env={**CLEAN_ENV, **(env or {})})
    assert "Traceback" not in result.output, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.exit_code == code, f"exit {result.exit_code}, wanted {code}: {result.output}"
    return result
