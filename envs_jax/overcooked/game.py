"""Game logic of the reference Overcooked in plain ``jax.numpy`` (reference notes §1).

Every function here is pure, works on one environment (``vmap`` it for a batch) and uses only
bounded loops, so it is ``jit``/``vmap``-able. The ``task`` argument (a static
:class:`~envs_jax.overcooked.layout.Task`) fixes the layout and the recipe.

State representation
--------------------
The reference keeps a true grid of cell codes plus an item list. Here the true grid is never
stored; it is derived from the item positions, which is equivalent because items only ever sit
on border cells (counters, boards, delivery) or in the agent's hand / in the plate:

* ``food_pos[f]`` / ``plate_pos``: the *true* coordinates the reference reports (a carried item,
  or a food in the carried plate, has the agent's coordinates; a food in the plate has the
  plate's coordinates).
* ``food_held[f]``, ``food_in_plate[f]``, ``plate_held``: who holds what.
* ``mem``: the agent's remembered position of every movable item (foods, then the plate); knives,
  the delivery and the agent never move, so their memory is exact and not stored (reference notes §1).
* ``chops``: the chop macro's counter (reference notes §1).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from . import constants as C
from .layout import Task


@struct.dataclass
class EnvState:
    agent: jax.Array  # int32[2]
    food_pos: jax.Array  # int32[F, 2]
    food_chop: jax.Array  # int32[F]
    food_held: jax.Array  # bool[F]
    food_in_plate: jax.Array  # bool[F]
    plate_pos: jax.Array  # int32[2]
    plate_held: jax.Array  # bool[]
    mem: jax.Array  # int32[F + 1, 2] remembered positions (foods, then plate)
    chops: jax.Array  # int32[] chop-macro counter
    time: jax.Array  # int32[] primitive steps taken in this episode
    macro_time: jax.Array  # int32[] macro steps taken in this episode
    ep_return: jax.Array  # float32[] sum_t 0.99^t r_t over primitive steps (info["episode"]["r"])
    ep_discount: jax.Array  # float32[] 0.99^time
    success: jax.Array  # bool[] a correct dish was delivered


@struct.dataclass
class EnvParams:
    """Reward constants and the episode limit (defaults: the TWOSOME scripts)."""

    max_steps_in_episode: int = C.MAX_PRIMITIVE_STEPS  # primitive steps (checked per step)
    reward_subtask: float = C.REWARD_SUBTASK
    reward_correct: float = C.REWARD_CORRECT
    reward_wrong: float = C.REWARD_WRONG
    reward_step: float = C.REWARD_STEP
    macro_discount: float = C.MACRO_DISCOUNT


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------
_DELTAS = jnp.asarray(C.ACTION_DELTAS, jnp.int32)  # [5, 2]


def _i32(x) -> jax.Array:
    return jnp.asarray(x, jnp.int32)


def _eq2(a: jax.Array, b) -> jax.Array:
    """Elementwise equality of (..., 2) coordinates."""
    b = jnp.asarray(b, jnp.int32)
    return jnp.all(a == b, axis=-1)


def _in_view(task: Task, pos: jax.Array, agent: jax.Array) -> jax.Array:
    return jnp.all(jnp.abs(pos - agent) <= task.obs_radius, axis=-1)


def _manhattan(a: jax.Array, b: jax.Array) -> jax.Array:
    return jnp.sum(jnp.abs(a - b), axis=-1)


def item_positions(state: EnvState) -> jax.Array:
    """True positions of the movable items (foods, then the plate): int32[F + 1, 2]."""
    return jnp.concatenate([state.food_pos, state.plate_pos[None]], axis=0)


def _spawns(task: Task) -> jax.Array:
    lay = task.layout
    return _i32(list(lay.food_spawn) + [lay.plate_spawn])


def _item_codes(task: Task) -> list[int]:
    return [C.FOOD_CODES[f] for f in task.layout.foods] + [C.PLATE]


def _is_interior(c: jax.Array) -> jax.Array:
    return jnp.all((c >= 1) & (c <= C.GRID_SIZE - 2), axis=-1)


def _update_memory(task: Task, state: EnvState) -> EnvState:
    """Spec 1.4: per item, visible -> true position; remembered spot in view -> spawn."""
    true = item_positions(state)
    vis = _in_view(task, true, state.agent)
    mem_in_view = _in_view(task, state.mem, state.agent)
    mem = jnp.where(vis[:, None], true, jnp.where(mem_in_view[:, None], _spawns(task), state.mem))
    return state.replace(mem=mem)


def belief_grid(task: Task, state: EnvState) -> jax.Array:
    """The belief grid B (reference notes §1): int32[7, 7], rebuilt from memory, items in list order."""
    lay = task.layout
    g = np.full((C.GRID_SIZE, C.GRID_SIZE), C.COUNTER, np.int32)
    g[1:-1, 1:-1] = C.SPACE
    b = jnp.asarray(g)
    for i, code in enumerate(_item_codes(task)):
        b = b.at[state.mem[i, 0], state.mem[i, 1]].set(code)
    for k in lay.knives:
        b = b.at[k].set(C.KNIFE)
    b = b.at[lay.delivery].set(C.DELIVERY)
    return b.at[state.agent[0], state.agent[1]].set(C.AGENT)


# --------------------------------------------------------------------------------------------
# A* with CPython heapq semantics (reference notes §1)
# --------------------------------------------------------------------------------------------
_HEAP_CAP = 64  # > 49 cells; every cell is pushed at most once
_HEAP_DEPTH = 6  # ceil(log2(64)): enough sift iterations for any heap of <= 64 nodes
_NO_FIRST = 7  # "first is None" (the start node)
# A node packs (f, g, x, y, first) into one int32; the heap order only compares f.
_F_SHIFT, _G_SHIFT, _X_SHIFT, _Y_SHIFT = 20, 12, 8, 4
# Expansion order of the reference: right, left, down, up.
_NAV_DIRS = ((0, 1, C.RIGHT), (0, -1, C.LEFT), (1, 0, C.DOWN), (-1, 0, C.UP))


def _pack(f, g, x, y, first):
    return (f << _F_SHIFT) | (g << _G_SHIFT) | (x << _X_SHIFT) | (y << _Y_SHIFT) | first


def _node_f(n):
    return n >> _F_SHIFT


def _less(a, b):
    """The reference's ``__lt__``: ``a.f <= b.f`` (ties broken by the heap algorithm)."""
    return _node_f(a) <= _node_f(b)


