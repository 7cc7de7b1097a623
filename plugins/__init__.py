"""Glue that plugs sb3-dreamer into other frameworks (installed as ``sb3_dreamer_plugins``).

- :mod:`sb3_dreamer_plugins.gymnasium`: registers this project's env ids and MinAtar's games.
- :mod:`sb3_dreamer_plugins.rl_zoo`: registers ``dreamer`` in rl_zoo3 (algorithm table, Optuna sampler and converter).
- :mod:`sb3_dreamer_plugins.cli`: the ``sb3-dreamer`` command (rl_zoo3's ``train``, ``enjoy`` and plots, with Dreamer).
"""
