"""Hub stand-ins for the study's teachers, written into a Hugging Face cache as a download of the real
repositories leaves them, so ``from_pretrained(<hub id>)`` loads them offline through the project's own calls.

What each keeps of the real repository (docs/HUB.md has the sources):

* ``microsoft/unixcoder-base``: a RoBERTa (``RobertaModel`` weights in ``pytorch_model.bin``, no safetensors on
  the hub's main branch), ``max_position_embeddings`` 1026, ``type_vocab_size`` 10, pad/bos/eos 1/0/2; a slow-style
  byte-level BPE (``vocab.json``, ``merges.txt``, ``RobertaTokenizer``) whose vocabulary holds ``<encoder-only>``
  at id 6 (the id the study authors' code inserts), with ``<s> <pad> </s> <unk>`` at 0..3;
* ``answerdotai/ModernBERT-base``: a ``ModernBertForMaskedLM`` (safetensors) with global attention every 3rd
  layer and a 128-token local window; a ``tokenizer.json`` with ``[CLS] a [SEP] b [SEP]`` pairs and no
  ``token_type_ids`` (``model_input_names``);
* ``microsoft/CodeGPT-small-py``: a GPT-2 (``pytorch_model.bin``) with bos/pad/eos 0/1/2 in ``vocab.json``,
  ``<EOL>`` in ``added_tokens.json`` (the last embedding row) and a ``tokenizer_config.json`` naming
  ``<|UNKNOWN|>`` as the unknown token although no file defines it, so ``transformers`` appends it at load and the
  tokenizer is one longer than the embeddings: what ``models.lm_teacher.load_codexglue_teacher`` has to handle.

Tiny by default (2 layers of 32). ``real_shapes=True`` writes each repository's real ``config.json`` (and the
stand-in tokenizer) without weights: enough for shape-driven work (the plan's calibration builds random-weight
models from configs) on a machine without the hub. ``python -m models.hub_standin --hf-home DIR`` writes the
datasets (tasks/hub_standin.py) and the teachers.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

UNIXCODER = "microsoft/unixcoder-base"
MODERNBERT = "answerdotai/ModernBERT-base"
CODEGPT = "microsoft/CodeGPT-small-py"
HUB_MODELS = (UNIXCODER, MODERNBERT, CODEGPT)

# The hubs' config.json values that shape a model (docs/HUB.md lists where each was read).
REAL_CONFIGS: dict[str, dict[str, Any]] = {
    UNIXCODER: {
        "architectures": ["RobertaModel"],
        "model_type": "roberta",
        "attention_probs_dropout_prob": 0.1,
        "hidden_dropout_prob": 0.1,
        "hidden_act": "gelu",
        "hidden_size": 768,
        "intermediate_size": 3072,
        "num_attention_heads": 12,
        "num_hidden_layers": 12,
        "max_position_embeddings": 1026,
        "type_vocab_size": 10,
        "vocab_size": 51416,
        "layer_norm_eps": 1e-05,
        "initializer_range": 0.02,
        "pad_token_id": 1,
        "bos_token_id": 0,
        "eos_token_id": 2,
        "position_embedding_type": "absolute",
    },
    MODERNBERT: {
        "architectures": ["ModernBertForMaskedLM"],
        "model_type": "modernbert",
        "hidden_size": 768,
        "intermediate_size": 1152,
        "num_attention_heads": 12,
        "num_hidden_layers": 22,
        "max_position_embeddings": 8192,
        "vocab_size": 50368,
        "global_attn_every_n_layers": 3,
        "local_attention": 128,
        "global_rope_theta": 160000.0,
        "local_rope_theta": 10000.0,
        "hidden_activation": "gelu",
        "norm_eps": 1e-05,
        "norm_bias": False,
        "attention_bias": False,
        "mlp_bias": False,
        "classifier_pooling": "mean",
        "tie_word_embeddings": True,
        "pad_token_id": 50283,
        "bos_token_id": 50281,
        "eos_token_id": 50282,
        "cls_token_id": 50281,
        "sep_token_id": 50282,
    },
    CODEGPT: {
        "architectures": ["GPT2LMHeadModel"],
        "model_type": "gpt2",
        "activation_function": "gelu_new",
        "n_embd": 768,
        "n_head": 12,
        "n_layer": 12,
        "n_positions": 1024,
        "n_ctx": 1024,
        "vocab_size": 50001,
        "layer_norm_epsilon": 1e-05,
        "resid_pdrop": 0.1,
        "embd_pdrop": 0.1,
        "attn_pdrop": 0.1,
        "pad_token_id": 1,
        "bos_token_id": 0,
        "eos_token_id": 2,
    },
}
UNIXCODER_SPECIALS = (
    "<s>",
    "<pad>",
    "</s>",
    "<unk>",
    "<mask>",
    "<encoder-decoder>",
    "<encoder-only>",
    "<decoder-only>",
)
MODERNBERT_SPECIALS = ("[UNK]", "[CLS]", "[SEP]", "[PAD]", "[MASK]")
CODEGPT_SPECIALS = ("<s>", "<pad>", "</s>")
# CodeGPT-small-py's tokenizer_config.json on the hub, as it is (175 bytes).
CODEGPT_TOKENIZER_CONFIG = {
    "sep_token": "<EOL>",
    "bos_token": "<s>",
    "eos_token": "</s>",
    "pad_token": "<pad>",
    "unk_token": "<|UNKNOWN|>",
    "special_tokens_map_file": None,
    "full_tokenizer_file": None,
}
TINY = {"layers": 2, "hidden": 32, "heads": 2, "intermediate": 64}


def default_texts() -> list[str]:
    """Real code available offline everywhere: a few standard-library modules' sources."""
    import argparse as a
    import dataclasses
    import json as j
    import textwrap

    return [Path(m.__file__).read_text() for m in (a, dataclasses, j, textwrap) if m.__file__]


