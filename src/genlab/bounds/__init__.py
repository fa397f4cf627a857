"""Generalisation bounds and the quantities they are made of."""
