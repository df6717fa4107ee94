"""The listener: onset detection on the musician's input."""
