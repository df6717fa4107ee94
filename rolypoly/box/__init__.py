"""The drum machine in a box: the step sequencer (model), its player, the terminal UI and its script runner."""
