"""An example uvs estimator plug-in (docs/plugins.md)."""
