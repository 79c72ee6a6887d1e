"""The `edgeatlas` command and the demo: the one room that may import every other (lazily)."""