def _sift_up(heap, pos, item):
    """heapq._siftdown(heap, 0, pos) for ``item`` placed in the hole at ``pos``."""

    def body(_, carry):
        heap, pos, active = carry
        parent = jnp.maximum((pos - 1) >> 1, 0)
        pnode = heap[parent]
        move = active & (pos > 0) & _less(item, pnode)
        heap = jnp.where(move, heap.at[pos].set(pnode), heap)
        return heap, jnp.where(move, parent, pos), move

    heap, pos, _ = jax.lax.fori_loop(0, _HEAP_DEPTH, body, (heap, pos, jnp.bool_(True)))
    return heap.at[pos].set(item)


def _heap_push(heap, size, item):
    heap = _sift_up(heap, size, item)
    return heap, size + 1


def _heap_pop(heap, size):
    """heapq.heappop: returns (heap, size, smallest)."""
    size = size - 1
    last = heap[size]
    root = heap[0]

    def body(_, carry):
        # heapq._siftup: move the preferred child up until the hole is a leaf.
        heap, pos = carry
        child = 2 * pos + 1
        right = child + 1
        take_right = (right < size) & ~_less(heap[jnp.minimum(child, _HEAP_CAP - 1)],
                                            heap[jnp.minimum(right, _HEAP_CAP - 1)])
        child = jnp.where(take_right, right, child)
        active = child < size
        cnode = heap[jnp.minimum(child, _HEAP_CAP - 1)]
        heap = jnp.where(active, heap.at[pos].set(cnode), heap)
        return heap, jnp.where(active, child, pos)

    heap2, pos = jax.lax.fori_loop(0, _HEAP_DEPTH, body, (heap, jnp.int32(0)))
    heap2 = _sift_up(heap2, pos, last)
    nonempty = size > 0
    heap = jnp.where(nonempty, heap2, heap)
    return heap, size, jnp.where(nonempty, root, last)


