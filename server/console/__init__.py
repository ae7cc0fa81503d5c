"""The web console at ``/ui``: static pages (inbox, chat, runs, governance) and their reads.

The pages are plain HTML, CSS and ES modules shipped as package data (``static/``): nothing is
built or downloaded. They call the same API as any client, with the same credentials; the few
reads the API lacks (the approval inbox across threads, role versions) live in
:mod:`server.console.routes` under ``/ui/api``, each behind its own auth decision.
"""

from server.console.routes import router

__all__ = ["router"]
