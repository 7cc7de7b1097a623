"""World-model pretraining on other agents' MinAtar experience, then fine-tuning on a fifth game (pydreamer's protocol,
https://github.com/JonaSchulz/pydreamer, at a CPU budget).

Protocol:

1. ``agent-<Game>``: the data agents. SB3 DQN with rl-zoo's ``atari`` entry on the MinAtar paper's network
   (``common.baseline_hyperparams``) on ``MinAtar/<Game>-v0`` (full action set of 6) for ``AGENT_STEPS`` steps,
   checkpointed at each of ``AGENT_CHECKPOINTS`` (agents of several skill levels, as pydreamer's several DQN
   checkpoints per game). Games: Asterix, Breakout, Freeway, Seaquest (pydreamer's four).
2. ``dataset``: ``record_episodes`` with the checkpoints of each game (one drawn at random per episode, sampled
   actions), ``DATASET_STEPS`` steps per game, observations in the shared ``MinAtarCategorical`` layout (10 x 10 x 11).
3. ``pretrain``: a Dreamer (default settings, ``CnnPolicy``) world model trained on the dataset only, for
   ``PRETRAIN_UPDATES`` updates (``pretrain_world_model``, checkpointed and resumed).
4. ``finetune-<variant>_<seed>``: Dreamer on ``MinAtar/SpaceInvaders-v0`` (the fifth game, not in the dataset) for
   ``TARGET_STEPS`` steps, same seeds and budget: ``full`` (``load_world_model``, nothing frozen), ``frozen-rssm``,
   ``frozen-encoder`` and ``scratch`` (the control).

pydreamer pretrained for 280k steps on the four games and fine-tuned for longer; our budgets fit a few CPU hours for
all runs together (2 processes, one torch thread each). Steps 1-3 are shared by the seeds (one pretrained model; its
own randomness is not varied). Every env has a time limit of ``MAX_EPISODE_STEPS``. Metrics per run: the world-model
loss over the first updates (``train/world_model_loss`` per update, mean over updates 1-500 and 501-2000) and the
evaluation return curve (10 episodes every ``--eval-freq`` steps, seeded evaluation env): final return and area under
the curve (mean of the evaluations).

Run: ``python benchmarks/pretraining.py`` (3 seeds); ``--quick`` is a pipeline check with tiny budgets.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
from stable_baselines3.common.callbacks import BaseCallback

GAMES = ("Asterix", "Breakout", "Freeway", "Seaquest")
TARGET = "SpaceInvaders"
AGENT_STEPS, AGENT_CHECKPOINTS = 100_000, (25_000, 50_000, 100_000)
DATASET_STEPS, PRETRAIN_UPDATES, TARGET_STEPS = 25_000, 10_000, 20_000
QUICK = dict(agent=600, checkpoints=(300, 600), dataset=300, updates=20, target=300)
VARIANTS = {"full": (), "frozen-rssm": ("rssm",), "frozen-encoder": ("encoder",), "scratch": None}
#: Time limit of every MinAtar env here: MinAtar has none, and a data agent that keeps Seaquest's submarine at the
#: surface plays forever.
MAX_EPISODE_STEPS = 2500
EVAL_SEED = 1000  # the evaluation env's seed is EVAL_SEED + seed, as in benchmarks/common.py


def budgets(quick: bool) -> dict[str, Any]:
    """Steps and updates of each stage."""
    full = dict(agent=AGENT_STEPS, checkpoints=AGENT_CHECKPOINTS, dataset=DATASET_STEPS, updates=PRETRAIN_UPDATES)
    return QUICK if quick else {**full, "target": TARGET_STEPS}


def jobs_of(seed: int) -> dict[str, list[str]]:
    """Run names and the runs each depends on (the shared stages appear under every seed, once per name)."""
    agents = [f"agent-{game}" for game in GAMES]
    jobs: dict[str, list[str]] = {**{name: [] for name in agents}, "dataset": agents, "pretrain": ["dataset"]}
    for variant, freeze in VARIANTS.items():
        jobs[f"finetune-{variant}_{seed}"] = [] if freeze is None else ["pretrain"]
    return jobs


class WorldModelLoss(BaseCallback):
    """``train/world_model_loss`` of every training round, keyed by the model's update count (``curve``)."""

    def __init__(self) -> None:
        super().__init__()
        self.curve: list[tuple[int, float]] = []
        self._seen = 0

    def _on_step(self) -> bool:
        updates = self.model._n_updates
        loss = self.model.logger.name_to_value.get("train/world_model_loss")
        if updates > self._seen and loss is not None:
            self.curve.append((int(updates), float(loss)))
            self._seen = updates
        return True