def navigate(belief: jax.Array, agent: jax.Array, target: jax.Array) -> jax.Array:
    """First primitive action of the reference A* path from ``agent`` to ``target`` on ``belief``.

    A literal port of the reference's A* (reference notes §1): nodes ``(x, y, g, f, first)`` in a binary heap with the
    ``f <=`` predicate, expansion order right, left, down, up, the target test made on every
    unseen neighbour (passable or not). Returns ``STAY`` if the target is unreachable.
    """
    n = C.GRID_SIZE
    passable = ((belief == C.SPACE) | (belief == C.AGENT)).reshape(-1)
    tx, ty = target[0], target[1]
    ax, ay = agent[0], agent[1]

    heap = jnp.zeros((_HEAP_CAP,), jnp.int32)
    start = _pack(jnp.abs(ax - tx) + jnp.abs(ay - ty), 0, ax, ay, _NO_FIRST)
    heap = heap.at[0].set(start)
    seen = jnp.zeros((n * n,), jnp.bool_).at[ax * n + ay].set(True)
    init = (heap, jnp.int32(1), seen, jnp.bool_(False), jnp.int32(C.STAY), jnp.int32(0))

    def cond(c):
        heap, size, seen, found, result, it = c
        return (~found) & (size > 0) & (it < n * n)

    def body(c):
        heap, size, seen, found, result, it = c
        heap, size, node = _heap_pop(heap, size)
        x = (node >> _X_SHIFT) & 0xF
        y = (node >> _Y_SHIFT) & 0xF
        g = (node >> _G_SHIFT) & 0xFF
        first = node & 0xF
        for dx, dy, act in _NAV_DIRS:
            cx, cy = x + dx, y + dy
            inb = (cx >= 0) & (cx < n) & (cy >= 0) & (cy < n)
            idx = jnp.clip(cx, 0, n - 1) * n + jnp.clip(cy, 0, n - 1)
            fresh = (~found) & inb & ~seen[idx]
            nfirst = jnp.where(first == _NO_FIRST, act, first)
            push = fresh & passable[idx]
            item = _pack(g + 1 + jnp.abs(cx - tx) + jnp.abs(cy - ty), g + 1, cx, cy, nfirst)
            heap2, size2 = _heap_push(heap, size, item)
            heap = jnp.where(push, heap2, heap)
            size = jnp.where(push, size2, size)
            seen = jnp.where(push, seen.at[idx].set(True), seen)
            hit = fresh & (cx == tx) & (cy == ty)
            result = jnp.where(hit, nfirst, result)
            found = found | hit
        return heap, size, seen, found, result, it + 1

    _, _, _, found, result, _ = jax.lax.while_loop(cond, body, init)
    return jnp.where(found, result, C.STAY).astype(jnp.int32)


class _PyNode:
    """Heap node of the host A*; ``<`` is the reference's ``f <=`` predicate."""

    __slots__ = ("x", "y", "g", "f", "first")

    def __init__(self, x, y, g, f, first):
        self.x, self.y, self.g, self.f, self.first = x, y, g, f, first

    def __lt__(self, other):
        return self.f <= other.f


def navigate_py(belief, agent, target) -> int:
    """Host (CPython ``heapq``) version of :func:`navigate`; the reference algorithm verbatim."""
    import heapq

    belief = np.asarray(belief)
    (ax, ay), (tx, ty) = (int(agent[0]), int(agent[1])), (int(target[0]), int(target[1]))
    n = belief.shape[0]
    heap = [_PyNode(ax, ay, 0, abs(ax - tx) + abs(ay - ty), None)]
    seen = {(ax, ay)}
    while heap:
        node = heapq.heappop(heap)
        for dx, dy, act in _NAV_DIRS:
            c = (node.x + dx, node.y + dy)
            if not (0 <= c[0] < n and 0 <= c[1] < n) or c in seen:
                continue
            first = node.first if node.first is not None else act
            if belief[c] in (C.SPACE, C.AGENT):
                g = node.g + 1
                heapq.heappush(heap, _PyNode(c[0], c[1], g, g + abs(c[0] - tx) + abs(c[1] - ty), first))
                seen.add(c)
            if c == (tx, ty):
                return first
    return C.STAY


