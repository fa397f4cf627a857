"""genlab: how well will a neural network generalize, and why."""

__version__ = "0.1.0"
