"""Families of strategies are registered by name: a string in a profile or notebook maps to a class."""
from __future__ import annotations


def registrar(table: dict):
    """A class decorator factory that records ``cls`` in ``table`` under ``name`` and sets ``cls.name``."""
    def register(name: str):
        def deco(cls):
            table[name] = cls
            cls.name = name
            return cls
        return deco
    return register
