"""The live duet: the rolypoly object, the lookahead schedule, audio drivers, take records."""
