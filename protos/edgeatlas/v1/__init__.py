"""Generated protobuf and gRPC stubs of the EdgeAtlas wire contract (v1)."""
