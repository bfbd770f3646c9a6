"""`dsc.collator`: batches of package rows as padded tensors, with labels padded by -100 so padding is never trained."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dsc.compiler.encode import IGNORE

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class PackageCollator:
    """Right-pads `input_ids` with `pad_id`, `labels` with -100, and builds the `attention_mask`.

    Other columns (prompt, response, source_id) are dropped: a trainer's model takes tensors only."""

    pad_id: int
    pad_to_multiple_of: int | None = None

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        import torch

        longest = max(len(row["input_ids"]) for row in rows)
        if self.pad_to_multiple_of:
            longest = -(-longest // self.pad_to_multiple_of) * self.pad_to_multiple_of
        input_ids = torch.full((len(rows), longest), self.pad_id, dtype=torch.long)
        labels = torch.full((len(rows), longest), IGNORE, dtype=torch.long)
        attention_mask = torch.zeros((len(rows), longest), dtype=torch.long)
        for i, row in enumerate(rows):
            n = len(row["input_ids"])
            input_ids[i, :n] = torch.as_tensor(row["input_ids"], dtype=torch.long)
            labels[i, :n] = torch.as_tensor(row.get("labels", row["input_ids"]), dtype=torch.long)
            attention_mask[i, :n] = 1
        return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


def collator(tokenizer: Any, *, pad_to_multiple_of: int | None = None) -> PackageCollator:
    """A data collator for a trainer (`Trainer(data_collator=dsc.collator(tokenizer))`).

    `tokenizer` is a transformers tokenizer, a tokenizer dsc loaded, or a pad id. Its pad token pads `input_ids`;
    one without a pad token (Llama) pads with its EOS id, which is safe because padded positions are masked out of
    attention and have label -100."""
    if isinstance(tokenizer, int):
        return PackageCollator(tokenizer, pad_to_multiple_of)
    for pad_attr, eos_attr in (("pad_token_id", "eos_token_id"), ("pad_id", "eos_id")):
        if hasattr(tokenizer, pad_attr) or hasattr(tokenizer, eos_attr):
            pad = getattr(tokenizer, pad_attr, None)
            pad = pad if pad is not None else getattr(tokenizer, eos_attr, None)
            if pad is None:
                break
            return PackageCollator(int(pad), pad_to_multiple_of)
    raise TypeError(
        f"dsc.collator needs a tokenizer with a pad or EOS token id, or a pad id; got {type(tokenizer).__name__}"
    )
