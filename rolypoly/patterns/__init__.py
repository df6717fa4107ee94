"""Introspection: pattern tables that propose one drum's part from another's."""
