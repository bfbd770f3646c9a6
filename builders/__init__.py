"""Builders: everything a build writes out (package folders, cards, manifests)."""
