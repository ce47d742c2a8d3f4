from mavis.cli import entry_point

entry_point()
