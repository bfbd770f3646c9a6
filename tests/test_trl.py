"""A package trains through trl.SFTTrainer, both as a pre-tokenized dataset (dsc's labels used as they are) and as
prompt-completion text, on a tiny random Llama sized to the package's tokenizer: the session's tiny byte-level BPE
tokenizer (conftest's tiny_tokenizer), so a step is not spent on a 151k-row output layer. The README's TRL example
(test_readme.py runs it) trains the same way on a Qwen3 package."""

from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
trl = pytest.importorskip("trl")

from conftest import tiny_llama_config  # noqa: E402

import dsc  # noqa: E402

STEPS = 4


@pytest.fixture(scope="module")
def package(tmp_path_factory: pytest.TempPathFactory, tiny_tokenizer: Path) -> Path:
    out = tmp_path_factory.mktemp("trl") / "gorilla"
    spec = Path(__file__).parent.parent / "formats" / "gorilla.yaml"
    return dsc.build(spec, output=out, limit=12, lengths={"max_length": 320}, tokenizer=str(tiny_tokenizer)).path


@pytest.fixture(scope="module")
def tokenizer(tiny_tokenizer: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(tiny_tokenizer))


def _trainer(tokenizer, dataset, out: Path):
    from transformers import LlamaForCausalLM

    torch.manual_seed(0)
    config = tiny_llama_config(tokenizer)
    args = trl.SFTConfig(
        output_dir=str(out),
        max_steps=STEPS,
        per_device_train_batch_size=2,
        learning_rate=5e-3,
        logging_steps=1,
        report_to=[],
        save_strategy="no",
        use_cpu=True,
        disable_tqdm=True,
        max_length=None,
        seed=0,
    )
    return trl.SFTTrainer(model=LlamaForCausalLM(config), args=args, train_dataset=dataset, processing_class=tokenizer)


def _losses(trainer) -> list[float]:
    return [h["loss"] for h in trainer.state.log_history if "loss" in h]


def test_sft_trainer_trains_on_the_pre_tokenized_package_with_its_labels(package: Path, tokenizer, tmp_path: Path):
    dataset, manifest = dsc.load(package, split="train")
    assert manifest["tokenizer"]["eos_id"] == tokenizer.eos_token_id  # the model's tokenizer is the package's
    rows = dataset.select(range(4))
    trainer = _trainer(tokenizer, rows, tmp_path)
    assert trainer.train_dataset["labels"] == rows["labels"]  # TRL keeps dsc's masks, does not rebuild them
    assert trainer.train_dataset["input_ids"] == rows["input_ids"]

    # TRL's own collator and dsc.collator make the same batch: pad id in input_ids, -100 in labels.
    examples = [trainer.train_dataset[i] for i in range(2)]
    theirs = trainer.data_collator(examples)
    ours = dsc.collator(tokenizer)([rows[0], rows[1]])
    assert torch.equal(theirs["input_ids"], ours["input_ids"]) and torch.equal(theirs["labels"], ours["labels"])
    short = min(range(2), key=lambda i: len(rows[i]["input_ids"]))
    pad_from = len(rows[short]["input_ids"])
    assert pad_from < ours["input_ids"].shape[1]
    assert (ours["input_ids"][short, pad_from:] == tokenizer.pad_token_id).all()
    assert (ours["labels"][short, pad_from:] == -100).all() and (ours["attention_mask"][short, pad_from:] == 0).all()

    trainer.train()
    losses = _losses(trainer)
    assert len(losses) == STEPS and all(loss == loss for loss in losses)  # finite: no NaN
    assert losses[-1] < losses[0]


def test_sft_trainer_trains_on_the_package_as_prompt_completion_text(package: Path, tokenizer, tmp_path: Path):
    dataset, _ = dsc.load(package, split="train")
    text = dataset.select(range(4)).select_columns(["prompt", "response"]).rename_column("response", "completion")
    trainer = _trainer(tokenizer, text, tmp_path)
    for row, source in zip(trainer.train_dataset, text, strict=True):
        labels = row["labels"]
        first = next(i for i, label in enumerate(labels) if label != -100)
        assert first > 0 and all(label != -100 for label in labels[first:])  # prompt masked, the rest trained
        assert labels[first:] == row["input_ids"][first:]
        decoded = tokenizer.decode(labels[first:])
        assert decoded.endswith(source["completion"] + tokenizer.eos_token)  # the completion and EOS are
        assert source["prompt"].strip() not in decoded
    trainer.train()
    losses = _losses(trainer)
    assert len(losses) == STEPS and losses[-1] < losses[0]
