"""Outputs: the route timeline every output reads, styles, GIS files, plots, reports and the viewer."""
