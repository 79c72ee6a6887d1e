"""Local privacy on the device: the release of a report (its samplers are protos/noise.py), the budget ledger."""
