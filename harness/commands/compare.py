"""`harness` commands of the compare stage."""


def register(app) -> None:
    pass
