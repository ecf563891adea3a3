"""Renderer: an Overcooked state -> RGB image (glyphs drawn with PIL); ``envs_jax.gif`` makes GIFs.

Nothing is fetched: every glyph is drawn from primitives, text uses PIL's built-in font.
Legend: brown = counter, beige = floor, wooden board with a blade = cutting board (K),
green tile with "OUT" = delivery; red = tomato, green = lettuce, purple = onion (a whole food
is a disc, a chopped one three slices), white disc = the bowl (its foods drawn inside),
blue disc = the agent (what it carries drawn at its lower right). The status bar shows the
time, the last macro action and its reward.
"""

from __future__ import annotations

from typing import Sequence

import jax
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from . import constants as C
from .game import EnvState
from .layout import Task, get_task

CELL = 48
BAR = 40
_COLORS = {
    "floor": (236, 226, 205), "counter": (150, 104, 66), "counter_edge": (110, 74, 44),
    "board": (214, 170, 110), "blade": (190, 196, 204), "delivery": (72, 160, 90),
    "tomato": (214, 40, 40), "lettuce": (90, 180, 60), "onion": (150, 80, 160),
    "plate": (250, 250, 250), "plate_edge": (120, 120, 120), "agent": (40, 90, 200),
    "text": (20, 20, 20), "bar": (255, 255, 255),
}


def _font():
    try:
        return ImageFont.load_default(size=12)
    except TypeError:  # Pillow < 10.1
        return ImageFont.load_default()


def _box(x: int, y: int, pad: float = 0.0, scale: float = 1.0, off=(0.0, 0.0)):
    """Pixel box of cell (x row, y column), shrunk by ``pad`` (fraction of the cell)."""
    s = CELL * scale
    cx, cy = y * CELL + CELL * (0.5 + off[0]), x * CELL + CELL * (0.5 + off[1])
    h = s * (0.5 - pad)
    return [cx - h, cy - h, cx + h, cy + h]


def _food(d: ImageDraw.ImageDraw, name: str, box, chopped: bool):
    col = _COLORS[name]
    x0, y0, x1, y1 = box
    if not chopped:
        d.ellipse(box, fill=col, outline=(40, 40, 40))
        if name == "tomato":
            d.polygon([((x0 + x1) / 2, y0 + 2), ((x0 + x1) / 2 - 4, y0 - 3),
                       ((x0 + x1) / 2 + 4, y0 - 3)], fill=(40, 120, 40))
        return
    w = (x1 - x0) / 3
    for i in range(3):  # three slices
        d.ellipse([x0 + i * w, y0 + (y1 - y0) * 0.25, x0 + (i + 1) * w, y1 - (y1 - y0) * 0.25],
                  fill=col, outline=(40, 40, 40))


def _plate(d, box, contents: Sequence[str]):
    d.ellipse(box, fill=_COLORS["plate"], outline=_COLORS["plate_edge"], width=2)
    x0, y0, x1, y1 = box
    r = (x1 - x0) / 7
    for i, name in enumerate(contents):
        cx = x0 + (x1 - x0) * (0.3 + 0.2 * i)
        cy = (y0 + y1) / 2
        d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=_COLORS[name])


def render(state: EnvState, task: Task | str = "tomato_salad", caption: str = "") -> np.ndarray:
    """One unbatched state -> uint8 RGB image [(7*48 + 40), 7*48, 3]."""
    task = get_task(task) if isinstance(task, str) else task
    lay = task.layout
    s = jax.tree.map(np.asarray, state)
    n = C.GRID_SIZE
    img = Image.new("RGB", (n * CELL, n * CELL + BAR), _COLORS["bar"])
    d = ImageDraw.Draw(img)
    font = _font()
    base = lay.base_grid()
    for x in range(n):
        for y in range(n):
            code = base[x, y]
            box = [y * CELL, x * CELL, (y + 1) * CELL - 1, (x + 1) * CELL - 1]
            if code == C.SPACE:
                d.rectangle(box, fill=_COLORS["floor"], outline=(220, 208, 184))
            else:
                d.rectangle(box, fill=_COLORS["counter"], outline=_COLORS["counter_edge"], width=2)
            if code == C.KNIFE:
                d.rectangle(_box(x, y, 0.1), fill=_COLORS["board"], outline=(120, 80, 40), width=2)
                bx0, by0, bx1, by1 = _box(x, y, 0.15)
                d.line([bx0 + 4, by1 - 4, bx1 - 10, by0 + 10], fill=_COLORS["blade"], width=4)
                k = lay.knives.index((x, y)) + 1
                d.text((box[0] + 3, box[1] + 2), f"K{k}", fill=_COLORS["text"], font=font)
            elif code == C.DELIVERY:
                d.rectangle(_box(x, y, 0.08), fill=_COLORS["delivery"])
                d.text((box[0] + 10, box[1] + 18), "OUT", fill=(255, 255, 255), font=font)
    foods = lay.foods
    agent = tuple(int(v) for v in s.agent)
    in_plate = [f for i, f in enumerate(foods) if s.food_in_plate[i]]
    # loose items on cells
    if not s.plate_held:
        _plate(d, _box(*s.plate_pos, 0.12), in_plate)
    for i, f in enumerate(foods):
        if not s.food_held[i] and not s.food_in_plate[i]:
            _food(d, f, _box(*s.food_pos[i], 0.2), bool(s.food_chop[i] >= C.CHOP_DONE))
    # the agent and what it carries
    d.ellipse(_box(*agent, 0.12), fill=_COLORS["agent"], outline=(20, 40, 100), width=2)
    ax0, ay0, ax1, ay1 = _box(*agent, 0.12)
    for ex in (0.35, 0.65):
        cx = ax0 + (ax1 - ax0) * ex
        d.ellipse([cx - 3, ay0 + 10, cx + 3, ay0 + 16], fill=(255, 255, 255))
    held_box = _box(*agent, 0.0, scale=0.45, off=(0.27, 0.27))
    if s.plate_held:
        _plate(d, held_box, in_plate)
    for i, f in enumerate(foods):
        if s.food_held[i]:
            _food(d, f, held_box, bool(s.food_chop[i] >= C.CHOP_DONE))
    status = f"{task.name}  t={int(s.time)}  macro={int(s.macro_time)}"
    if bool(s.success):
        status += "  DELIVERED!"
    d.text((4, n * CELL + 3), status, fill=_COLORS["text"], font=font)
    if caption:
        d.text((4, n * CELL + 20), caption[:60], fill=_COLORS["text"], font=font)
    return np.asarray(img, dtype=np.uint8)
