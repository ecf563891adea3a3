"""The reference simulator's rules over the scene graph, in plain ``jax.numpy``.

One env step executes one script line (``[WALK] <pancake> (62)``) on the graph of
:mod:`~envs_jax.virtualhome.scene`, as the reference's evolving-graph executors do
(``virtual-home/virtual_home/simulation/evolving_graph/execution.py`` and the POMDP mask of
``envs/graph_env_v1.py``, github.com/WeihaoTan/TWOSOME @ 9694566; reference notes §2):

* **Visibility.** The character sees the four rooms, what it holds, and every object inside its
  room (through containers), except objects inside a closed container. An action whose object
  or destination it does not see is rejected before any rule runs.
* **Close for interactions** is looser than the observation's close bit: a direct CLOSE edge
  character->X, or a node N the character is close to with X CLOSE N or X ON N.
* **WALK** fails while sitting. Otherwise the character loses its INSIDE/CLOSE/FACING edges (both
  ways; the ON edge to a sofa stays) and goes INSIDE the destination's room; walking to an object
  makes it close (both ways) to the object, its non-room containers, its contents if it can open,
  and its supports. Each held object is re-attached: CLOSE to the character and INSIDE the room
  the character was in *before* the walk, so a held object's room lags one walk behind (Q12).
* **GRAB** needs a grabbable object not yet held, "close", not inside a closed container, and a
  free hand. The object loses its ON/INSIDE/CLOSE edges and goes INSIDE the character's room; the
  character becomes close to it and to its former support.
* **PUTIN / PUTBACK** need the object held, the destination "close" and, for PUTIN into
  something that opens, open. They add object INSIDE|ON destination and CLOSE edges
  character-destination and object-destination; the object keeps its INSIDE-room edge.
* **OPEN** needs "close", a free hand, the object closed and switched off; **CLOSE** needs it
  open. **SWITCHON / SWITCHOFF** need "close", a free hand and the opposite power state.
* **SIT** needs "close" and not sitting: character ON the seat, FACING what the seat faces.
  **STANDUP** only clears sitting (the ON edge and the FACING edges stay until the next walk).

A rejected or failed action leaves the graph unchanged (its ``ok`` is False, the reference's
``succeed``); it still costs a step (the env counts it). Two facts of the scene keep the state
small: every object has exactly one INSIDE edge to a room (the rules preserve this), so an
object's room is that edge; and which hand holds what is never observed, so only *whether* the
hands are full (two objects) is kept.

Every function is pure and works on one graph (``vmap`` it for a batch); node arguments may be
traced.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct

from . import constants as C
from . import scene as S

N = S.NUM_NODES
_ROOM = jnp.asarray(S.IS_ROOM)
_GRABBABLE = jnp.asarray(S.IS_GRABBABLE)
_CAN_OPEN = jnp.asarray(S.CAN_BE_OPENED)
_HAS_SWITCH = jnp.asarray(S.HAS_A_SWITCH)
_SITTABLE = jnp.asarray(S.IS_SITTABLE)
_HANDS = 2


@struct.dataclass
class SceneGraph:
    """The mutable part of the scene: ``rel[i, j]`` is the edge "node i REL node j"."""

    inside: jax.Array  # bool[N, N]
    on: jax.Array  # bool[N, N]
    close: jax.Array  # bool[N, N]
    facing: jax.Array  # bool[N, N]
    held: jax.Array  # bool[N] the character holds the node (HOLDS_RH or HOLDS_LH)
    open: jax.Array  # bool[N] state OPEN
    switched_on: jax.Array  # bool[N] state ON
    sitting: jax.Array  # bool[] the character's SITTING state


def initial_graph() -> SceneGraph:
    """The scene at reset (turn_on_tv.json): character in the kitchen, closed microwave, TV off."""
    zeros = jnp.zeros((N, N), bool)
    return SceneGraph(inside=jnp.asarray(S.INITIAL_INSIDE), on=jnp.asarray(S.INITIAL_ON), close=zeros,
                      facing=jnp.asarray(S.INITIAL_FACING), held=jnp.zeros((N,), bool),
                      open=jnp.asarray(S.INITIAL_OPEN), switched_on=jnp.asarray(S.INITIAL_SWITCHED_ON),
                      sitting=jnp.asarray(False))


# ------------------------------------------------------------------------------------ edge helpers
def _one(i) -> jax.Array:
    return jnp.arange(N) == i


def _cut(m: jax.Array, nodes: jax.Array) -> jax.Array:
    """``m`` without any edge from or to ``nodes`` (a DeleteEdges with delete_reverse)."""
    return m & ~nodes[:, None] & ~nodes[None, :]


def _link(m: jax.Array, i, nodes: jax.Array) -> jax.Array:
    """``m`` with edges i -> n and n -> i for every n in ``nodes`` (an AddEdges with add_reverse)."""
    e = _one(i)
    return m | (e[:, None] & nodes[None, :]) | (nodes[:, None] & e[None, :])


def _first(mask: jax.Array) -> jax.Array:
    """One-hot of the first True of ``mask`` (all False if none)."""
    return _one(jnp.argmax(mask)) & jnp.any(mask)


def _transitive(m: jax.Array) -> jax.Array:
    """The transitive closure of a relation (repeated squaring of its 0/1 matrix)."""
    x = m.astype(jnp.float32)
    for _ in range(N.bit_length()):
        x = jnp.minimum(x + x @ x, 1.0)
    return x > 0


# ------------------------------------------------------------------------------------ predicates
def room_of(g: SceneGraph, n) -> jax.Array:
    """One-hot of the room node ``n`` is in (a room is its own room)."""
    return jnp.where(_ROOM[n], _one(n), g.inside[n] & _ROOM)


def enclosed(g: SceneGraph) -> jax.Array:
    """bool[N]: the node is inside a closed container (not a room)."""
    return jnp.any(g.inside & ~_ROOM[None, :] & ~g.open[None, :], axis=1)


def visible(g: SceneGraph) -> jax.Array:
    """bool[N]: what the character observes (the reference's POMDP mask)."""
    room = g.inside[S.CHARACTER] & _ROOM
    in_room = jnp.any(_transitive(g.inside) & room[None, :], axis=1)
    return _ROOM | g.held | (in_room & ~enclosed(g))


def close_for_interaction(g: SceneGraph) -> jax.Array:
    """bool[N]: X is "close" for GRAB/PUT/OPEN/SWITCH/SIT (the executor's loose rule)."""
    cc = g.close[S.CHARACTER]
    return cc | jnp.any(cc[:, None] & g.close, axis=0) | jnp.any(g.on & cc[None, :], axis=1)


# ------------------------------------------------------------------------------------ executors
@struct.dataclass
class _Facts:
    """What the checks read, computed once per step for every executor."""

    close: jax.Array  # bool[N] close for interactions
    enclosed: jax.Array  # bool[N] inside a closed container
    free_hand: jax.Array  # bool[]


# Each executor takes (graph, facts, verb, object, destination) and returns (ok, graph after the
# action); the graph is only kept when ok.
def _walk(g: SceneGraph, f: _Facts, _verb, node, _dest):
    ch = _one(S.CHARACTER)
    dest_room, prev_room, held = room_of(g, node), room_of(g, S.CHARACTER), g.held
    inside, close, facing = _cut(g.inside, ch), _cut(g.close, ch), _cut(g.facing, ch)
    inside = inside | (ch[:, None] & dest_room[None, :])
    near = (inside[node] & ~_ROOM) | _one(node)  # the object and its non-room containers
    close = jnp.where(_ROOM[node], close, _link(close, S.CHARACTER, near))
    inside, close, facing = _cut(inside, held), _cut(close, held), _cut(facing, held)
    close = _link(close, S.CHARACTER, held)
    inside = inside | (held[:, None] & prev_room[None, :])
    close = _link(close, S.CHARACTER, inside[:, node] & _CAN_OPEN[node])  # its contents
    close = _link(close, S.CHARACTER, g.on[node])  # its supports
    ok = ~g.sitting & jnp.any(dest_room)
    return ok, g.replace(inside=inside, close=close, facing=facing)


def _grab(g: SceneGraph, f: _Facts, _verb, node, _dest):
    ok = _GRABBABLE[node] & ~g.held[node] & f.close[node] & ~f.enclosed[node] & f.free_hand
    not_room = ~_ROOM
    support = jnp.where(jnp.any(g.on[node] & not_room), _first(g.on[node] & not_room),
                        jnp.where(jnp.any(g.inside[node] & not_room), _first(g.inside[node] & not_room),
                                  _first(g.close[node] & not_room)))
    e = _one(node)
    inside = _cut(g.inside, e) | (e[:, None] & room_of(g, S.CHARACTER)[None, :])
    close = _link(_link(_cut(g.close, e), S.CHARACTER, e), S.CHARACTER, support)
    return ok, g.replace(inside=inside, on=_cut(g.on, e), close=close, held=g.held | e)


def _put(g: SceneGraph, f: _Facts, verb, src, dest):
    into = verb == C.PUTIN  # PUTIN adds INSIDE and needs an openable destination open; PUTBACK adds ON
    ok = g.held[src] & f.close[dest] & (~into | ~_CAN_OPEN[dest] | g.open[dest])
    d = _one(dest)
    close = _link(_link(g.close, S.CHARACTER, d), src, d)
    edge = _one(src)[:, None] & d[None, :]
    return ok, g.replace(held=g.held & ~_one(src), close=close, inside=g.inside | (edge & into),
                         on=g.on | (edge & ~into))


def _open(g: SceneGraph, f: _Facts, verb, node, _dest):
    to_open = verb == C.OPEN  # else CLOSE
    ok = _CAN_OPEN[node] & f.close[node] & (g.open[node] != to_open)
    ok = ok & (~to_open | (f.free_hand & ~g.switched_on[node]))
    return ok, g.replace(open=g.open.at[node].set(to_open))


def _switch(g: SceneGraph, f: _Facts, verb, node, _dest):
    to_on = verb == C.SWITCHON  # else SWITCHOFF
    ok = _HAS_SWITCH[node] & f.close[node] & f.free_hand & (g.switched_on[node] != to_on)
    return ok, g.replace(switched_on=g.switched_on.at[node].set(to_on))


def _sit(g: SceneGraph, f: _Facts, _verb, node, _dest):
    ok = f.close[node] & ~g.sitting & _SITTABLE[node]
    on = g.on.at[S.CHARACTER, node].set(True)
    facing = g.facing.at[S.CHARACTER].set(g.facing[S.CHARACTER] | g.facing[node])
    return ok, g.replace(on=on, facing=facing, sitting=jnp.asarray(True))


def _standup(g: SceneGraph, f: _Facts, _verb, _node, _dest):
    return g.sitting, g.replace(sitting=jnp.asarray(False))


# one executor per verb pair (the verb picks the direction), fewer branches to compile
_EXECUTORS = {C.WALK: _walk, C.GRAB: _grab, C.PUTIN: _put, C.PUTBACK: _put, C.OPEN: _open, C.CLOSE: _open,
              C.SWITCHON: _switch, C.SWITCHOFF: _switch, C.SIT: _sit, C.STANDUP: _standup}
_BRANCHES = tuple(dict.fromkeys(_EXECUTORS.values()))
_BRANCH_OF_VERB = jnp.asarray([_BRANCHES.index(_EXECUTORS[v]) for v in range(C.NUM_VERBS)])


def execute(g: SceneGraph, verb, obj, dest) -> tuple[jax.Array, SceneGraph]:
    """Run one script line: ``(succeed, graph after it)``. ``obj``/``dest`` are scene rows or
    ``constants.NO_NODE``; a line naming a node the character does not see is rejected."""
    vis = visible(g)
    seen = lambda n: (n == C.NO_NODE) | vis[jnp.maximum(n, 0)]  # noqa: E731
    facts = _Facts(close=close_for_interaction(g), enclosed=enclosed(g), free_hand=jnp.sum(g.held) < _HANDS)
    ok, after = jax.lax.switch(_BRANCH_OF_VERB[verb], _BRANCHES, g, facts, verb, jnp.maximum(obj, 0),
                               jnp.maximum(dest, 0))
    ok = ok & seen(obj) & seen(dest)
    return ok, jax.tree.map(lambda a, b: jnp.where(ok, a, b), after, g)


# ------------------------------------------------------------------------------------ observation
def observe(g: SceneGraph, spec) -> jax.Array:
    """int32[len(spec)]: the observation bits, computed on the visible sub-graph (an edge counts
    only between two visible nodes). ``spec`` is a task's ``(key, kind, a, b)`` tuple."""
    vis = visible(g)
    c = S.CHARACTER
    kinds = {
        "in": lambda a, b: g.inside[c, a],
        "see": lambda a, b: vis[a],
        "close": lambda a, b: g.close[c, a] & vis[a],
        "hold": lambda a, b: g.held[a],
        "open": lambda a, b: g.open[a] & vis[a],
        "switched_on": lambda a, b: g.switched_on[a] & vis[a],
        "facing": lambda a, b: g.facing[c, a] & vis[a],
        "sits_on": lambda a, b: g.on[c, a] & vis[a],
        "inside": lambda a, b: g.inside[a, b] & vis[a] & vis[b],
        "on": lambda a, b: g.on[a, b] & vis[a] & vis[b],
    }
    return jnp.stack([kinds[kind](a, b) for _, kind, a, b in spec]).astype(jnp.int32)