def _bpe(texts: Iterable[str], specials: Sequence[str], vocab_size: int = 600) -> Any:
    from tokenizers import Tokenizer, decoders, pre_tokenizers, trainers
    from tokenizers import models as bpe_models

    bpe = Tokenizer(bpe_models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=list(specials),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(texts, trainer=trainer)
    return bpe


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=2) + "\n")


def _save_bin(model: Any, folder: Path) -> None:
    """``pytorch_model.bin`` and ``config.json``, as the hub's older repositories hold them."""
    import torch

    model.config.save_pretrained(folder)
    torch.save({k: v.contiguous() for k, v in model.state_dict().items()}, folder / "pytorch_model.bin")


def unixcoder_files(texts: Sequence[str], real_shapes: bool = False) -> dict[str, bytes]:
    bpe = _bpe(texts, UNIXCODER_SPECIALS)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        bpe.model.save(tmp)  # vocab.json + merges.txt, the specials as ordinary vocabulary entries
        roles = {"bos_token": "<s>", "eos_token": "</s>", "sep_token": "</s>", "cls_token": "<s>",
                 "unk_token": "<unk>", "pad_token": "<pad>", "mask_token": "<mask>"}  # fmt: skip
        _write_json(folder / "tokenizer_config.json", {"errors": "replace", "add_prefix_space": False, **roles,
                                                        "tokenizer_class": "RobertaTokenizer"})  # fmt: skip
        _write_json(folder / "special_tokens_map.json", roles)
        if real_shapes:
            _write_json(folder / "config.json", REAL_CONFIGS[UNIXCODER])
            return _files(folder)
        from transformers import RobertaConfig, RobertaModel

        real = REAL_CONFIGS[UNIXCODER]
        config = RobertaConfig(
            vocab_size=bpe.get_vocab_size(),
            hidden_size=TINY["hidden"],
            num_hidden_layers=TINY["layers"],
            num_attention_heads=TINY["heads"],
            intermediate_size=TINY["intermediate"],
            **{
                k: real[k]
                for k in (
                    "max_position_embeddings",
                    "type_vocab_size",
                    "pad_token_id",
                    "bos_token_id",
                    "eos_token_id",
                    "layer_norm_eps",
                    "architectures",
                )
            },  # fmt: skip
        )
        _save_bin(RobertaModel(config, add_pooling_layer=True), folder)
        return _files(folder)


def modernbert_files(texts: Sequence[str], real_shapes: bool = False) -> dict[str, bytes]:
    from tokenizers import processors
    from transformers import PreTrainedTokenizerFast

    bpe = _bpe(texts, MODERNBERT_SPECIALS)
    cls_id, sep_id = bpe.token_to_id("[CLS]"), bpe.token_to_id("[SEP]")
    bpe.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B [SEP]",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        unk_token="[UNK]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        pad_token="[PAD]",
        mask_token="[MASK]",
        model_input_names=["input_ids", "attention_mask"],  # ModernBERT has no token_type_ids
        model_max_length=8192,
    )
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        tokenizer.save_pretrained(folder)
        if real_shapes:
            _write_json(folder / "config.json", REAL_CONFIGS[MODERNBERT])
            return _files(folder)
        from transformers import ModernBertConfig, ModernBertForMaskedLM

        real = REAL_CONFIGS[MODERNBERT]
        keep = ("global_attn_every_n_layers", "local_attention", "global_rope_theta", "local_rope_theta",
                "max_position_embeddings", "classifier_pooling", "architectures")  # fmt: skip
        config = ModernBertConfig(
            vocab_size=len(tokenizer),
            hidden_size=TINY["hidden"],
            num_hidden_layers=3,  # one global-attention layer and two local ones, as the 3-layer period has
            num_attention_heads=TINY["heads"],
            intermediate_size=TINY["intermediate"],
            pad_token_id=tokenizer.pad_token_id,
            bos_token_id=cls_id,
            eos_token_id=sep_id,
            cls_token_id=cls_id,
            sep_token_id=sep_id,
            **{k: real[k] for k in keep},
        )
        ModernBertForMaskedLM(config).save_pretrained(folder)
        return _files(folder)


