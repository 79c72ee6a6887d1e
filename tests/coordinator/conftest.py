"""The coordinator's tests share one fixture: a Store on each kind of database, holding one model, m1."""

import pytest

from edgeatlas.coordinator.store import Store


@pytest.fixture
def store(db_url):
    s = Store(db_url)
    s.put_blob("a" * 64, 3, [b"abc"])
    s.add_model("m1", "onnx", "a" * 64, "", "{}")
    yield s
    s.close()
