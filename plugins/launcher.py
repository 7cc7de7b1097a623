"""Entry point of the ``sb3-dreamer`` command: checks that the ``zoo`` extra is installed, then runs :mod:`.cli`.

:mod:`sb3_dreamer_plugins.cli` imports rl_zoo3 (and through it sb3-contrib, Optuna, ...), which the core install of
sb3-dreamer does not bring; without them ``sb3-dreamer`` says which extra to install instead of an ImportError.
"""

from __future__ import annotations

import importlib.util
import sys

#: Modules of the ``zoo`` extra that the command needs, with the package that brings each.
ZOO_MODULES = {"rl_zoo3": "rl-zoo3", "sb3_contrib": "sb3-contrib", "optuna": "optuna", "matplotlib": "matplotlib"}


def missing_zoo_packages() -> list[str]:
    """Packages of the ``zoo`` extra that are not installed.

    :return: their pip names (empty when the command can run)
    """
    return [package for module, package in ZOO_MODULES.items() if importlib.util.find_spec(module) is None]


def main(argv: list[str] | None = None) -> int:
    """Run ``sb3-dreamer`` (:func:`sb3_dreamer_plugins.cli.main`), or explain which extra is missing.

    :param argv: ``[script, *arguments]`` (default: ``sys.argv[1:]``)
    :return: exit status (2 when the zoo extra is missing)
    """
    missing = missing_zoo_packages()
    if missing:
        print(
            f"sb3-dreamer: error: the rl-zoo command needs the zoo extra ({', '.join(missing)} not installed): "
            "pip install 'sb3-dreamer[zoo]' (from a checkout: pip install -e '.[zoo]')",
            file=sys.stderr,
        )
        return 2
    from sb3_dreamer_plugins.cli import main as cli_main

    return cli_main(argv)
