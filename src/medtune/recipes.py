"""Where the shipped recipes live (``recipes/`` of the checkout) and how a recipe name resolves to its file."""

from __future__ import annotations

from pathlib import Path

from medtune.errors import UserError


def recipes_root() -> Path:
    """Return the folder of shipped recipes (``recipes/`` of the checkout)."""
    return Path(__file__).resolve().parents[2] / "recipes"


def shipped_recipes() -> list[Path]:
    """List every shipped recipe file, sorted."""
    root = recipes_root()
    return sorted(root.rglob("*.yaml")) if root.is_dir() else []


def find_recipe(path: str | Path) -> Path:
    """Resolve a recipe path or a shipped recipe name (``smollm2-135m/demo``)."""
    candidate = Path(path).expanduser()
    if candidate.is_file():
        return candidate
    shipped = recipes_root() / (str(path) if str(path).endswith(".yaml") else f"{path}.yaml")
    if shipped.is_file():
        return shipped
    names = ", ".join(str(p.relative_to(recipes_root()).with_suffix("")) for p in shipped_recipes())
    raise UserError(f"{path}: no such recipe file; give a path or one of: {names}")


def recipe_header_command(path: Path) -> str | None:
    """Return the command named in a recipe's first comment line (``# medtune train ...``)."""
    first = path.read_text(encoding="utf-8").splitlines()[:1]
    if first and first[0].startswith("#"):
        return first[0].lstrip("# ").strip()
    return None