def target_env() -> Any:
    import gymnasium as gym
    from stable_baselines3.common.monitor import Monitor

    from sb3_dreamer.transfer import MinAtarCategorical

    return Monitor(MinAtarCategorical(gym.make(f"MinAtar/{TARGET}-v0", max_episode_steps=MAX_EPISODE_STEPS)))


def run_agent(game: str, out: Path, quick: bool, eval_episodes: int) -> dict[str, Any]:
    """Train the data agent of one game, saving its checkpoints."""
    import gymnasium as gym
    from common import baseline_hyperparams
    from stable_baselines3 import DQN
    from stable_baselines3.common.evaluation import evaluate_policy
    from stable_baselines3.common.monitor import Monitor

    import sb3_dreamer  # noqa: F401  (registers the MinAtar/<Game>-v0 ids)

    steps = budgets(quick)
    policy, hyperparams = baseline_hyperparams("dqn", "MinAtar/Breakout-v1")
    if quick:
        hyperparams["learning_starts"] = 100
    model = DQN(policy, Monitor(gym.make(f"MinAtar/{game}-v0", max_episode_steps=MAX_EPISODE_STEPS)), seed=0, **hyperparams)
    folder = out / "agents" / game
    result: dict[str, Any] = dict(checkpoints={})
    done = 0
    for checkpoint in steps["checkpoints"]:
        model.learn(checkpoint - done, reset_num_timesteps=done == 0)
        done = checkpoint
        model.save(folder / f"dqn_{checkpoint}.zip")
        env = Monitor(gym.make(f"MinAtar/{game}-v0", max_episode_steps=MAX_EPISODE_STEPS))
        env.reset(seed=EVAL_SEED)
        result["checkpoints"][checkpoint] = float(evaluate_policy(model, env, n_eval_episodes=eval_episodes)[0])
        print(f"agent-{game}: {checkpoint} steps, return {result['checkpoints'][checkpoint]:.1f}", flush=True)
    return result


def run_dataset(out: Path, quick: bool) -> dict[str, Any]:
    """Record every game's episodes into one dataset (written to a temporary folder, then renamed)."""
    import shutil

    import gymnasium as gym
    from stable_baselines3 import DQN

    from sb3_dreamer.transfer import MinAtarCategorical, OfflineDataset, record_episodes

    steps = budgets(quick)
    folder, tmp = out / "dataset", out / "dataset.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    layout = MinAtarCategorical(gym.make(f"MinAtar/{GAMES[0]}-v0", max_episode_steps=MAX_EPISODE_STEPS))
    dataset = OfflineDataset.create(tmp, layout.observation_space, layout.action_space)
    for index, game in enumerate(GAMES):
        agents = [DQN.load(out / "agents" / game / f"dqn_{c}.zip", device="cpu") for c in steps["checkpoints"]]
        env = gym.make(f"MinAtar/{game}-v0", max_episode_steps=MAX_EPISODE_STEPS)
        record_episodes(agents, env, steps["dataset"], dataset, layout=MinAtarCategorical, seed=index)
        print(f"dataset: {game} {dataset.num_steps(f'MinAtar/{game}-v0')} steps", flush=True)
    shutil.rmtree(folder, ignore_errors=True)  # a partial earlier copy
    tmp.replace(folder)
    dataset = OfflineDataset(folder)
    return dict(steps={game: dataset.num_steps(game) for game in dataset.games()}, episodes=len(dataset.episodes))