def open_room_belief(agent) -> np.ndarray:
    """The belief grid's passability in every reachable state: counters all around, floor
    inside, the agent on its cell. (Items only ever lie on border cells or in the agent's
    hand, so they never change which cells are passable.)"""
    b = np.full((C.GRID_SIZE, C.GRID_SIZE), C.COUNTER, np.int32)
    b[1:-1, 1:-1] = C.SPACE
    b[agent[0], agent[1]] = C.AGENT
    return b


_NAV_TABLE: np.ndarray | None = None


def navigation_table() -> np.ndarray:
    """``table[ax, ay, tx, ty]`` = reference A*'s first action in the open room (int32[7,7,7,7]).

    Built once on the host with :func:`navigate_py`. Exact for every reachable state because
    the belief grid's passable cells are always the 5x5 interior (see :func:`open_room_belief`;
    ``tests/test_overcooked_env.py`` checks table == in-graph A* on every reachable state and
    macro action)."""
    global _NAV_TABLE
    if _NAV_TABLE is None:
        n = C.GRID_SIZE
        t = np.full((n, n, n, n), C.STAY, np.int32)
        for ax in range(1, n - 1):
            for ay in range(1, n - 1):
                b = open_room_belief((ax, ay))
                for tx in range(n):
                    for ty in range(n):
                        t[ax, ay, tx, ty] = navigate_py(b, (ax, ay), (tx, ty))
        _NAV_TABLE = t
    return _NAV_TABLE


# --------------------------------------------------------------------------------------------
# reset and observation
# --------------------------------------------------------------------------------------------
def reset_state(task: Task) -> EnvState:
    lay = task.layout
    nf = lay.num_foods
    state = EnvState(
        agent=_i32(lay.agent_start),
        food_pos=_i32(lay.food_spawn),
        food_chop=jnp.zeros((nf,), jnp.int32),
        food_held=jnp.zeros((nf,), jnp.bool_),
        food_in_plate=jnp.zeros((nf,), jnp.bool_),
        plate_pos=_i32(lay.plate_spawn),
        plate_held=jnp.bool_(False),
        mem=_spawns(task),
        chops=jnp.int32(0),
        time=jnp.int32(0),
        macro_time=jnp.int32(0),
        ep_return=jnp.float32(0.0),
        ep_discount=jnp.float32(1.0),
        success=jnp.bool_(False),
    )
    return _update_memory(task, state)


def policy_obs(task: Task, state: EnvState) -> jax.Array:
    """The reference policy observation (reference notes §1) as int32[obs_dim]."""
    lay = task.layout
    agent = state.agent
    parts = []
    for f in range(lay.num_foods):
        v = _in_view(task, state.food_pos[f], agent)
        parts.append(jnp.where(v, jnp.concatenate([state.food_pos[f], state.food_chop[f][None]]), 0))
    v = _in_view(task, state.plate_pos, agent)
    parts.append(jnp.where(v, state.plate_pos, 0))
    for cell in list(lay.knives) + [lay.delivery]:
        cell = _i32(cell)
        parts.append(jnp.where(_in_view(task, cell, agent), cell, 0))
    parts.append(agent)
    onehot = np.zeros(len(C.RECIPES), np.int32)
    onehot[task.recipe_index] = 1
    parts.append(jnp.asarray(onehot))
    return jnp.concatenate(parts).astype(jnp.int32)


