"""Optional extras: which one an env family needs, and the one ``pip install`` line that adds it.

A notebook or script checks before using an env family, and tells the user how to get it
instead of failing deep inside gymnasium::

    if (hint := missing_extra("mujoco")) is not None:
        print(hint)
"""

from __future__ import annotations

import importlib.util

__all__ = ["EXTRAS", "missing_extra"]

#: Each extra (``pip install 'acktr_lab[extra]'``) and the modules it provides.
EXTRAS: dict[str, tuple[str, ...]] = {
    "box2d": ("Box2D", "pygame"),
    "atari": ("ale_py", "cv2"),
    "mujoco": ("mujoco", "imageio"),
    "notebooks": ("ipywidgets", "ipykernel"),
    "sweep": ("ray", "GPy", "sklearn"),
}


def missing_extra(extra: str) -> str | None:
    """``None`` when every module of ``extra`` is importable; otherwise a one-line message
    naming the missing modules and the ``pip install`` line that adds them."""
    if extra not in EXTRAS:
        raise ValueError(f"unknown extra {extra!r}; the extras are {sorted(EXTRAS)}")
    absent = [module for module in EXTRAS[extra] if importlib.util.find_spec(module) is None]
    if not absent:
        return None
    return f"this needs {', '.join(absent)}: pip install 'acktr_lab[{extra}]'"
