"""One servicer module per gRPC service; servicers only translate between the wire and the Store."""
