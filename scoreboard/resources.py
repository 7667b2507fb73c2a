"""Where the web UI's files are, in a checkout and in an installed package.

In the repository `templates/` and `static/` sit at the top, next to `scoreboard/`; the wheel
maps them into the package as `scoreboard/templates` and `scoreboard/static` (pyproject.toml,
[tool.setuptools]). The migrations live in the package in both cases (`migrations_dir`).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

_CHECKOUT_ROOT = Path(__file__).resolve().parent.parent


def data_dir(name: str) -> Path:
    """The directory `name` ("templates" or "static"): the installed copy, else the checkout's."""
    installed = resources.files(__package__).joinpath(name)
    if installed.is_dir():
        return Path(str(installed))  # an installed wheel is a plain directory, never a zip
    checkout = _CHECKOUT_ROOT / name
    if checkout.is_dir():
        return checkout
    raise FileNotFoundError(f"scoreboard: no {name}/ in the package nor at {checkout}")


def migrations_dir() -> Path:
    """The Alembic script directory (env.py and versions/), inside the package."""
    return Path(str(resources.files(__package__).joinpath("migrations")))
