"""PyBullet locomotion source/target pairs with a dynamics gap: link masses, lateral friction and motor power.

The Bullet scene and robot are built lazily in the first ``reset`` (pybullet_envs_gymnasium's ``MJCFBaseBulletEnv``),
and every ``reset`` restores a saved simulation state, so the gap is (re-)applied after each ``reset`` with
``pybullet.changeDynamics``, always relative to the nominal values read once from the freshly built robot.

Parameters (all relative, 1.0 = nominal):

- ``mass_scale``: multiplies the mass of every robot link; ``part_mass_scale`` ({part name: factor}) multiplies
  single parts on top (names as in ``env.parts``, e.g. ``"torso"``, ``"thigh"``, ``"foot"`` for Hopper).
- ``friction_scale``: multiplies the lateral friction of every robot link; Bullet multiplies the frictions of the two
  bodies in contact, so this scales the foot-ground friction by the same factor.
- ``power_scale``: multiplies the robot's motor power (``robot.power``, the torque per unit action).

Observation space, action space and reward function are those of the Bullet env, so policies transfer unchanged.
"""

from typing import Any

import numpy as np

try:
    from pybullet_envs_gymnasium.gym_locomotion_envs import HalfCheetahBulletEnv, HopperBulletEnv
except ImportError as error:  # the core install has no PyBullet: say which extra brings it
    raise ImportError(
        f"the Bullet env pairs (sb3_dreamer/Hopper..., sb3_dreamer/HalfCheetah...) need PyBullet ({error}): "
        "pip install 'sb3-dreamer[bullet]'"
    ) from error


class _DynamicsGapMixin:
    """Apply mass, friction and power scales after every reset (see the module docstring).

    Placed before the Bullet env class in the bases, so that ``super()`` reaches the Bullet env.

    :param mass_scale: factor on every link mass
    :param friction_scale: factor on every link's lateral friction
    :param power_scale: factor on the motor power
    :param part_mass_scale: extra per-part mass factors
    :param render_mode: render mode of the Bullet env
    """

    def __init__(
        self,
        mass_scale: float = 1.0,
        friction_scale: float = 1.0,
        power_scale: float = 1.0,
        part_mass_scale: dict[str, float] | None = None,
        render_mode: str | None = None,
    ) -> None:
        super().__init__(render_mode=render_mode)  # type: ignore[call-arg]
        for name, value in {"mass_scale": mass_scale, "friction_scale": friction_scale, "power_scale": power_scale}.items():
            if not value > 0:
                raise ValueError(f"{name} must be positive, got {value}")
        self.mass_scale = float(mass_scale)
        self.friction_scale = float(friction_scale)
        self.power_scale = float(power_scale)
        self.part_mass_scale = dict(part_mass_scale or {})
        self._nominal_dynamics: dict[str, tuple[int, int, float, float]] | None = None
        self.robot.power *= self.power_scale  # type: ignore[attr-defined]

    def reset(self, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        """Reset the Bullet env, then apply the dynamics gap.

        :param seed: seed
        :param options: unused by the Bullet env
        :return: ``(obs, info)``
        """
        obs, info = super().reset(seed=seed, options=options)  # type: ignore[misc]
        self._apply_gap()
        return obs, info

    def _apply_gap(self) -> None:
        parts = {name: part for name, part in self.parts.items() if name != "floor"}  # type: ignore[attr-defined]
        client = self._p  # type: ignore[attr-defined]
        if self._nominal_dynamics is None:
            unknown = set(self.part_mass_scale) - set(parts)
            if unknown:
                raise ValueError(f"unknown parts {sorted(unknown)} in part_mass_scale; known parts: {sorted(parts)}")
            self._nominal_dynamics = {}
            for name, part in parts.items():
                body, link = part.bodies[part.bodyIndex], part.bodyPartIndex
                info = client.getDynamicsInfo(body, link)
                self._nominal_dynamics[name] = (body, link, float(info[0]), float(info[1]))
        for name, (body, link, mass, friction) in self._nominal_dynamics.items():
            if mass > 0:  # massless connector links ("link0_*") stay massless
                client.changeDynamics(body, link, mass=mass * self.mass_scale * self.part_mass_scale.get(name, 1.0))
            client.changeDynamics(body, link, lateralFriction=friction * self.friction_scale)

    @property
    def gap_parameters(self) -> dict[str, Any]:
        """Gap parameters of this instance."""
        return {
            "mass_scale": self.mass_scale,
            "friction_scale": self.friction_scale,
            "power_scale": self.power_scale,
            "part_mass_scale": dict(self.part_mass_scale),
        }

    def link_dynamics(self) -> dict[str, tuple[float, float]]:
        """Current ``(mass, lateral friction)`` of every robot part, read back from Bullet (after a reset).

        :return: {part name: (mass, lateral friction)}
        """
        if self._nominal_dynamics is None:
            raise RuntimeError("call reset() first: the Bullet scene is built lazily")
        client = self._p  # type: ignore[attr-defined]
        result = {}
        for name, (body, link, _, _) in self._nominal_dynamics.items():
            info = client.getDynamicsInfo(body, link)
            result[name] = (float(info[0]), float(info[1]))
        return result


class HopperGapEnv(_DynamicsGapMixin, HopperBulletEnv):
    """``HopperBulletEnv-v0`` with scaled link masses, lateral friction and motor power (module docstring).

    Registered pairs: ``sb3_dreamer/HopperSource-v0`` (all scales 1.0) and ``sb3_dreamer/HopperTarget-v0``
    (mass_scale 1.3, friction_scale 0.7, power_scale 1.0); each id accepts the kwargs below.

    :param mass_scale: factor on every link mass
    :param friction_scale: factor on every link's lateral friction
    :param power_scale: factor on the motor power (nominal 0.75)
    :param part_mass_scale: extra per-part mass factors
    :param render_mode: render mode of the Bullet env
    """


class HalfCheetahGapEnv(_DynamicsGapMixin, HalfCheetahBulletEnv):
    """``HalfCheetahBulletEnv-v0`` with scaled link masses, lateral friction and motor power (module docstring).

    Registered pairs: ``sb3_dreamer/HalfCheetahSource-v0`` (all scales 1.0) and ``sb3_dreamer/HalfCheetahTarget-v0``
    (mass_scale 1.3, friction_scale 0.7, power_scale 1.0); each id accepts the kwargs below.

    :param mass_scale: factor on every link mass
    :param friction_scale: factor on every link's lateral friction
    :param power_scale: factor on the motor power (nominal 0.90)
    :param part_mass_scale: extra per-part mass factors
    :param render_mode: render mode of the Bullet env
    """
