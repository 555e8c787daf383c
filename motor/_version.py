__version__ = "3.8.0.dev0"
