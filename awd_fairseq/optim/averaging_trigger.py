"""When deepmind/lamb starts averaging the weights (no torch, no fairseq).

lamb trains in "turns" of `steps_per_turn` updates, each followed by an evaluation on the
validation set (training.py `_train_loop`, monitoring.py `TrainingMonitor`). After the
evaluation of turn t the monitor knows the turn of the best (strictly lowest) loss so far, and
averaging is switched on, for the rest of training, when

    (t > 0 and t - best_turn >= trigger_averaging_turns)
    or (trigger_averaging_at_the_latest >= 0 and t >= trigger_averaging_at_the_latest)

with no averaging at all when trigger_averaging_turns < 0. So the rule fires once the last
`trigger_averaging_turns` evaluations brought no new best. Here a turn is one validation of
fairseq-train (lamb's recipes validate every 200 updates: `--validate-interval-updates 200`),
counted from 1: lamb's turn 0 is an evaluation of the initial weights, before any update, which
fairseq does not run; it cannot be the best once any later loss is lower.

Unlike NT-ASGD's non-monotone rule (nonmono.py), the history is not a window of old losses: a
single worse loss does not fire it, and every validation while averaging still counts.
"""
from typing import Any, Dict, Optional


class NoImprovementTrigger:
    """Args: turns (lamb's trigger_averaging_turns; < 0: never average), at_the_latest (lamb's
    trigger_averaging_at_the_latest; < 0: no deadline)."""

    def __init__(self, turns: int = 50, at_the_latest: int = 800):
        self.turns = turns
        self.at_the_latest = at_the_latest
        self.turn = 0
        self.best_loss: Optional[float] = None
        self.best_turn: Optional[int] = None
        self.triggered = False

    def observe(self, loss: float) -> bool:
        """Record one validation's loss; True exactly on the validation that starts averaging."""
        self.turn += 1
        loss = float(loss)
        if self.best_loss is None or loss < self.best_loss:
            self.best_loss, self.best_turn = loss, self.turn
        if self.triggered or self.turns < 0:
            return False
        late = 0 <= self.at_the_latest <= self.turn
        self.triggered = self.turn - self.best_turn >= self.turns or late
        return self.triggered

    def reason(self) -> str:
        if self.turn - self.best_turn >= self.turns:
            return (f"no new best validation loss for {self.turn - self.best_turn} validations "
                    f"(--trigger-averaging-turns {self.turns})")
        return f"validation {self.turn} reached --trigger-averaging-at-the-latest {self.at_the_latest}"

    def state_dict(self) -> Dict[str, Any]:
        return {"turn": self.turn, "best_loss": self.best_loss, "best_turn": self.best_turn, "triggered": self.triggered}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        """Restore the history; the rule's two numbers keep the values given to the constructor."""
        self.turn = int(state["turn"])
        self.best_loss = None if state["best_loss"] is None else float(state["best_loss"])
        self.best_turn = None if state["best_turn"] is None else int(state["best_turn"])
        self.triggered = bool(state["triggered"])
