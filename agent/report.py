"""One builder of a report from a run's result, and the rule of what leaves a device, stated once.

What a report carries, by privacy mode:
- always: the task and lease it answers, a fresh report_id, the agent's version, the status (ok, failed
  with its reason, declined over budget), and for an ok run the setting that actually ran, whether the run
  was valid, who drove it and LoadGen's verdict, and which energy meter measured (or why none could);
- `trusted` (a private fleet whose owner opted in): the exact latency stats, every named figure
  (protos/metrics.py), the fidelity check's error and tolerance, the full invalid reason, LoadGen's own
  words, and the device's conditions as it ran (battery, temperature, load, clock);
- `ldp`: only the contract's statistics, each clipped, quantised and noised on the device
  (agent/privacy/release.py), the contract itself, whether outputs matched (two bits, not the error), and
  the invalid reason's category alone. The exact values stay in results.jsonl, for the owner;
- `secure` (a campaign whose contract says so): as `ldp`, but no values at all. The contract's statistics
  wait on the device (held.json) until its cohort's round sums them (agent/secagg.py).
"""

from __future__ import annotations

import dataclasses
import time
import uuid

from edgeatlas import __version__
from edgeatlas.agent.privacy.release import release
from edgeatlas.protos import PROTOCOL_VERSION, convert
from edgeatlas.protos.privacy import PrivacyParams
from edgeatlas.protos.records import RunResult
from edgeatlas.v1 import agent_pb2


def new_report(task: agent_pb2.Task, trusted: bool) -> agent_pb2.ReportRequest:
    """A report for the task, before it ran: its id, the lease it answers, the mode it will be sent in."""
    mode = "trusted" if trusted else "secure" if task.privacy.mode == "secure" else "ldp"
    return agent_pb2.ReportRequest(
        protocol_version=PROTOCOL_VERSION, report_id=uuid.uuid4().hex, task_id=task.task_id,
        lease_id=task.lease_id, privacy_mode=mode, agent_version=__version__,
        started_ms=int(time.time() * 1000))


def refused(report: agent_pb2.ReportRequest, declined: bool, reason: str) -> agent_pb2.ReportRequest:
    """The task did not run: DECLINED (its ε would exceed the budget) or FAILED, with the reason."""
    report.status = agent_pb2.ReportRequest.DECLINED if declined else agent_pb2.ReportRequest.FAILED
    report.failure_reason = reason
    return report


def completed(report: agent_pb2.ReportRequest, result: RunResult, privacy: PrivacyParams | None,
              conditions: dict | None = None) -> agent_pb2.ReportRequest:
    """An ok report of the run's result: exact under `privacy` None (trusted), else only the released vector."""
    report.status = agent_pb2.ReportRequest.OK
    report.setting.CopyFrom(convert.setting_to_pb(result.setting))
    report.valid = result.valid
    report.started_ms = result.started_ms or report.started_ms
    report.outcome.CopyFrom(convert.outcome_to_pb(result.outcome, exact=privacy is None))
    report.energy_meter = result.energy.meter if result.energy else ""
    report.energy_absent = result.energy_absent
    if privacy is None:
        report.stats.CopyFrom(convert.stats_to_pb(result.stats))
        report.fidelity.CopyFrom(convert.fidelity_to_pb(result.fidelity))
        report.invalid_reason = result.invalid_reason
        report.figures.update(result.figures())
        report.conditions.CopyFrom(convert.conditions_to_pb(conditions or {}))
    else:
        report.privacy.CopyFrom(convert.privacy_to_pb(privacy))
        if privacy.mode != "secure":
            report.released.update(release(result.stats, privacy, result.figures()).values)
        # Only whether outputs matched; the error size and iteration counts would say more than ε allows.
        report.fidelity.checked, report.fidelity.passed = result.fidelity.checked, result.fidelity.passed
        report.invalid_reason = "" if result.valid else result.invalid_kind
    return report


def exact_record(result: RunResult) -> dict:
    """The run's exact result as the owner keeps and reads it (results.jsonl, `agent bench --format json`):
    it never leaves the device except in a trusted report."""
    return {"setting": result.setting.to_dict(), "stats": result.stats.to_dict(), "figures": result.figures(),
            "outcome": dataclasses.asdict(result.outcome),
            "energy_meter": result.energy.meter if result.energy else None,
            "energy_absent": result.energy_absent or None, "valid": result.valid,
            "invalid_reason": result.invalid_reason, "fidelity": dataclasses.asdict(result.fidelity)}
