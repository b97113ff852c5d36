"""The publishing stage: the agreement report, the gallery, the hero set, one render path."""
