"""Training examples: a task record -> the text the model sees (the task's prompt builder,
harness.tasks.build_example, then the chat template) -> token ids with the loss mask."""
from __future__ import annotations


def format_example(tokenizer, prompt: str, target: str | None, chat: bool) -> tuple[str, str]:
    """(prefix, completion) as the model sees them: with the chat template for instruct models
    (user turn = prompt, assistant turn = target), else plain text completion.
    The loss of the trainer covers `completion` only."""
    if chat:
        msgs = [{"role": "user", "content": prompt}]
        prefix = tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
        if target is None:
            return prefix, ""
        full = tokenizer.apply_chat_template(
            msgs + [{"role": "assistant", "content": target.strip()}], tokenize=False)
        if not full.startswith(prefix):  # templates that rewrite earlier turns
            return prefix, target.strip() + (tokenizer.eos_token or "")
        return prefix, full[len(prefix):]
    return prompt, ("" if target is None else target + (tokenizer.eos_token or ""))
