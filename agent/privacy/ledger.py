"""The device's privacy ledger: every release on disk, composed with a Rényi DP accountant.

The owner sets the budget (ε over a rolling window, at δ); the coordinator cannot. A task whose
release would take the window past the budget is declined before it runs.
"""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from edgeatlas.protos.errors import EdgeAtlasError
from edgeatlas.protos.privacy import ORDERS, PrivacyParams, rdp_to_epsilon
from edgeatlas.protos.secure import SecureContract

# A release's contract by the mode it was made in: `ldp` one noised report, `secure` one round of a cohort
# (its ε is the sum's, for any allowed number of survivors). `trusted` releases carry no contract.
CONTRACTS = {"ldp": PrivacyParams.from_dict, "secure": SecureContract.from_dict}


@dataclass(frozen=True)
class Budget:
    """The owner's rule: at most `epsilon` (at `delta`) within any `window_s` seconds."""

    epsilon: float = 8.0
    delta: float = 1e-6
    window_s: float = 24 * 3600.0


class BudgetExceeded(EdgeAtlasError):
    """A release would take the device past its owner's privacy budget."""


def spent_epsilon(releases: list[PrivacyParams | SecureContract], delta: float) -> float:
    """ε at δ of the releases together: the better of RDP composition and plain ε addition."""
    if not releases:
        return 0.0
    rdp = {alpha: sum(p.rdp(alpha) for p in releases) for alpha in ORDERS}
    via_rdp = rdp_to_epsilon(rdp, delta)
    if all(p.mechanism == "laplace" for p in releases):
        return min(via_rdp, sum(p.epsilon for p in releases))
    return via_rdp


class Ledger:
    def __init__(self, path: str | Path, budget: Budget):
        self.path = Path(path)
        self.budget = budget
        self.db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.execute("""CREATE TABLE IF NOT EXISTS release (
            id INTEGER PRIMARY KEY, at_s REAL NOT NULL, report_id TEXT NOT NULL, task_id INTEGER,
            mode TEXT NOT NULL, params_json TEXT NOT NULL)""")

    def close(self) -> None:
        self.db.close()

    def _window(self, now_s: float) -> list[PrivacyParams | SecureContract]:
        rows = self.db.execute("SELECT mode, params_json FROM release WHERE mode != 'trusted' AND at_s > ?",
                               (now_s - self.budget.window_s,)).fetchall()
        return [CONTRACTS[mode](json.loads(params)) for mode, params in rows]

    def spent(self, now_s: float | None = None) -> float:
        """ε (at the budget's δ) spent within the window ending now."""
        return spent_epsilon(self._window(time.time() if now_s is None else now_s), self.budget.delta)

    def check(self, params: PrivacyParams | SecureContract, now_s: float | None = None) -> float:
        """The window's ε if this release were made; BudgetExceeded if that is over the budget."""
        now_s = time.time() if now_s is None else now_s
        window = self._window(now_s)
        projected = spent_epsilon(window + [params], self.budget.delta)
        if projected > self.budget.epsilon:
            raise BudgetExceeded(
                f"declined: privacy budget ε ≤ {self.budget.epsilon:g} per {self.budget.window_s / 3600:g} h "
                f"(δ = {self.budget.delta:g}) would reach ε = {projected:.3g} with this report "
                f"({len(window)} releases in the window, ε = {spent_epsilon(window, self.budget.delta):.3g})")
        return projected

    def record(self, report_id: str, task_id: int, params: PrivacyParams | SecureContract | None,
               now_s: float | None = None) -> None:
        """Records a release before it leaves the device; `params` None means trusted (exact values), a
        SecureContract one secure round (`report_id` then names the round)."""
        mode = "trusted" if params is None else "secure" if isinstance(params, SecureContract) else "ldp"
        self.db.execute("INSERT INTO release (at_s, report_id, task_id, mode, params_json) VALUES (?, ?, ?, ?, ?)",
                        (time.time() if now_s is None else now_s, report_id, task_id,
                         mode, json.dumps(params.to_dict() if params else {})))

    def entries(self) -> list[dict]:
        rows = self.db.execute("SELECT at_s, report_id, task_id, mode, params_json FROM release ORDER BY id")
        return [{"at_s": r[0], "report_id": r[1], "task_id": r[2], "mode": r[3], "params": json.loads(r[4])}
                for r in rows]
