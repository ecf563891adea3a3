"""What the Crafter tests share: a quick-compiling ``jit`` and craftax's own reset.

Craftax-Classic's world generation and step are large programs: on a 2-core machine they take
10-20 s each to compile with the default options and about half that without XLA's CPU backend
optimisations, while a test runs them for a handful of steps (results are the same up to
floating-point rounding). ``craftax_world`` is compiled once per test process and shared by the
test modules."""

from __future__ import annotations

import functools

import jax

QUICK_COMPILE = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}

quick_jit = functools.partial(jax.jit, compiler_options=QUICK_COMPILE)


@functools.cache
def _craftax():
    from craftax.craftax_classic.envs.craftax_symbolic_env import CraftaxClassicSymbolicEnvNoAutoReset

    env = CraftaxClassicSymbolicEnvNoAutoReset()
    return quick_jit(env.reset_env), env.default_params


def craftax_world(key):
    """``(obs, state)`` of craftax's own reset (``generate_world``) for ``key``: the reference the
    project's resets are compared with."""
    reset, params = _craftax()
    return reset(key, params)
