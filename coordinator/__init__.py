"""Server side: gRPC services, storage, campaigns, heat-map aggregation, auth, the model zoo."""
