"""`harness` commands of the metrics stage."""


def register(app) -> None:
    pass
