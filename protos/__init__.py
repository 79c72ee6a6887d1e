"""The shared language of EdgeAtlas: wire stubs (edgeatlas.v1), typed records, spec sheets, errors."""

PROTOCOL_VERSION = 1
