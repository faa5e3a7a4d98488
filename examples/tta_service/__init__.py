"""A small TTA game service: FastAPI over SQLAlchemy, cached with tta-cache (see ``app.py``)."""
