"""The command lines: flags and `main` only. Every console script's entry
point lives here; nothing in the library imports this package."""
