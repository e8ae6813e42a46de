"""Relay's shared core: what more than one service needs.

Wire contracts (event model, Redis key names, state API models) and
infrastructure (settings base, logging, HTTP errors, clients). No business
logic of one service lives here.
"""
