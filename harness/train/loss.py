"""The loss: backbone -> output layer on the response positions only (the vocab-wide logits
of prompt tokens are never computed)."""
from __future__ import annotations

from typing import Callable

import torch

from .examples import IGNORE


# ==== 6. loss: the output layer on response positions only ==================================

# config attribute -> how the model post-processes its logits (applied when set)
LOGIT_TRANSFORMS: dict[str, Callable] = {
    "final_logit_softcapping": lambda x, c: (x / c).tanh() * c,   # gemma 2/3
    "logit_scale": lambda x, s: x * s,                            # cohere
    "logits_scaling": lambda x, s: x / s,                         # granite
}


def right_padded(mask) -> bool:
    """Every row is 1s then 0s (collate pads on the right)."""
    return mask is not None and bool((mask[:, 1:] <= mask[:, :-1]).all())


class ResponseLoss(torch.nn.Module):
    """Sum of the cross-entropy over response tokens, and their count.

    The backbone runs on every token; the output layer (vocab-wide: 28M of SmolLM2's 135M
    parameters) only where a label is set. Wrapping the whole loss in one module lets
    accelerate/DDP wrap it unchanged."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def causal_lm(self):
        return self.model.get_base_model() if hasattr(self.model, "get_base_model") else self.model

    def forward(self, input_ids, attention_mask, labels):
        import torch.nn.functional as F

        lm = self.causal_lm()
        if right_padded(attention_mask):
            # Padding only at the end: under the causal mask no real token sees a pad, so the
            # padding mask changes nothing the loss reads. Without it, attention runs the
            # fused causal kernel instead of materialising a (batch, heads, T, T) mask.
            attention_mask = None
        hidden = lm.get_decoder()(input_ids=input_ids, attention_mask=attention_mask,
                                  use_cache=False).last_hidden_state
        targets = labels[:, 1:]
        keep = targets != IGNORE
        logits = lm.get_output_embeddings()(hidden[:, :-1][keep])
        conf = getattr(lm.config, "get_text_config", lambda: lm.config)()
        for attr, fn in LOGIT_TRANSFORMS.items():
            if getattr(conf, attr, None):
                logits = fn(logits, getattr(conf, attr))
        loss = F.cross_entropy(logits.float(), targets[keep], reduction="sum")
        return loss, keep.sum()
