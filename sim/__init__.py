"""picosim: a full-system simulator and teaching environment for library OSes.

Layers (imports only go down): cli -> experiments -> host -> guest ->
libos (personalities, monitor) -> devices -> cpu -> image, trace.
"""

__version__ = "0.1.0"
