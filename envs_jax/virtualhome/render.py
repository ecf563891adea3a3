"""Renderer: a VirtualHome scene graph -> RGB image (drawn with PIL; nothing fetched).

The four rooms are a 2x2 floor plan (kitchen and living room above, bathroom and bedroom below).
The task's objects stand at fixed places in their rooms: the microwave (a box, its door drawn
open when open, what is inside drawn in it), the pancake, the chips (a yellow bag), the milk (a
white carton), the TV (its screen lit when on), the sofa and the coffee table (what is on it
drawn on it). The character is a blue disc next to what it is close to (a thin line to each
such object), on the sofa when sitting; what it holds is drawn beside it. The status bar shows the task, the step, whether the
character sits (or stood up, which keeps its ON edge to the sofa) and a caption.
The picture shows the true scene, not only what the character sees.
"""

from __future__ import annotations

import jax
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from . import scene as S
from .rules import SceneGraph
from .tasks import Task, get_task

ROOM_W, ROOM_H, BAR = 260, 200, 40
_ROOM_BOX = {S.KITCHEN: (0, 0), S.LIVINGROOM: (1, 0), S.BATHROOM: (0, 1), S.BEDROOM: (1, 1)}
_ROOM_LABEL = {S.KITCHEN: "kitchen", S.LIVINGROOM: "living room", S.BATHROOM: "bathroom", S.BEDROOM: "bedroom"}
_FLOOR = {S.KITCHEN: (238, 228, 208), S.LIVINGROOM: (226, 236, 220), S.BATHROOM: (216, 232, 242),
          S.BEDROOM: (240, 224, 232)}
# home place (x, y within the room) of each drawn object, and its size
_HOME = {S.MICROWAVE: (80, 50), S.PANCAKE: (170, 110), S.CHIPS: (200, 50), S.MILK: (110, 115),
         S.TV: (200, 40), S.SOFA: (70, 110), S.COFFEETABLE: (180, 110)}
_DRAWN = {"food_preparation": (S.MICROWAVE, S.PANCAKE),
          "entertainment": (S.TV, S.SOFA, S.COFFEETABLE, S.CHIPS, S.MILK)}
_TEXT = (20, 20, 20)


def _font():
    try:
        return ImageFont.load_default(size=12)
    except TypeError:  # Pillow < 10.1
        return ImageFont.load_default()


def _room_origin(room: int) -> tuple[int, int]:
    cx, cy = _ROOM_BOX[room]
    return cx * ROOM_W, cy * ROOM_H


def _draw_item(d: ImageDraw.ImageDraw, node: int, x: float, y: float):
    """One object centred at (x, y)."""
    if node == S.PANCAKE:
        d.ellipse([x - 12, y - 7, x + 12, y + 7], fill=(214, 160, 80), outline=(120, 80, 30), width=2)
    elif node == S.CHIPS:
        d.polygon([(x - 9, y - 12), (x + 9, y - 12), (x + 11, y + 12), (x - 11, y + 12)],
                  fill=(240, 200, 40), outline=(150, 110, 0))
    elif node == S.MILK:
        d.rectangle([x - 7, y - 12, x + 7, y + 12], fill=(250, 250, 250), outline=(90, 90, 160), width=2)
        d.polygon([(x - 7, y - 12), (x, y - 18), (x + 7, y - 12)], fill=(200, 200, 240))


