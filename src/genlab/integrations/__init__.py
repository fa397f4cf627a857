"""Adapters to other training frameworks (optional extras): :mod:`genlab.integrations.lightning`."""
