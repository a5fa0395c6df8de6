"""Radio: coverage layers (terrestrial, measured, satellite, cached), path loss, cell sites,
measurement records, quality matrices and the link model that turns quality into service.
"""
