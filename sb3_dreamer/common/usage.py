"""One-line usage errors shared by ``python -m sb3_dreamer``, ``python -m sb3_dreamer.transfer`` and ``sb3-dreamer``.

A mistake on the command line (an unknown env id, a misspelt argument, bad JSON, a missing file) is reported as
``<prog>: error: <message>`` with exit status 2, as argparse does, instead of a traceback from deep inside gymnasium
or the algorithm.
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import json
import sys
from collections.abc import Callable, Iterable
from typing import Any

import gymnasium as gym


class UsageError(Exception):
    """A command-line or configuration mistake, reported as one line without traceback."""


#: How ``module:EnvId`` ids reach other packages' envs (the end of :func:`check_env_id`'s message).
OTHER_PACKAGES_HINT = "envs of other packages: module:EnvId imports the module first"


def check_env_id(env_id: str, allow_module: bool = True, other_packages: str = OTHER_PACKAGES_HINT) -> None:
    """Raise :class:`UsageError` naming ``env_id`` and close matches if gymnasium does not know it.

    ``module:EnvId`` (gymnasium's syntax for an env that ``module`` registers on import) imports the module first, as
    ``gymnasium.make`` does.

    :param env_id: a gymnasium environment id, optionally ``module:EnvId``
    :param allow_module: accept the ``module:EnvId`` form (rl-zoo's commands do not; they take ``--gym-packages``)
    :param other_packages: the message's last sentence, on how to reach other packages' envs
    """
    if ":" in env_id:
        module, _, name = env_id.partition(":")
        if not allow_module:
            raise UsageError(
                f"environment id {env_id!r}: give the id alone (--env {name}) and the module with --gym-packages {module}"
            )
        try:
            importlib.import_module(module)
        except ImportError as error:
            raise UsageError(f"environment id {env_id!r}: cannot import module {module!r} ({error})") from None
        env_id = name
    if env_id in gym.registry:
        return
    registered = list(gym.registry)
    close = difflib.get_close_matches(env_id, registered, n=3, cutoff=0.5)
    ours = sorted(name for name in registered if name.startswith("sb3_dreamer/"))
    hint = f"did you mean {', '.join(close)}? " if close else ""
    raise UsageError(
        f"unknown environment id {env_id!r}; {hint}This package registers {', '.join(ours)} and MinAtar/<Game>-v1 "
        f"(e.g. MinAtar/Breakout-v1, with minatar installed); {other_packages}."
    )


def check_keys(keys: Iterable[str], accepted: Iterable[str], where: str, what: str) -> None:
    """Raise :class:`UsageError` for the first key not in ``accepted``, with the closest accepted key as a hint.

    :param keys: the keys given by the user
    :param accepted: the keys that are understood
    :param where: where the keys come from, e.g. ``"--hyperparams"``
    :param what: what an accepted key is, e.g. ``"a Dreamer argument"``
    """
    accepted = sorted(accepted)
    for key in keys:
        if key not in accepted:
            close = difflib.get_close_matches(key, accepted, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise UsageError(f"{where}: unknown key {key!r}{hint}: not {what}")


def json_object(text: str) -> dict[str, Any]:
    """``argparse`` type of an option holding a JSON object, e.g. ``'{"train_freq": 4}'``.

    :param text: the option's value
    :return: the parsed dict
    """
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise argparse.ArgumentTypeError(
            f"not valid JSON ({error.msg} at character {error.pos}): {text!r}; write e.g. '{{\"train_freq\": 4}}' "
            "with double quotes around keys and strings"
        ) from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object such as '{{\"train_freq\": 4}}', got {text!r}")
    return value


def run_cli(prog: str, run: Callable[[], int]) -> int:
    """Run an entry point, turning :class:`UsageError` into ``<prog>: error: <message>`` on stderr and exit status 2.

    :param prog: the program name shown in the message
    :param run: the entry point's body
    :return: its exit status, or 2 after a usage error
    """
    try:
        return run()
    except UsageError as error:
        print(f"{prog}: error: {error}", file=sys.stderr)
        return 2
