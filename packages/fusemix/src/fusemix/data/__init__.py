"""Paired datasets: the generic manifest, item loading, and the procedural shapes demo dataset."""
