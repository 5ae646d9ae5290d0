"""Preparers of the tasks beyond product_review register themselves on import here."""
