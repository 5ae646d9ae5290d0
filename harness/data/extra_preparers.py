"""Preparers of the tasks beyond product_review register themselves on import here."""
from . import department, nextitem  # noqa: F401,E402  (product_department, product_aisle, product_nextitem)
