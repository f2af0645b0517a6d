"""One module per chapter, named after it: its profiles, its experiment, its tables and figures."""