def codegpt_files(texts: Sequence[str], real_shapes: bool = False) -> dict[str, bytes]:
    bpe = _bpe(texts, CODEGPT_SPECIALS)
    n = bpe.get_vocab_size()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        bpe.model.save(tmp)
        _write_json(folder / "added_tokens.json", {"<EOL>": n})
        _write_json(folder / "tokenizer_config.json", CODEGPT_TOKENIZER_CONFIG)
        _write_json(
            folder / "special_tokens_map.json", {k: v for k, v in CODEGPT_TOKENIZER_CONFIG.items() if v}
        )
        if real_shapes:
            _write_json(folder / "config.json", REAL_CONFIGS[CODEGPT])
            return _files(folder)
        from transformers import GPT2Config, GPT2LMHeadModel

        real = REAL_CONFIGS[CODEGPT]
        config = GPT2Config(
            vocab_size=n + 1,  # the BPE plus <EOL>, as the hub's 50,000 + 1; <|UNKNOWN|> has no row
            n_embd=TINY["hidden"],
            n_layer=TINY["layers"],
            n_head=TINY["heads"],
            **{
                k: real[k]
                for k in (
                    "n_positions",
                    "n_ctx",
                    "activation_function",
                    "pad_token_id",
                    "bos_token_id",
                    "eos_token_id",
                    "architectures",
                )
            },  # fmt: skip
        )
        _save_bin(GPT2LMHeadModel(config), folder)
        return _files(folder)


WRITERS = {UNIXCODER: unixcoder_files, MODERNBERT: modernbert_files, CODEGPT: codegpt_files}


def write_hub_models(
    hf_home: str | Path,
    texts: Sequence[str] | None = None,
    real_shapes: bool = False,
    repos: Iterable[str] = HUB_MODELS,
) -> dict[str, Path]:
    """Write the named teacher stand-ins into ``hf_home``'s hub cache; returns their snapshot folders. ``texts``
    (default: some standard-library sources) train the stand-in tokenizers."""
    import torch

    from tasks.hub_cache import hub_cache_root
    from tasks.hub_standin import write_hub_repo

    texts = list(texts) if texts else default_texts()
    out = {}
    for repo in repos:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            files = WRITERS[repo](texts, real_shapes)
        out[repo] = write_hub_repo(hub_cache_root(hf_home), repo, files, "model")
    return out


def main(argv: list[str] | None = None) -> int:
    from tasks.cli_errors import OneLineArgumentParser, fail

    parser: argparse.ArgumentParser = OneLineArgumentParser(
        prog="python -m models.hub_standin", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--hf-home", required=True, type=Path, help="the Hugging Face cache root to write")
    parser.add_argument(
        "--data", type=Path, help="a tasks.build_local folder (default: built under --hf-home)"
    )
    parser.add_argument("--real-shapes", action="store_true", help="real config.json files, no weights")
    args = parser.parse_args(argv)
    try:
        from tasks.build_local import build_local
        from tasks.hub_standin import write_hub_datasets

        data = args.data or args.hf_home / "kdstudy-local-data"
        if args.data is None:
            build_local(data)
        written = write_hub_datasets(args.hf_home, data, ["defect", "clone", "exception", "completion_line"])
        texts = [
            rec.get("func") or rec.get("func1") or rec["function"]
            for task in ("defect", "clone", "exception")
            for rec in map(json.loads, (data / task / "train.jsonl").open(encoding="utf-8"))
        ]
        written.update(write_hub_models(args.hf_home, texts, args.real_shapes))
    except (OSError, ValueError, RuntimeError) as exc:
        fail(exc)
    for repo, snapshot in written.items():
        print(f"{repo}: {snapshot}")
    print(f"use it with: HF_HOME={args.hf_home} HF_HUB_OFFLINE=1 ...")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
