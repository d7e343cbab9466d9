"""The web app served by ``contentmill serve`` beside the API: the operators' dashboard at ``/`` and the pages
other modules add (``pages.py`` installs them). ``site.py`` is the frame: routes, who is looking (bearer key or
signed session cookie), templates and static files shipped in the package, no CDN (docs/web.md)."""

from contentmill.server.web.site import ANYONE_SIGNED_IN, OPERATORS, Viewer, Web, form, query, redirect

__all__ = ["ANYONE_SIGNED_IN", "OPERATORS", "Viewer", "Web", "form", "query", "redirect"]
