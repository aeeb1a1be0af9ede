"""Landmark regression networks."""
