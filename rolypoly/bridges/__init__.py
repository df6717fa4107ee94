"""Bridges to other programs: the OSC server for Max and Pd."""
