"""One module per ``seriesclassifier`` sub-command (see ``cli.py``)."""
