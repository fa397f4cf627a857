"""Figures (matplotlib, headless) shared by the commands and reproductions."""
