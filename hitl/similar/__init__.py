"""`hitl similar`: "more like this": the images of the collection closest to one image, or to the hero
set's centre, by their vectors (`hitl embed`), unreviewed first, to review next."""
