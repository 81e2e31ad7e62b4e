"""Defaults for every host in every inventory here (see the README's data reference)."""

tls_profile = "fs-only"
