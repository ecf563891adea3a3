"""Episodes as animated GIFs, for any registered environment (each family draws its own frames
with ``env.render(state, caption)``)."""

from __future__ import annotations

from typing import Sequence

import jax
import numpy as np
from PIL import Image


def save_gif(frames: Sequence[np.ndarray], path: str, fps: float = 2.0) -> None:
    """Write RGB frames as an animated GIF (the last frame held a little longer)."""
    images = [Image.fromarray(np.asarray(f, np.uint8)) for f in frames]
    if not images:
        raise ValueError("no frames to write")
    durations = [int(1000 / fps)] * len(images)
    durations[-1] *= 3
    images[0].save(path, save_all=True, append_images=images[1:], duration=durations, loop=0)


def render_episode(env, actions: Sequence[int], params=None) -> list[np.ndarray]:
    """Frames of an episode played from reset with the given env actions (stops at done),
    each captioned with the action's name and reward."""
    params = env.default_params if params is None else params
    key = jax.random.PRNGKey(0)
    _, state = env.reset_env(key, params)
    frames = [env.render(state, "reset")]
    step = jax.jit(env.step_env)
    for a in actions:
        _, state, r, done, _ = step(key, state, int(a), params)
        frames.append(env.render(state, f"{env.action_names[int(a)]}  r={float(r):+.4f}"))
        if bool(done):
            break
    return frames
