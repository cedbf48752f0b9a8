"""Front ends of the verdict: the HTML report (matplotlib charts) and the rich comparison table.

These import matplotlib / rich; the core (perfdesk.controllers) never imports this package.
"""
