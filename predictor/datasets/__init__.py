"""Importers of published measurements, each turning a public data set into typed records."""
