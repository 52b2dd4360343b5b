"""uvs bringup: node graph, launch support and the `uvs` command."""
