"""Free mode: an event model that proposes what the drummer plays next, and generation with it."""
