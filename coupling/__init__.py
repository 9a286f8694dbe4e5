"""Coupling: how neurons reach guides and each other (direct, hash, tree).

Neurons without guides need no coupling; the couplings arrive with the guides.
"""
