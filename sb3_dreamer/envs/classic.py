"""Classic-control source/target pairs with a dynamics gap: Pendulum and CartPole with changed physical parameters.

Both subclass gymnasium's own environments and only change the physical attributes those read in ``step``, so the
observation space, the action space and the reward function stay identical between source and target (a policy or
reference trajectory transfers without any adapter).
"""

from typing import Any

from gymnasium.envs.classic_control.cartpole import CartPoleEnv
from gymnasium.envs.classic_control.pendulum import PendulumEnv


def _check_positive(**values: float) -> None:
    for name, value in values.items():
        if not value > 0:
            raise ValueError(f"{name} must be positive, got {value}")


class PendulumGapEnv(PendulumEnv):
    """Gymnasium ``Pendulum-v1`` with changeable mass, length, gravity and torque limit.

    Dynamics (gymnasium ``pendulum.py``): θ̈ = 3g/(2l)·sin θ + 3/(m l²)·u, u = clip(a, -max_torque, max_torque).
    Defaults are gymnasium's (m = 1, l = 1, g = 10, max_torque = 2). The action space stays ``Box(-2, 2)`` whatever
    ``max_torque`` is, so a smaller ``max_torque`` is an actuator saturation gap (policies transfer unchanged).

    Registered pairs: ``sb3_dreamer/PendulumSource-v0`` (defaults) and ``sb3_dreamer/PendulumTarget-v0``
    (mass 1.5, length 1.3, max_torque 2.0, gravity 10.0); each id accepts these kwargs to change the gap.

    :param mass: pendulum mass m
    :param length: pendulum length l
    :param gravity: gravitational acceleration g
    :param max_torque: torque saturation, in (0, 2]
    :param render_mode: gymnasium render mode
    """

    def __init__(
        self,
        mass: float = 1.0,
        length: float = 1.0,
        gravity: float = 10.0,
        max_torque: float = 2.0,
        render_mode: str | None = None,
    ) -> None:
        _check_positive(mass=mass, length=length, gravity=gravity, max_torque=max_torque)
        if max_torque > 2.0:
            raise ValueError(f"max_torque must be <= 2 (the action space is [-2, 2]), got {max_torque}")
        super().__init__(render_mode=render_mode, g=gravity)
        self.m = float(mass)
        self.l = float(length)
        self.max_torque = float(max_torque)

    @property
    def gap_parameters(self) -> dict[str, Any]:
        """Physical parameters of this instance."""
        return {"mass": self.m, "length": self.l, "gravity": self.g, "max_torque": self.max_torque}


class CartPoleGapEnv(CartPoleEnv):
    """Gymnasium ``CartPole-v1`` with changeable pole length, pole mass, cart mass and push force.

    Defaults are gymnasium's: ``pole_length`` 0.5 (gymnasium's ``length``, *half* the pole length), pole mass 0.1,
    cart mass 1.0, ``force_mag`` 10. Derived quantities (total mass, pole mass x length) are recomputed.

    Registered pairs: ``sb3_dreamer/CartPoleSource-v0`` (defaults) and ``sb3_dreamer/CartPoleTarget-v0``
    (pole_length 0.75, pole_mass 0.2, force_mag 8.0); each id accepts these kwargs to change the gap.

    :param pole_length: half pole length (gymnasium's ``length``)
    :param pole_mass: pole mass
    :param cart_mass: cart mass
    :param force_mag: magnitude of the push force of each action
    :param render_mode: gymnasium render mode
    """

    def __init__(
        self,
        pole_length: float = 0.5,
        pole_mass: float = 0.1,
        cart_mass: float = 1.0,
        force_mag: float = 10.0,
        render_mode: str | None = None,
    ) -> None:
        _check_positive(pole_length=pole_length, pole_mass=pole_mass, cart_mass=cart_mass, force_mag=force_mag)
        super().__init__(render_mode=render_mode)
        self.length = float(pole_length)
        self.masspole = float(pole_mass)
        self.masscart = float(cart_mass)
        self.force_mag = float(force_mag)
        self.total_mass = self.masspole + self.masscart
        self.polemass_length = self.masspole * self.length

    @property
    def gap_parameters(self) -> dict[str, Any]:
        """Physical parameters of this instance."""
        return {
            "pole_length": self.length,
            "pole_mass": self.masspole,
            "cart_mass": self.masscart,
            "force_mag": self.force_mag,
        }
