"""The live duet: the rolypoly object (engine), the compiled audio block (block), model ticks
(worker), what comes back from the audio side (recorder), the take's rows (schedule), audio
drivers (drivers), take records (takes), latency calibration (calibrate), a dummy JACK server (jack)."""
