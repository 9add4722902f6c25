"""The plugin's App panels (agreement heatmap, slice confusion, reader profiles).

Panels arrive with the agreement engine; this package is where they register.
"""

PANELS = ()
