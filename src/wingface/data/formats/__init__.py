"""Readers for public facial-landmark dataset formats; each returns a FaceSet."""
