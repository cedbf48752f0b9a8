"""Panes of the desk: each owns its children, takes data through methods, and posts messages up."""
