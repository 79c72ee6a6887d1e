"""EdgeAtlas: federated benchmarking of AI inference on real device fleets."""

__version__ = "0.1.0"
