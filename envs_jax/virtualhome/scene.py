"""The part of the reference VirtualHome scene that the two tasks can reach.

The reference runs both tasks in one fixed scene graph, ``virtual-home/virtual_home/envs/
turn_on_tv.json`` (github.com/WeihaoTan/TWOSOME @ 9694566; 358 nodes, 672 edges). Its rules
(``simulation/evolving_graph/execution.py``) only ever look one edge away from an action's
object: the object's containers, contents, supports and the nodes it is close to, and, for
"close", the nodes the character is close to. So the scene below keeps

* the character and the four rooms;
* every node an action names (pancake, microwave; chips, milk, TV, sofa, coffee table);
* every node an action can bring the character close to: the objects' supports (kitchen table
  72, kitchen counter 81, drawer 86, kitchen counter 92, dishwasher 104, TV stand 271, recliner
  chair 273, floor tile 362) and contents (the plate 110 in the microwave);

with every edge of the scene between two kept nodes, and the node properties and states the rules
read. Everything else (walls, props, the shelf items the character starts close to) relates to no
kept node in a way a rule reads, so leaving it out changes no transition: the state machines of
the reference (``tests/data/vh_*_fsm.json.gz``) are the check.

Edges are boolean matrices over the kept nodes, ``M[i, j]`` meaning "node i RELATION node j".
"""

from __future__ import annotations

import dataclasses

import numpy as np

# node properties the rules read (the reference's Property enum, by name)
GRABBABLE, CAN_OPEN, HAS_SWITCH, SITTABLE = "GRABBABLE", "CAN_OPEN", "HAS_SWITCH", "SITTABLE"


@dataclasses.dataclass(frozen=True)
class Node:
    id: int  # the node id in turn_on_tv.json (the ids the script lines name)
    name: str  # its class_name
    room: bool = False  # category "Rooms"
    properties: frozenset[str] = frozenset()


def _node(id, name, *properties, room=False):
    return Node(id, name, room, frozenset(properties))


NODES: tuple[Node, ...] = (
    _node(1, "character"),
    _node(11, "kitchen", room=True),
    _node(172, "bathroom", room=True),
    _node(210, "bedroom", room=True),
    _node(267, "livingroom", room=True),
    # food preparation
    _node(62, "pancake", GRABBABLE),
    _node(109, "microwave", CAN_OPEN, HAS_SWITCH),
    _node(110, "plate", GRABBABLE),
    _node(72, "kitchentable"),
    _node(81, "kitchencounter"),
    _node(86, "kitchencounterdrawer"),
    # entertainment
    _node(61, "chips", GRABBABLE),
    _node(46, "milk", GRABBABLE, CAN_OPEN),
    _node(104, "dishwasher", CAN_OPEN, HAS_SWITCH),
    _node(92, "kitchencounter"),
    _node(297, "tv", HAS_SWITCH),
    _node(271, "tvstand"),
    _node(273, "chair", GRABBABLE, SITTABLE),
    _node(276, "sofa", SITTABLE),
    _node(268, "coffeetable"),
    _node(362, "floor"),
)
NUM_NODES = len(NODES)
INDEX: dict[int, int] = {n.id: i for i, n in enumerate(NODES)}  # scene node id -> row

CHARACTER = INDEX[1]
KITCHEN, BATHROOM, BEDROOM, LIVINGROOM = INDEX[11], INDEX[172], INDEX[210], INDEX[267]
PANCAKE, MICROWAVE = INDEX[62], INDEX[109]
CHIPS, MILK, TV, SOFA, COFFEETABLE = INDEX[61], INDEX[46], INDEX[297], INDEX[276], INDEX[268]

# The edges of turn_on_tv.json between kept nodes, by scene node id.
_INSIDE = [(1, 11)] + [(n, 11) for n in (62, 109, 110, 72, 81, 86, 61, 46, 104, 92)] \
    + [(n, 267) for n in (297, 271, 273, 276, 268, 362)] + [(110, 109), (92, 104)]
_ON = [(62, 72), (109, 81), (109, 86), (86, 81), (61, 92), (61, 104), (46, 72), (297, 271), (297, 273),
       (271, 362), (268, 362)]
_FACING = [(276, 297), (268, 297)]


def _matrix(edges) -> np.ndarray:
    m = np.zeros((NUM_NODES, NUM_NODES), bool)
    for a, b in edges:
        m[INDEX[a], INDEX[b]] = True
    return m


def _flags(pred) -> np.ndarray:
    return np.array([pred(n) for n in NODES], bool)


INITIAL_INSIDE = _matrix(_INSIDE)
INITIAL_ON = _matrix(_ON)
INITIAL_FACING = _matrix(_FACING)
# every node that opens starts CLOSED (microwave, milk, dishwasher), every switch OFF
INITIAL_OPEN = np.zeros(NUM_NODES, bool)
INITIAL_SWITCHED_ON = np.zeros(NUM_NODES, bool)
IS_ROOM = _flags(lambda n: n.room)
IS_GRABBABLE = _flags(lambda n: GRABBABLE in n.properties)
CAN_BE_OPENED = _flags(lambda n: CAN_OPEN in n.properties)
HAS_A_SWITCH = _flags(lambda n: HAS_SWITCH in n.properties)
IS_SITTABLE = _flags(lambda n: SITTABLE in n.properties)
