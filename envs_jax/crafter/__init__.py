"""Crafter (danijar/crafter) as Craftax-Classic: the environment of RLAdapter / AdaRefiner
(github.com/PKU-RL/AdaRefiner).

``constants`` (names and ids, JAX-free), ``score`` (the Crafter score, numpy only) and ``text``
(RLAdapter's situation text, host side) import no JAX; ``env`` (the gymnax class) and ``vector``
(optimistic resets) import craftax. Importing this package imports none of them.
"""
