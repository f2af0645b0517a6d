"""Reporting: profiles and run set-up, results files, plotting, widgets, the Sphinx extension of the book."""
