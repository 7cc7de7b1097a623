"""Gymnasium registration of the environments sb3-dreamer uses: its dynamic-gap pairs and MinAtar's games.

``import sb3_dreamer`` registers them already (:func:`sb3_dreamer.envs.register_envs`); this module is the plugin
entry point that does the same for tools that import plugins only. Importing it registers them; :func:`register_envs`
is idempotent and may be called any number of times.
"""

from __future__ import annotations

from sb3_dreamer.envs import MINATAR_NAMESPACE, register_envs, register_minatar_envs

__all__ = ["MINATAR_NAMESPACE", "register_envs", "register_minatar_envs"]

register_envs()