def run_pretrain(out: Path, quick: bool) -> dict[str, Any]:
    """Pretrain the world model (resuming its checkpoint), logging pretrain/* to CSV."""
    from stable_baselines3.common.logger import configure

    from sb3_dreamer import Dreamer
    from sb3_dreamer.transfer import pretrain_world_model

    checkpoint = out / "checkpoints" / "pretrain.zip"
    model = Dreamer.load(checkpoint, env=target_env()) if checkpoint.exists() else Dreamer("CnnPolicy", target_env(), seed=0)
    model.set_logger(configure(str(out / "pretrain_log"), ["csv"]))
    updates = budgets(quick)["updates"]
    pretrain_world_model(model, out / "dataset", updates, checkpoint_freq=max(updates // 10, 1), checkpoint_path=checkpoint)
    model.save(out / "final" / "pretrain.zip")
    return dict(updates=model.pretrain_updates)


def run_finetune(name: str, out: Path, eval_freq: int, eval_episodes: int, quick: bool) -> dict[str, Any]:
    """Fine-tune (or train from scratch) on the target game, resuming its checkpoint."""
    from sb3_dreamer import Dreamer
    from sb3_dreamer.common import EvalCurve, ResumableRun
    from sb3_dreamer.transfer import load_world_model

    kind, seed = name.rsplit("_", 1)[0], int(name.rsplit("_", 1)[1])
    freeze = VARIANTS[kind.removeprefix("finetune-")]
    steps = budgets(quick)["target"]
    evaluate = EvalCurve(target_env(), eval_freq, eval_episodes, name, seed=EVAL_SEED + seed)
    losses = WorldModelLoss()
    checkpoint = ResumableRun(out / "checkpoints" / name, max(eval_freq * 2, 100), evaluate)
    model = checkpoint.restore(lambda path: Dreamer.load(path, env=target_env(), seed=seed))
    resumed = model is not None
    if model is None:
        model = Dreamer("CnnPolicy", target_env(), seed=seed, **(dict(learning_starts=100) if quick else {}))
        if freeze is not None:
            load_world_model(model, out / "final" / "pretrain.zip", freeze=freeze)
    else:
        losses.curve = [tuple(p) for p in json.loads((out / "checkpoints" / f"{name}.losses.json").read_text())]
        losses._seen = losses.curve[-1][0] if losses.curve else 0

    class SaveLosses(BaseCallback):  # the loss curve goes with the checkpoint
        def _on_step(self) -> bool:
            if self.num_timesteps % checkpoint.save_freq == 0:
                (out / "checkpoints" / f"{name}.losses.json").write_text(json.dumps(losses.curve))
            return True

    callbacks = [losses, evaluate, checkpoint, SaveLosses()]
    model.learn(steps - model.num_timesteps, callback=callbacks, reset_num_timesteps=not resumed)
    checkpoint.remove()
    (out / "checkpoints" / f"{name}.losses.json").unlink(missing_ok=True)
    return dict(steps=steps, curve=evaluate.curve, world_model_loss=losses.curve, resumed=resumed, freeze=freeze)


def run_one(name: str, out: Path, eval_freq: int, eval_episodes: int, quick: bool) -> None:
    """Run one job of :func:`jobs_of` and write ``out / <name>.json``."""
    import torch as th
    from common import code_commit

    th.set_num_threads(int(os.environ.get("BENCH_THREADS", "1")))
    (out / "final").mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    if name.startswith("agent-"):
        result = run_agent(name.removeprefix("agent-"), out, quick, eval_episodes)
    elif name == "dataset":
        result = run_dataset(out, quick)
    elif name == "pretrain":
        result = run_pretrain(out, quick)
    else:
        result = run_finetune(name, out, eval_freq, eval_episodes, quick)
    result.update(name=name, seconds=time.perf_counter() - start, commit=code_commit(), quick=quick)
    (out / f"{name}.json").write_text(json.dumps(result, indent=1))


def loss_windows(curve: list[list[float]]) -> tuple[float, float]:
    """Mean world-model loss over updates 1-500 and 501-2000."""
    early = [loss for update, loss in curve if update <= 500]
    later = [loss for update, loss in curve if 500 < update <= 2000]
    return float(np.mean(early)) if early else float("nan"), float(np.mean(later)) if later else float("nan")


def summarise(out: Path) -> str:
    """Tables (markdown) and PNGs of the fine-tuning runs, with the data agents' and dataset's numbers."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from common import finals_and_aucs

    runs = {path.stem: json.loads(path.read_text()) for path in sorted(out.glob("*.json"))}
    lines = [
        "| variant | seeds | final return per seed | final mean | AUC per seed | AUC mean | WM loss, updates 1-500 "
        "| WM loss, 501-2000 |",
        "|---|---|---|---|---|---|---|---|",
    ]
    fig, (ax_return, ax_loss) = plt.subplots(1, 2, figsize=(12, 4.5))
    for color, variant in enumerate(VARIANTS):
        group = sorted((r for k, r in runs.items() if k.startswith(f"finetune-{variant}_")), key=lambda r: r["name"])
        if not group:
            continue
        finals, aucs = finals_and_aucs(group)
        windows = np.array([loss_windows(run["world_model_loss"]) for run in group])
        lines.append(
            f"| {variant} | {len(group)} | {', '.join(f'{f:.1f}' for f in finals)} | {np.mean(finals):.1f} | "
            f"{', '.join(f'{a:.1f}' for a in aucs)} | {np.mean(aucs):.1f} | {np.nanmean(windows[:, 0]):.1f} | "
            f"{np.nanmean(windows[:, 1]):.1f} |"
        )
        for i, run in enumerate(group):
            label = variant if i == 0 else None
            points = run["curve"]
            ax_return.plot([p["step"] for p in points], [p["mean"] for p in points], color=f"C{color}", label=label)
            curve = np.array(run["world_model_loss"]) if run["world_model_loss"] else np.zeros((0, 2))
            ax_loss.plot(curve[:, 0], curve[:, 1], color=f"C{color}", alpha=0.6, linewidth=0.8, label=label)
    ax_return.set(title=f"MinAtar/{TARGET}-v0 (one line per seed)", xlabel="environment steps", ylabel="eval return")
    ax_loss.set(title="world-model loss in fine-tuning", xlabel="updates", ylabel="world-model loss", yscale="log")
    ax_return.legend(fontsize=8)
    ax_loss.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "pretraining.png", dpi=110)
    notes = [f"data agent {k.removeprefix('agent-')}: return at {r['checkpoints']}" for k, r in runs.items()
             if k.startswith("agent-")]  # fmt: skip
    if "dataset" in runs:
        notes.append(f"dataset: {runs['dataset']['episodes']} episodes, steps {runs['dataset']['steps']}")
    if "pretrain" in runs:
        notes.append(f"pretraining: {runs['pretrain']['updates']} updates ({runs['pretrain']['seconds'] / 60:.0f} min)")
    table = "\n".join(lines) + "\n\n" + "\n".join(notes)
    (out / "pretraining.md").write_text(table + "\n")
    return table


def main() -> None:
    from common import job_cli

    job_cli(__doc__, __file__, "pretraining", jobs_of,
            lambda name, out, args: run_one(name, out, args.eval_freq, args.eval_episodes, args.quick),
            lambda out, args: summarise(out))  # fmt: skip


if __name__ == "__main__":
    main()
