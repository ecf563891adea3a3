"""VirtualHome obs -> text: the prompts and offered actions the reference's policies read.

These are the obs->text methods of the *policy* files, which training uses
(``twosome/virtualhome/policy_v1.py`` and ``policy_v2.py``, github.com/WeihaoTan/TWOSOME @
9694566; reference notes §2), not the differently worded ones of the env files (Q14). The odd text
is data and stays verbatim (Q16): "not opend", "the them", "You are in the bathroom. and notice
nothing useful.", the repeated "Currently, you have grabbed the chips in hand." sentence, "The TV
is not close to you." at the coffee table. Food preparation's text takes the variant's nouns
(ADRL ``virtualhome_<variant>.py``: the same function with ``pancake``/``microwave`` replaced).

Each function returns the prompt and the offered env action indices, in the order the prompt
lists them (always ascending); :func:`describe` turns the indices into the task's action strings.
"""

from __future__ import annotations

from typing import Sequence

from ..interface import Description
from .tasks import Task, get_task

_ROOMS = ("kitchen", "bathroom", "bedroom", "living room")  # obs[0:4]


def _room(obs) -> str:
    if sum(int(v) for v in obs[:4]) != 1:  # the reference asserts this
        raise AssertionError("Only one room can be true at a time")
    return _ROOMS[[int(v) for v in obs[:4]].index(1)]


def food_preparation_text(obs: Sequence[int], food: str = "pancake", container: str = "microwave"
                          ) -> tuple[str, list[int]]:
    """policy_v1.py ``obs2text`` with the variant's nouns."""
    see, close_f, hold, close_c, is_open = (int(obs[i]) for i in (4, 5, 6, 8, 9))
    room = _room(obs)
    text = f"There are four rooms: the kitchen, bathroom, bedroom, and living room. You are in the {room}. "
    if room == "kitchen":
        text += f"The {food} is in the {container}. " if not see else f"You notice {food} and {container}. "
        if hold:
            text += f"Currently, you have grabbed the {food} in hand. "
            if close_c:
                text += f"The {container} is close to you. "
                ids = [0, 2, 3, 4, 7, 8, 9]
            else:
                text += f"The {container} is not close to you. "
                ids = [0, 2, 3, 4, 5]
        elif close_f and not close_c:
            text += f"Currently, you are not grabbing anything in hand. The {food} is close to you. "
            ids = [0, 2, 3, 5, 6]
        elif close_c and not close_f:
            text += f"Currently, you are not grabbing anything in hand. The {container} is close to you. "
            ids = [0, 2, 3, 4, 8, 9]
        elif not close_f and not close_c:
            text += f"Currently, you are not grabbing anything in hand. The {food} and the {container} are not close to you. "
            ids = [0, 2, 3, 4, 5]
        else:  # close to both, empty hands: no sentence
            ids = [0, 2, 3, 8, 9] if is_open else [0, 2, 3, 9]
        if see and is_open:
            text += f"The {container} is opened. "
        elif see:
            text += f"The {container} is not opend. "
        else:
            text += f"The {container} is closed. "
            ids = [0, 2, 3]
    else:
        text += "and notice nothing useful. "
        text += (f"Currently, you have grabbed the {food} in hand. " if hold
                 else "Currently, you are not grabbing anything in hand. ")
        ids = {"bathroom": [0, 1, 3], "bedroom": [0, 1, 2], "living room": [1, 2, 3]}[room]
    text += f"In order to heat up the {food} in the {container}, your next step is to"
    return text, ids


def _holding(hc: int, hm: int, coc: int, moc: int, q: str) -> str:
    """The hands sentence after the living room's coffee table / TV / sofa sentence (Q is the
    prefix: "Currently, the TV is turned on, you have " or "Currently, you have ")."""
    if hc and hm:
        return q + "grabbed the chips and the milk in hand. "
    if hm:
        return q + ("grabbed the milk in hand. " if not coc else "the chips on the coffee table and the milk in your hand. ")
    if hc:  # the chips sentence comes twice when the milk is not on the table (Q16)
        return q + "grabbed the chips in hand. " + q + (
            "grabbed the chips in hand. " if not moc else "the milk on the coffee table and the chips in your hand. ")
    return ""


def _hands(hc: int, hm: int) -> str:
    if hc and hm:
        return "Currently, you have grabbed the chips and the milk in hand. "
    if hm:
        return "Currently, you have grabbed the milk in hand. "
    if hc:
        return "Currently, you have grabbed the chips in hand. "
    return "Currently, you are not grabbing anything in hand. "


