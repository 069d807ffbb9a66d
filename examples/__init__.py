"""Demos, fixtures and stand-ins: built on top of every library package, imported by none of them."""
