"""The supertonic drum engine: Microtonic-style voices, kits, presets and rendering (SPEC section 9)."""
