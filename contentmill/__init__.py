"""contentmill: text, speech and video generation with AI models at a cost you can predict."""

__version__ = "0.1.0"