# --------------------------------------------------------------------------------------------
# primitive step (reference notes §1)
# --------------------------------------------------------------------------------------------
def prim_step(task: Task, params: EnvParams, state: EnvState, a: jax.Array):
    """One primitive action on the true state. Returns (state, reward, done, delivered)."""
    lay = task.layout
    recipe = jnp.asarray(task.recipe_mask)
    food_spawn = _i32(lay.food_spawn)
    agent = state.agent
    is_move = a < C.STAY
    c = agent + _DELTAS[a]

    knives = _i32(lay.knives)
    on_knife = jnp.any(_eq2(knives, c), axis=0) & is_move
    on_delivery = _eq2(c, lay.delivery) & is_move
    interior = _is_interior(c)
    plate_here = is_move & ~state.plate_held & _eq2(state.plate_pos, c)
    food_loose = ~state.food_held & ~state.food_in_plate
    food_here = is_move & food_loose & _eq2(state.food_pos, c)  # [F]
    chopped = state.food_chop >= C.CHOP_DONE  # [F]
    anything_here = plate_here | jnp.any(food_here)

    held_food = state.food_held  # [F] (at most one)
    hold_food = jnp.any(held_food)
    hold_plate = state.plate_held
    hold_none = ~hold_food & ~hold_plate
    held_chopped = jnp.any(held_food & chopped)
    fixed_cell = on_knife | on_delivery
    is_space = is_move & interior & ~anything_here
    is_counter = is_move & ~interior & ~fixed_cell  # a counter cell (maybe with an item)
    empty_counter = is_counter & ~anything_here

    r = jnp.float32(params.reward_step)
    food_pos, food_chop = state.food_pos, state.food_chop
    food_held, food_in_plate = state.food_held, state.food_in_plate
    plate_pos, plate_held = state.plate_pos, state.plate_held
    new_agent = agent

    # -- walk into free space: the agent and what it carries move
    new_agent = jnp.where(is_space, c, new_agent)
    carried = held_food | (food_in_plate & plate_held)
    food_pos = jnp.where((is_space & carried)[:, None], c, food_pos)
    plate_pos = jnp.where(is_space & plate_held, c, plate_pos)

    # -- empty hand
    pick_plate = hold_none & plate_here & ~on_delivery  # counter or board with the plate
    pick_food = hold_none & food_here & ~on_delivery & (~on_knife | chopped)  # [F]
    chop = hold_none & on_knife & food_here & ~chopped  # [F]
    plate_held = plate_held | pick_plate
    plate_pos = jnp.where(pick_plate, agent, plate_pos)
    food_pos = jnp.where((pick_plate & food_in_plate)[:, None], agent, food_pos)
    food_held = food_held | pick_food
    food_pos = jnp.where(pick_food[:, None], agent, food_pos)
    food_chop = food_chop + chop.astype(jnp.int32)
    finished = chop & (food_chop == C.CHOP_DONE) & recipe
    r = r + jnp.where(jnp.any(finished), jnp.float32(params.reward_subtask), 0.0)

    # -- holding something: put it down on an empty counter or an empty board
    put = ~hold_none & (empty_counter | (on_knife & ~anything_here))
    food_pos = jnp.where((put & (held_food | (food_in_plate & hold_plate)))[:, None], c, food_pos)
    food_held = food_held & ~put
    plate_pos = jnp.where(put & hold_plate, c, plate_pos)
    plate_held = plate_held & ~put

    # -- chopped food into a plate lying on a counter
    into_counter_plate = hold_food & held_chopped & plate_here & is_counter
    # -- chopped food onto a board holding the plate: take the plate, the food goes in
    into_board_plate = hold_food & held_chopped & plate_here & on_knife
    food_into_plate = (into_counter_plate | into_board_plate) & held_food  # [F]
    food_in_plate = food_in_plate | food_into_plate
    food_held = food_held & ~food_into_plate
    food_pos = jnp.where((into_counter_plate & held_food)[:, None], c, food_pos)
    plate_held = plate_held | into_board_plate
    plate_pos = jnp.where(into_board_plate, agent, plate_pos)
    food_pos = jnp.where((into_board_plate & (food_in_plate | held_food))[:, None], agent, food_pos)

    # -- holding the plate: collect a chopped food from a board or a counter
    collect = hold_plate & food_here & chopped & (on_knife | is_counter)  # [F]
    food_in_plate = food_in_plate | collect
    food_pos = jnp.where(collect[:, None], agent, food_pos)

    # -- delivery
    contents = food_in_plate
    correct_dish = jnp.all(contents == recipe) & jnp.any(contents)
    deliver_plate = hold_plate & on_delivery
    good = deliver_plate & correct_dish
    bad_plate = deliver_plate & ~correct_dish
    bad_food = hold_food & on_delivery
    r = r + jnp.where(good, jnp.float32(params.reward_correct), 0.0)
    r = r + jnp.where(bad_plate | bad_food, jnp.float32(params.reward_wrong), 0.0)
    # correct: the plate (and its foods) stay on the delivery cell
    plate_held = plate_held & ~deliver_plate
    plate_pos = jnp.where(good, c, plate_pos)
    food_pos = jnp.where((good & contents)[:, None], c, food_pos)
    # wrong: the plate and its foods, or the held food, go back to spawn, unchopped
    plate_pos = jnp.where(bad_plate, _i32(lay.plate_spawn), plate_pos)
    reset_food = (bad_plate & contents) | (bad_food & held_food)  # [F]
    food_pos = jnp.where(reset_food[:, None], food_spawn, food_pos)
    food_chop = jnp.where(reset_food, 0, food_chop)
    food_in_plate = food_in_plate & ~reset_food
    food_held = food_held & ~reset_food

    time = state.time + 1
    done = (time >= params.max_steps_in_episode) | good
    state = state.replace(
        agent=new_agent,
        food_pos=food_pos,
        food_chop=food_chop,
        food_held=food_held,
        food_in_plate=food_in_plate,
        plate_pos=plate_pos,
        plate_held=plate_held,
        time=time,
        ep_return=state.ep_return + state.ep_discount * r,
        ep_discount=state.ep_discount * jnp.float32(params.macro_discount),
        success=state.success | good,
    )
    return _update_memory(task, state), r, done, good


