"""Thin DVC stage modules: read params, map the library over the manifest, write the outputs
at the paths :class:`~mimicflow.paths.StagePaths` names."""
