"""wingface: robust facial landmark localisation with the Wing loss family."""

__version__ = "0.1.0"
