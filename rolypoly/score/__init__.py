"""The score: MIDI <-> rows, drum classes, the model's feature layout, the GMD corpus."""
