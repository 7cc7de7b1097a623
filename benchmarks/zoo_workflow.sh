#!/usr/bin/env bash
# The rl-zoo workflow of issue 3 at the issue's budgets, end to end through the installed `sb3-dreamer` command:
#   1. train Dreamer on CartPole-v1 for 3000 steps with zoo_configs/dreamer.yml (two seeds, for all_plots' statistics);
#   2. enjoy the first run for 500 steps;
#   3. tune with two worker processes sharing one Optuna journal file (N_TRIALS per worker, median pruner);
#   4. plot: plot_train -o (PNG), all_plots -o (pickle) then plot_from_file -o (PNG);
#   5. a regular (non-editable) `pip install --target` finds the packaged YAML.
# Usage: bash benchmarks/zoo_workflow.sh [workdir]   (env: STEPS=3000 TUNE_STEPS=200 N_TRIALS=3 PYTHON=python)
# Each step prints its command; the script stops at the first failure. Takes a few minutes on 2 CPU cores.
set -euo pipefail
REPO="$(cd "$(dirname "$0")/.." && pwd)"
PYTHON="${PYTHON:-python}"
BIN="$(dirname "$(command -v "$PYTHON")")"
STEPS="${STEPS:-3000}"
TUNE_STEPS="${TUNE_STEPS:-200}"
N_TRIALS="${N_TRIALS:-3}"
WORK="${1:-$(mktemp -d)}"
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
mkdir -p "$WORK" && cd "$WORK"
echo "workdir: $WORK"

# Prints the command and its duration on stderr, so that they show even when the command's stdout is redirected.
step() { echo >&2; echo "\$ $*" >&2; local start=$SECONDS; "$@"; echo "[exit 0, $((SECONDS - start)) s]" >&2; }

# 1. Train (the default config is zoo_configs/dreamer.yml) ------------------------------------------------------------
for seed in 1 2; do
  step "$BIN/sb3-dreamer" train --algo dreamer --env CartPole-v1 -n "$STEPS" -f logs --seed "$seed" --num-threads 1 \
    --eval-freq 1000 --eval-episodes 5 > "train_$seed.log"
  grep -E "Loading hyperparameters from|Log path|Saving to" "train_$seed.log"
  tail -n 4 "$(ls -d logs/dreamer/CartPole-v1_$seed)/0.monitor.csv" | sed 's/^/  monitor: /'
done
find logs/dreamer/CartPole-v1_1 -maxdepth 2 | sort

# 2. Enjoy ------------------------------------------------------------------------------------------------------------
step "$BIN/sb3-dreamer" enjoy --algo dreamer --env CartPole-v1 -f logs --no-render -n 500 --exp-id 1 > enjoy.log
tail -n 3 enjoy.log

# 3. Tune: two workers, one journal file, distinct seeds --------------------------------------------------------------
printf 'CartPole-v1:\n  n_timesteps: %s.0\n  policy: MlpPolicy\n  batch_size: 4\n  learning_starts: 64\n' "$TUNE_STEPS" > tune.yml
tune() {
  "$BIN/sb3-dreamer" train --env CartPole-v1 -conf tune.yml -optimize --n-trials "$N_TRIALS" --storage study.log \
    --study-name cartpole --n-evaluations 4 --eval-episodes 2 --n-startup-trials 2 --pruner median --seed "$1" \
    --num-threads 1 --no-optim-plots -uuid -f tune_logs > "tune_$1.log" 2>&1
}
echo; echo "\$ two workers: sb3-dreamer train --env CartPole-v1 -optimize --storage study.log --study-name cartpole --seed {1,2} ..."
start=$SECONDS
tune 1 & tune 2 & wait
echo "[exit 0, $((SECONDS - start)) s]"
"$PYTHON" - <<'EOF'
import optuna

storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend("study.log"))
study = optuna.load_study(study_name="cartpole", storage=storage)
for trial in study.trials:
    print(f"  trial {trial.number}: {trial.state.name:8s} value={trial.value} evaluations={dict(trial.intermediate_values)}")
states = [trial.state.name for trial in study.trials]
print(f"  {len(states)} trials: {states.count('COMPLETE')} complete, {states.count('PRUNED')} pruned; best {study.best_value}")
EOF

# 4. Plots ------------------------------------------------------------------------------------------------------------
step "$BIN/sb3-dreamer" plot_train -a dreamer -e CartPole-v1 -f logs -w 10 -o plot_train.png
step "$BIN/sb3-dreamer" all_plots -a dreamer -e CartPole-v1 -f logs -o all_plots --no-display
step "$BIN/sb3-dreamer" plot_from_file -i all_plots.pkl -o plot_from_file.png --format png --no-million
file plot_train.png plot_from_file.png 2>/dev/null || ls -la plot_train.png plot_from_file.png

# 5. Regular install: the YAML is package data ------------------------------------------------------------------------
# Install from a copy so that the build leaves no build/ folder in the repository.
mkdir -p "$WORK/src" && cp -r "$REPO"/{pyproject.toml,README.md,sb3_dreamer,plugins,zoo_configs} "$WORK/src/"
step "$PYTHON" -m pip install -q --no-deps --no-build-isolation --target "$WORK/site" "$WORK/src" 2> pip.log
PYTHONPATH="$WORK/site" "$PYTHON" -c "from sb3_dreamer_plugins.cli import default_config_path as p; print('  packaged config:', p())"
echo; echo "done: $WORK"