# --------------------------------------------------------------------------------------------
# macro actions (reference notes §1)
# --------------------------------------------------------------------------------------------
def _macro_target(task: Task, state: EnvState, m: jax.Array) -> jax.Array:
    """Target cell of macro ``m`` (memory for items; fixed cells for boards and delivery)."""
    lay = task.layout
    fixed = _i32(list(lay.knives) + [lay.delivery, lay.delivery])  # boards, deliver, (chop)
    table = jnp.concatenate([state.mem, fixed], axis=0)  # indexed by macro
    return table[m]


def _controller(task: Task, state: EnvState, m: jax.Array, nav: str = "table"):
    """Returns (state with the chop counter updated, primitive action, fin)."""
    lay = task.layout
    nf, nk = lay.num_foods, lay.num_knives
    agent = state.agent
    knives = _i32(lay.knives)
    chopped = state.food_chop >= C.CHOP_DONE
    food_loose = ~state.food_held & ~state.food_in_plate

    def knife_with_raw_food(cell):
        on_k = jnp.any(_eq2(knives, cell))
        return on_k & jnp.any(food_loose & ~chopped & _eq2(state.food_pos, cell))

    # ---- chop
    chop_act = jnp.int32(C.STAY)
    chop_found = jnp.bool_(False)
    for d in (C.RIGHT, C.DOWN, C.LEFT, C.UP):
        hit = ~chop_found & knife_with_raw_food(agent + _DELTAS[d])
        chop_act = jnp.where(hit, d, chop_act)
        chop_found = chop_found | hit
    chops1 = state.chops + 1
    chop_fin = jnp.where(chop_found, chops1 >= 3, True)
    new_chops = jnp.where(chop_found, jnp.where(chops1 >= 3, 0, chops1), state.chops)

    # ---- navigation macros
    target = _macro_target(task, state, m)
    true_pos = item_positions(state)
    is_get_food = m < nf
    is_get_plate = m == nf
    is_knife = (m > nf) & (m <= nf + nk)
    is_item = m <= nf
    item_true = true_pos[jnp.minimum(m, nf)]
    hold_food = jnp.any(state.food_held)
    hold_none = ~hold_food & ~state.plate_held
    held_chopped = jnp.any(state.food_held & chopped)

    rule1 = is_get_food & _in_view(task, target, agent) & _eq2(state.plate_pos, target)
    # the reference reads B[target] == agent; the agent is written into B last, so that is
    # exactly "the target is the agent's cell" (no need to build B for it)
    rule2 = _eq2(target, agent)
    if nav == "astar":
        a = navigate(belief_grid(task, state), agent, target)
    else:
        a = jnp.asarray(navigation_table())[agent[0], agent[1], target[0], target[1]]
    fin = a == C.STAY
    adjacent = _manhattan(target, agent) == 1
    # overrides when already adjacent, in the reference's order
    a_adj = a
    fin_adj = jnp.bool_(True)
    plate_food = is_get_plate & hold_food
    fin_adj = jnp.where(plate_food & held_chopped, False, fin_adj)
    a_adj = jnp.where(plate_food & ~held_chopped, C.STAY, a_adj)
    a_adj = jnp.where(is_knife & hold_none, C.STAY, a_adj)
    a_adj = jnp.where(is_get_food & knife_with_raw_food(target), C.STAY, a_adj)
    a_adj = jnp.where(is_item & ~_eq2(target, item_true), C.STAY, a_adj)
    a = jnp.where(adjacent, a_adj, a)
    fin = jnp.where(adjacent, fin_adj, fin)
    stop = rule1 | rule2
    a = jnp.where(stop, C.STAY, a)
    fin = fin | stop

    is_chop = m == nf + nk + 2
    a = jnp.where(is_chop, chop_act, a)
    fin = jnp.where(is_chop, chop_fin, fin)
    state = state.replace(chops=jnp.where(is_chop, new_chops, state.chops))
    return state, a.astype(jnp.int32), fin


