"""The BentoML service (``service.py``) and what the ``package`` stage stores for it."""
