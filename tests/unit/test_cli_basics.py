"""The CLI: --help is torch-free, a user error is one line with exit code 2."""

from __future__ import annotations

import subprocess
import sys


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "medtune", *args], capture_output=True, text=True, timeout=120)


def test_help_does_not_import_torch() -> None:
    code = "import sys; from medtune.cli import get_app; get_app(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "False"
    assert run("--help").returncode == 0


def test_user_error_is_one_line_exit_2(tmp_path) -> None:  # type: ignore[no-untyped-def]
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nlora:\n  rnk: 3\n")
    from medtune.config import load_recipe  # noqa: F401  (same validation path the commands use)

    code = (
        "from medtune.cli import get_app, main\nimport typer\napp=get_app()\n"
        "@app.command('x-check')\ndef x(path: str) -> None:\n    from medtune.config import load_recipe\n"
        "    load_recipe(path)\nmain()\n"
    )
    out = subprocess.run([sys.executable, "-c", code, "x-check", str(bad)], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    assert "lora.rnk" in out.stderr and len(out.stderr.strip().splitlines()) == 1