def _post_check(task: Task, state: EnvState, m: jax.Array) -> jax.Array:
    lay = task.layout
    nf, nk = lay.num_foods, lay.num_knives
    target = _macro_target(task, state, m)
    d1 = _manhattan(target, state.agent) == 1
    hold_none = ~jnp.any(state.food_held) & ~state.plate_held
    is_get_food = m < nf
    is_knife = (m > nf) & (m <= nf + nk)
    is_deliver = m == nf + nk + 1
    is_item = m <= nf
    knife_target = jnp.any(_eq2(_i32(lay.knives), target))
    fidx = jnp.minimum(m, nf - 1)
    food_there_raw = (
        ~state.food_held[fidx]
        & ~state.food_in_plate[fidx]
        & _eq2(state.food_pos[fidx], target)
        & (state.food_chop[fidx] < C.CHOP_DONE)
    )
    c1 = is_knife & hold_none & d1
    c2 = is_get_food & d1 & knife_target
    fin = jnp.where(c1, True, jnp.where(c2, food_there_raw, is_deliver & hold_none & d1))
    item_true = item_positions(state)[jnp.minimum(m, nf)]
    return fin | (is_item & ~_eq2(target, item_true))


def macro_step(task: Task, params: EnvParams, state: EnvState, m: jax.Array, nav: str = "table"):
    """Run macro ``m`` to completion (reference notes §1).

    Returns ``(state, reward, done, steps, prims)``: the macro reward
    sum_k 0.99^k r_k (float32), the done flag of the last primitive step, the number of primitive
    steps and the primitive actions (int32[MAX_MACRO_PRIMS], padded with -1).

    ``nav="astar"`` runs the literal heap A* (:func:`navigate`) on the belief grid at every
    primitive step; ``nav="table"`` (default, ~Nx faster under ``vmap``) looks the same answer
    up in :func:`navigation_table`, which is exact on every reachable state.
    """
    m = jnp.asarray(m, jnp.int32)
    carry = jax.lax.while_loop(_macro_running, lambda c: _macro_body(task, params, m, nav, c), _macro_start(state))
    return _macro_end(carry)


