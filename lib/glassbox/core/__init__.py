"""Foundation used by every layer: argument checks, paths, seeds and run records, the artifact store."""
