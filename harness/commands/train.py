"""`harness` commands of the train stage."""


def register(app) -> None:
    pass
