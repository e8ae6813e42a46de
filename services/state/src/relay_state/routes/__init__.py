"""HTTP routes by concern; each parses, calls one service function, returns a model."""
