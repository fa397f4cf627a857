"""Shared test helpers."""

from genlab.train import Callback


class Crash(Callback):
    """Simulates a kill: raises (no checkpoint is written) after step ``at``."""

    class Boom(Exception):
        pass

    def __init__(self, at):
        self.at = at

    def on_step_end(self, state):
        if state.step == self.at:
            raise self.Boom