def render(graph: SceneGraph, task: Task | str, caption: str = "", time: int | None = None) -> np.ndarray:
    """One unbatched scene graph -> uint8 RGB image [2*200 + 40, 2*260, 3]."""
    task = get_task(task)
    g = jax.tree.map(np.asarray, graph)
    img = Image.new("RGB", (2 * ROOM_W, 2 * ROOM_H + BAR), (255, 255, 255))
    d = ImageDraw.Draw(img)
    font = _font()
    for room, label in _ROOM_LABEL.items():
        x0, y0 = _room_origin(room)
        d.rectangle([x0, y0, x0 + ROOM_W - 1, y0 + ROOM_H - 1], fill=_FLOOR[room], outline=(90, 70, 50), width=3)
        d.text((x0 + 6, y0 + ROOM_H - 18), label, fill=_TEXT, font=font)

    def room_of(n):
        return int(np.flatnonzero(g.inside[n] & S.IS_ROOM)[0])

    def home(n):
        x0, y0 = _room_origin(room_of(n))
        hx, hy = _HOME[n]
        return x0 + hx, y0 + hy

    drawn = _DRAWN[task.mdp.name]
    place: dict[int, tuple[float, float]] = {}
    # furniture and appliances first
    if S.MICROWAVE in drawn:
        x, y = home(S.MICROWAVE)
        d.rectangle([x - 28, y - 20, x + 28, y + 20], fill=(180, 180, 190), outline=(60, 60, 70), width=2)
        if g.open[S.MICROWAVE]:
            d.polygon([(x - 28, y - 20), (x - 48, y - 28), (x - 48, y + 28), (x - 28, y + 20)],
                      fill=(150, 150, 160), outline=(60, 60, 70))
        else:
            d.rectangle([x - 24, y - 16, x + 14, y + 16], fill=(70, 80, 90))
        d.text((x - 26, y + 22), "microwave", fill=_TEXT, font=font)
        place[S.MICROWAVE] = (x, y)
    if S.TV in drawn:
        x, y = home(S.TV)
        d.rectangle([x - 30, y - 18, x + 30, y + 18], fill=(30, 30, 30))
        d.rectangle([x - 26, y - 14, x + 26, y + 14], fill=(120, 200, 250) if g.switched_on[S.TV] else (50, 50, 60))
        d.text((x - 8, y + 20), "TV", fill=_TEXT, font=font)
        place[S.TV] = (x, y)
    if S.SOFA in drawn:
        x, y = home(S.SOFA)
        d.rounded_rectangle([x - 45, y - 18, x + 45, y + 18], 8, fill=(150, 90, 70), outline=(90, 50, 40), width=2)
        d.text((x - 12, y + 20), "sofa", fill=_TEXT, font=font)
        place[S.SOFA] = (x, y)
    if S.COFFEETABLE in drawn:
        x, y = home(S.COFFEETABLE)
        d.rectangle([x - 40, y - 14, x + 40, y + 14], fill=(170, 120, 70), outline=(100, 70, 40), width=2)
        d.text((x - 30, y + 16), "coffee table", fill=_TEXT, font=font)
        place[S.COFFEETABLE] = (x, y)
    # the small objects: in a container, on the coffee table, or at home (held ones come later)
    for n in drawn:
        if n in place or g.held[n]:
            continue
        if S.MICROWAVE in place and g.inside[n, S.MICROWAVE]:
            if not g.open[S.MICROWAVE]:
                continue  # out of sight in the closed microwave
            place[n] = (place[S.MICROWAVE][0] - 6, place[S.MICROWAVE][1])
        elif S.COFFEETABLE in place and g.on[n, S.COFFEETABLE]:
            place[n] = (place[S.COFFEETABLE][0] + (-18 if n == S.CHIPS else 18), place[S.COFFEETABLE][1] - 8)
        else:
            place[n] = home(n)
        _draw_item(d, n, *place[n])
    # the character, below what it is close to (on the sofa when sitting), with what it holds
    cx0, cy0 = _room_origin(room_of(S.CHARACTER))
    agent = (cx0 + ROOM_W / 2, cy0 + ROOM_H / 2)
    for n in drawn:
        if g.close[S.CHARACTER, n] and n in place:
            agent = (place[n][0], place[n][1] + 48)
    if g.sitting and S.SOFA in place:
        agent = place[S.SOFA]
    for n in drawn:  # a thin line to each object it is close to
        if g.close[S.CHARACTER, n] and n in place and not g.held[n]:
            d.line([agent, place[n]], fill=(40, 90, 200), width=1)
    for k, n in enumerate(n for n in drawn if g.held[n]):
        _draw_item(d, n, agent[0] + 22 + 24 * k, agent[1])
    ax, ay = agent
    d.ellipse([ax - 13, ay - 13, ax + 13, ay + 13], fill=(40, 90, 200), outline=(20, 40, 100), width=2)
    for ex in (-5, 5):
        d.ellipse([ax + ex - 2, ay - 6, ax + ex + 2, ay - 2], fill=(255, 255, 255))
    status = task.name + ("" if time is None else f"  t={time}")
    if g.sitting:
        status += "  sitting"
    elif g.on[S.CHARACTER, S.SOFA]:  # standing up keeps the ON edge (is_sit_sofa stays 1, Q13)
        status += "  stood up (still ON the sofa)"
    d.text((4, 2 * ROOM_H + 3), status, fill=_TEXT, font=font)
    if caption:
        d.text((4, 2 * ROOM_H + 20), caption[:80], fill=_TEXT, font=font)
    return np.asarray(img, dtype=np.uint8)
