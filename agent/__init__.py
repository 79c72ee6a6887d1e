"""Device side: probe, runners, the pull loop. Imports only edgeatlas.protos; never torch."""
