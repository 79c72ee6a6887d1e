"""Local privacy on the device: exact noise samplers, the release of a report, the budget ledger."""
