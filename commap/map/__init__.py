"""Maps: the ``map.toml`` spec, building a map (tiled, per executor), its manifest and files,
and loading a built :class:`~commap.map.comm_map.CommMap` for queries.
"""
