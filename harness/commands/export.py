"""`harness` commands of the export stage."""


def register(app) -> None:
    pass
