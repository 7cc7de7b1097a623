"""rl-zoo hyperparameter files, installed as package data of ``sb3_dreamer_plugins.zoo_configs``."""
