"""The interactive desk (Textual)."""
