"""Geography: geodesy, the OSM road graph, routes cut into corridors, route files and terrain.

Everything here works in EPSG:4326 at its interfaces and measures lengths in metres.
"""