def entertainment_text(obs: Sequence[int]) -> tuple[str, list[int]]:
    """policy_v2.py ``obs2text``."""
    (sc, cc, hc, coc, sm, cm, hm, moc, stv, ctv, _face, tv_on, ssf, csf, sit, sct, cct) = (int(v) for v in obs[4:21])
    room = _room(obs)
    text = f"There are four rooms: the kitchen, bathroom, bedroom, and living room. You are in the {room} "
    ids: list[int] = []
    if room == "kitchen":
        if sc and sm:
            text += "and notice chips and milk. "
            if hc and hm:
                text += "Currently, you have grabbed the chips and the milk in hand. "
                ids = [0, 2, 3]
            elif hc:
                if cm:
                    text += ("The milk is close to you. But you have not grabbed the milk. "
                             "Currently, you have grabbed the chips in hand. ")
                    ids = [0, 2, 3, 10]
                else:
                    text += "The milk is not close to you. Currently, you have grabbed the chips in hand. "
                    ids = [0, 2, 3, 5]
            elif hm:
                if cc:
                    text += ("The chips are close to you. But you have not grabbed the chips. "
                             "Currently, you have grabbed the milk in hand. ")
                    ids = [0, 2, 3, 9]
                else:
                    text += "The chips are not close to you. Currently, you have grabbed the milk in hand. "
                    ids = [0, 2, 3, 4]
            else:
                if cc and cm:
                    text += "They are close to you. But you have not grabbed the them. "
                    ids = [0, 2, 3, 9, 10]
                elif cc:
                    text += "The chips are close to you. But you have not grabbed the chips. "
                    ids = [0, 2, 3, 5, 9]
                elif cm:
                    text += "The milk is close to you. But you have not grabbed the milk. "
                    ids = [0, 2, 3, 4, 10]
                else:
                    text += "But they are not close to you. "
                    ids = [0, 2, 3, 4, 5]
                text += "Currently, you are not grabbing anything in hand. "
        elif sc:
            text += "and only notice chips. "
            if hc:
                text += "Currently, you have grabbed the chips in hand. "
                ids = [0, 2, 3]
            elif cc:
                text += "The chips are close to you. But you have not grabbed the chips. "
                ids = [0, 2, 3, 9]
            else:
                text += "The chips are not close to you. "
                ids = [0, 2, 3, 5]
        elif sm:
            text += "and notice milk. "
            if hm:
                text += "Currently, you have grabbed the milk in hand. "
                ids = [0, 2, 3]
            elif cm:
                text += "The milk is close to you. But you have not grabbed the milk. "
                ids = [0, 2, 3, 10]
            else:
                text += "The milk is not close to you. "
                ids = [0, 2, 3, 4]
        else:
            text += "and notice nothing. "
            ids = [0, 2, 3]
    elif room == "living room":
        text += "and you notice a coffee table, a TV and a sofa. "
        if cct + ctv + csf > 1:  # the reference asserts these two
            raise AssertionError("You are next to more than one object from coffee table, TV and sofa.")
        if sct + stv + ssf < 3:
            raise AssertionError("You don't see coffee table, TV and sofa.")
        on = "Currently, the TV is turned on, you have "
        off = "Currently, you have "
        if not cct and not ctv and not csf:
            text += "They are not close to you. " + _hands(hc, hm)
            ids = [1, 2, 3, 6, 7, 8]
        if cct:
            text += "The TV is not close to you. " if (coc and hm) or (moc and hc) else "The coffee table is close to you. "
            if hc and hm:
                text += "Currently, you have grabbed the chips and the milk in hand. "
                ids = [1, 2, 3, 7, 8, 11, 12]
            elif hm:
                if not coc:
                    text += "Currently, you have grabbed the milk in hand. "
                    ids = [1, 2, 3, 7, 8, 12]
                else:
                    text += "Currently, you have the chips on the coffee table and the milk in your hand. "
                    ids = [1, 2, 3, 7, 8]
            elif hc:
                text += "Currently, you have grabbed the chips in hand. "
                if not moc:
                    text += "Currently, you have grabbed the chips in hand. "
                    ids = [1, 2, 3, 7, 8, 11]
                else:
                    text += "Currently, you have the milk on the coffee table and the chips in your hand. "
                    ids = [1, 2, 3, 7, 8]
            else:
                text += "Currently, you are not grabbing anything in hand. "
                ids = [1, 2, 3]
        if ctv:
            if tv_on:
                text += "The sofa is not close to you. " + _holding(hc, hm, coc, moc, on)
                ids = [1, 2, 3, 6, 8]
            else:
                text += "The TV is close to you. " + _holding(hc, hm, coc, moc, off)
                ids = [1, 2, 3, 6, 8, 13, 14]
        if csf:
            text += "The sofa is close to you. " if not sit else "You are sitting on the sofa. "
            text += _holding(hc, hm, coc, moc, on if tv_on else off)
            if sit:
                ids = [1, 2, 3]
            else:
                ids = [1, 2, 3, 6, 7, 15, 16] if tv_on else [1, 2, 3, 6, 7]
    else:
        text += "and notice nothing. " + _hands(hc, hm)
        ids = [0, 1, 2] if room == "bedroom" else [0, 1, 3]
    text += "In order to enjoy the chips and the milk while watching TV, your next step is to"
    return text, ids


def describe(obs: Sequence[int], task: str | Task) -> Description:
    """The exact prompt, offered action strings and their env indices of one observation."""
    task = get_task(task)
    if task.mdp.name == "entertainment":
        prompt, ids = entertainment_text(obs)
    else:
        prompt, ids = food_preparation_text(obs, task.food, task.container)
    texts = task.action_texts
    return Description(prompt, [texts[i] for i in ids], list(ids))
