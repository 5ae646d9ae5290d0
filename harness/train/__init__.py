"""Train stage: LoRA / QLoRA adapters (recipe.py), training-data curation (curate.py) and the
examples the trainer sees (examples.py).

    from harness.train.recipe import train
    train(model="smollm2-135m-instruct", task="product_review", data="demo", max_steps=20)
"""
