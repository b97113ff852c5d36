"""Every external format in and out: MegaDetector, SpeciesNet, COCO Camera Traps, Label Studio, Labelme.

Pure functions: plain data in, plain data out; no database or web imports.
"""