# A macro in progress: (state, primitive steps k, fin, discounted reward, discount, prims, done).
def _macro_start(state: EnvState):
    prims0 = jnp.full((C.MAX_MACRO_PRIMS,), -1, jnp.int32)
    return (state, jnp.int32(0), jnp.bool_(False), jnp.float32(0.0), jnp.float32(1.0), prims0, jnp.bool_(False))


def _macro_running(c) -> jax.Array:
    _, k, fin, *_ = c
    return (~fin) & (k < C.MAX_MACRO_PRIMS)


def _macro_body(task: Task, params: EnvParams, m: jax.Array, nav: str, c):
    """One primitive step of macro ``m``."""
    state, k, _, total, disc, prims, _ = c
    state, a, fin = _controller(task, state, m, nav)
    state, r, done, _ = prim_step(task, params, state, a)
    total = total + disc * r
    fin = fin | _post_check(task, state, m)
    disc = disc * jnp.float32(params.macro_discount)
    prims = jnp.where(jnp.arange(C.MAX_MACRO_PRIMS) == k, a, prims)  # elementwise: no scatter under vmap
    return state, k + 1, fin, total, disc, prims, done


def _macro_end(c):
    state, k, _, total, _, prims, done = c
    return state.replace(macro_time=state.macro_time + 1), total, done, k, prims


# Stages of :func:`macro_step_batch`: (share of the batch, primitive steps). Random macro actions
# take 3.1-3.3 primitive steps on average but up to 10, and a vmapped loop runs as long as its
# longest lane: after 2 steps 39-43% of the macros are still running, after 5 20-23%, after 7
# 6-7% (tomato / lettuce-tomato salad). Each buffer leaves a margin over its survivors (a
# quarter-size buffer after 5 steps is a thin one for lettuce-tomato salad), since whatever does
# not fit goes through the final loop over every lane. `python benchmarks/env_stages.py` compares
# stage lists side by side: this one is 1.02x / 1.05x the three-stage list ((1, 2), (2, 3),
# (4, 16)) it replaced in ea281b8 (tomato / lettuce-tomato salad, 8192 environments; 2026-11-22 at
# 6aa8268, benchmarks/results/env_stages_2026-11-22_6aa8268.json).
BATCH_STAGES = ((1, 2), (2, 3), (3, 2), (8, C.MAX_MACRO_PRIMS))


def macro_step_batch(task: Task, params: EnvParams, states: EnvState, ms: jax.Array, nav: str = "table",
                     stages=BATCH_STAGES):
    """``vmap(macro_step)`` over a batch, with the running macros compacted between stages.

    Stage ``(d, n)`` gathers up to ``N // d`` still-running macros into a buffer, runs them at
    most ``n`` more primitive steps and scatters them back; a final vmapped loop finishes any
    that did not fit. Same results as ``vmap(macro_step)`` (each lane runs the same steps),
    about twice as fast on a CPU, where finished lanes of a vmapped loop cost as much as
    running ones."""
    ms = jnp.asarray(ms, jnp.int32)
    n_envs = ms.shape[0]
    carry = jax.vmap(_macro_start)(states)

    def run(carry, ms, limit):
        def lane(c, m):
            k0 = c[1]
            return jax.lax.while_loop(lambda c: _macro_running(c) & (c[1] < k0 + limit),
                                      lambda c: _macro_body(task, params, m, nav, c), c)
        return jax.vmap(lane)(carry, ms)

    for share, limit in stages:
        size = n_envs // share
        if size == n_envs:
            carry = run(carry, ms, limit)
            continue
        idx = jnp.nonzero(jax.vmap(_macro_running)(carry), size=size, fill_value=n_envs)[0]
        safe = jnp.minimum(idx, n_envs - 1)
        buffer = run(jax.tree.map(lambda x: x[safe], carry), ms[safe], limit)
        carry = jax.tree.map(lambda x, b: x.at[idx].set(b, mode="drop"), carry, buffer)
    carry = run(carry, ms, C.MAX_MACRO_PRIMS)  # whatever did not fit a buffer
    return jax.vmap(_macro_end)(carry)
