"""Every Python example in README.md and docs/ runs, with its step counts made small.

A snippet that crashes for a user (e.g. ``evaluate_policy`` on a model loaded without an env) fails here. The only
changes made to a snippet are the step and episode counts of :data:`SMALL_COUNTS`, so that all of them run in seconds.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch as th

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
#: (pattern, largest value): integer literals in these positions are capped, e.g. ``model.learn(10_000`` -> 64.
SMALL_COUNTS = (
    (r"\.learn\(\s*(?P<n>[\d_]+)", 64),
    (r"n_eval_episodes=(?P<n>[\d_]+)", 1),
    (r"n_episodes=(?P<n>[\d_]+)", 2),
    (r"\brange\((?P<n>[\d_]+)\)", 50),
    (r"\bsteps=(?P<n>[\d_]+)", 100),  # record_episodes
    (r"\bupdates=(?P<n>[\d_]+)", 2),  # pretrain_world_model
    (r"\bsteps_per_iteration=(?P<n>[\d_]+)", 64),  # reward_compensation_loop
    (r"\biterations=(?P<n>[\d_]+)", 2),
)


def python_snippets() -> list[tuple[str, str]]:
    """``(id, code)`` of every fenced Python block: the id is ``file:line``."""
    snippets = []
    for path in DOCUMENTS:
        text = path.read_text()
        for match in re.finditer(r"^```python\n(.*?)^```", text, flags=re.MULTILINE | re.DOTALL):
            line = text.count("\n", 0, match.start()) + 1
            snippets.append((f"{path.relative_to(ROOT)}:{line}", match.group(1)))
    return snippets


def make_small(code: str) -> str:
    """Cap the counts of :data:`SMALL_COUNTS`; everything else is left as written."""
    for pattern, limit in SMALL_COUNTS:

        def cap(match: re.Match, limit: int = limit) -> str:
            value = int(match.group("n").replace("_", ""))
            start, end = match.span("n")
            text = match.group(0)
            offset = match.start()
            return text[: start - offset] + str(min(value, limit)) + text[end - offset :]

        code = re.sub(pattern, cap, code)
    return code


SNIPPETS = python_snippets()


def test_snippets_are_found() -> None:
    ids = [snippet_id for snippet_id, _ in SNIPPETS]
    assert any(snippet_id.startswith("README.md") for snippet_id in ids)
    assert len(ids) >= 5, ids
    assert make_small("model.learn(10_000, progress_bar=True); range(1000); n_eval_episodes=5") == (
        "model.learn(64, progress_bar=True); range(50); n_eval_episodes=1"
    )


@pytest.mark.parametrize(("snippet_id", "code"), SNIPPETS, ids=[snippet_id for snippet_id, _ in SNIPPETS])
def test_snippet_runs(snippet_id: str, code: str, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)  # snippets save files in the working directory
    th.set_num_threads(1)
    exec(compile(make_small(code), snippet_id, "exec"), {"__name__": "__main__"})
