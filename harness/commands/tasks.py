"""`harness` commands of the tasks stage."""


def register(app) -> None:
    pass
