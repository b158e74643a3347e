"""Teachers: any Hugging Face sequence classifier (UniXcoder, ModernBERT, MiniLM, ...) behind the student interface.

``Teacher.load`` takes a hub id or a local folder. Offline (``HF_HUB_OFFLINE=1``, as on the cluster) a model that is
neither a folder nor in the Hugging Face cache raises ``ModelNotAvailableError`` at once, naming the id and how to
make it available. A checkpoint whose classification head has another label count (or none: a pretrained encoder)
gets a fresh head of ``num_labels`` outputs (``ignore_mismatched_sizes=True``): fine-tuning trains it.

Input forms (``Teacher.encode``):

- ``"unixcoder"`` (``"auto"`` picks it when the id or folder name contains "unixcoder"): UniXcoder's encoder-only
  mode, ``<s> <encoder-only> </s> code </s>``, as in the UniXcoder repository. A pair (clone detection) becomes one
  sequence ``<s> <encoder-only> </s> code </s></s> code2 </s>``, truncated longest-first: the RoBERTa sentence-pair
  template (two ``</s>`` between the sides) with UniXcoder's mode prefix, as the study authors build it
  (BackOnTruck/kd-empirical ``teacher-ft/dataset_clone.py``: the tokenizer's pair encoding, then ``<encoder-only>
  </s>`` inserted after ``<s>``).
- ``"default"``: the tokenizer's own encoding of ``(text, text_pair)``, e.g. ``[CLS] a [SEP] b [SEP]`` for BERT.

Only ``input_ids`` and ``attention_mask`` reach the model (the student interface), so BERT-style segment ids stay 0
for both sides of a pair; RoBERTa-family and ModernBERT models have no segment embeddings to miss.

Features: Hugging Face ``hidden_states`` (embedding output first, then each layer; checked for ModernBERT too, whose
last entry is after its final norm), ``cls_states[l] = hidden_states[l][:, 0]``.

A saved teacher folder (``Teacher.save``) holds ``model.safetensors``, ``config.json``, the tokenizer files and
``teacher.json`` (input form, label count, source), so a fine-tuned teacher keeps its input form under any name.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from transformers import AutoModelForSequenceClassification, AutoTokenizer, PreTrainedModel

from kd_methods.base import ModelShape, SignalSpec, StudentOutput, TeacherSignals
from models.offline import ModelNotAvailableError, hub_local_only, hub_offline, minilm_path
from models.roberta import hf_student_output
from tasks.base import Example

INPUT_FORMS = ("auto", "unixcoder", "default")
TEACHER_FILE = "teacher.json"
ENCODER_ONLY = "<encoder-only>"


def resolve_input_form(name_or_path: str | Path, input_form: str = "auto") -> str:
    if input_form not in INPUT_FORMS:
        raise ValueError(f"unknown input_form '{input_form}'; valid: {list(INPUT_FORMS)}")
    if input_form != "auto":
        return input_form
    return "unixcoder" if "unixcoder" in str(name_or_path).lower() else "default"


def _looks_like_path(id_or_path: str) -> bool:
    # Hub ids are "name" or "org/name"; anything with more parts, or anchored like a path, is meant as a folder.
    return id_or_path.startswith(("/", ".", "~")) or id_or_path.count("/") > 1 or "\\" in id_or_path


def _not_available(id_or_path: str, cause: BaseException | None) -> ModelNotAvailableError:
    from huggingface_hub import constants

    if hub_offline():
        mode = "offline mode (HF_HUB_OFFLINE=1)"
    else:
        mode = "the hub (it does not answer)" if hub_local_only() else "the hub"
    reason = f" ({type(cause).__name__}: {str(cause).splitlines()[0]})" if cause else ""
    return ModelNotAvailableError(
        f"teacher model '{id_or_path}' is not available: it is not a local folder and could not be loaded from "
        f"{mode} or the Hugging Face cache at {constants.HF_HUB_CACHE}{reason}. To make it available, download it "
        f"once on a machine with network access: `hf download {id_or_path}` with HF_HOME pointing at a cache this "
        f"machine reads, or save it to a folder (config.json, model.safetensors, tokenizer files) and pass that "
        f"folder's path instead."
    )


def _truncate_pair(a: list[int], b: list[int], budget: int) -> tuple[list[int], list[int]]:
    """Longest-first truncation of two id lists to ``budget`` ids in all (the first side keeps the odd one)."""
    if len(a) + len(b) <= budget:
        return a, b
    short, half = min(len(a), len(b)), budget // 2
    if short <= half:
        return (a, b[: budget - len(a)]) if len(a) <= len(b) else (a[: budget - len(b)], b)
    return a[: budget - half], b[:half]


class Teacher(nn.Module):
    """A Hugging Face sequence classifier and its tokenizer, with ``encode``/``forward``/``signals``."""

    def __init__(
        self, model: PreTrainedModel, tokenizer: Any, name_or_path: str, input_form: str = "auto"
    ) -> None:
        super().__init__()
        self.model = model
        self.tokenizer = tokenizer
        self.name_or_path = str(name_or_path)
        self.input_form = resolve_input_form(self.name_or_path, input_form)
        config = model.config
        self.shape = ModelShape(num_layers=config.num_hidden_layers, hidden_size=config.hidden_size)
        pad = tokenizer.pad_token_id
        if pad is None:
            pad = config.pad_token_id
        if pad is None:
            raise ValueError(f"teacher '{name_or_path}' has no pad token in its tokenizer or config")
        self.pad_id: int = int(pad)
        if self.input_form == "unixcoder":
            self._unixcoder_ids()  # fail at load, not at the first batch

    @property
    def num_labels(self) -> int:
        return int(self.model.config.num_labels)

    @classmethod
    def load(
        cls,
        id_or_path: str | Path,
        num_labels: int,
        trust_remote_code: bool = False,
        input_form: str = "auto",
    ) -> Teacher:
        """Load a teacher from a hub id or a local folder, with a ``num_labels`` head (new if the sizes differ).

        ``trust_remote_code`` stays False unless the caller turns it on: a checkpoint's own Python code runs only
        then. ``input_form="auto"`` takes a saved teacher's recorded form, else guesses from the name.
        """
        source = str(id_or_path)
        local = Path(source).expanduser()
        is_local = local.is_dir()
        if not is_local and _looks_like_path(source):
            raise ModelNotAvailableError(f"teacher folder '{source}' does not exist")
        load_from = str(local) if is_local else source
        if input_form == "auto" and is_local and (local / TEACHER_FILE).is_file():
            input_form = json.loads((local / TEACHER_FILE).read_text()).get("input_form", "auto")
        # local_files_only when offline or the hub does not answer, whatever huggingface_hub read at import: no
        # network attempt, no retries (a missing model fails at once).
        local_only = is_local or hub_local_only()
        kwargs: dict[str, Any] = {"trust_remote_code": trust_remote_code, "local_files_only": local_only}
        try:
            tokenizer = AutoTokenizer.from_pretrained(load_from, **kwargs)
            model = AutoModelForSequenceClassification.from_pretrained(
                load_from, num_labels=num_labels, ignore_mismatched_sizes=True, **kwargs
            )
        except OSError as err:
            if is_local:
                raise
            raise _not_available(source, err) from err
        # Some checkpoints are stored in half precision; training and the signal cache work in float32.
        if any(p.dtype != torch.float32 for p in model.parameters()):
            model = model.float()
        return cls(model, tokenizer, source, input_form)

    def save(self, directory: str | Path) -> Path:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.model.save_pretrained(directory)
        self.tokenizer.save_pretrained(directory)
        info = {"input_form": self.input_form, "num_labels": self.num_labels, "source": self.name_or_path}
        (directory / TEACHER_FILE).write_text(json.dumps(info, indent=2))
        return directory

    # -- encoding ------------------------------------------------------------------------------------------------

    def _unixcoder_ids(self) -> tuple[int, int, int]:
        tok = self.tokenizer
        cls_id = tok.cls_token_id if tok.cls_token_id is not None else tok.bos_token_id
        sep_id = tok.sep_token_id if tok.sep_token_id is not None else tok.eos_token_id
        mode_id = tok.convert_tokens_to_ids(ENCODER_ONLY)
        if cls_id is None or sep_id is None:
            raise ValueError(
                f"teacher '{self.name_or_path}': tokenizer lacks <s>/</s> for the unixcoder input form"
            )
        if mode_id is None or mode_id == tok.unk_token_id:
            raise ValueError(
                f"teacher '{self.name_or_path}': input form 'unixcoder' needs a {ENCODER_ONLY} token, which its "
                f"tokenizer lacks; pass input_form='default' for a non-UniXcoder model"
            )
        return int(cls_id), int(mode_id), int(sep_id)

    def _token_ids(self, texts: list[str], max_length: int) -> list[list[int]]:
        # Truncating here keeps tokenization of very long files cheap; the final cut happens when assembling.
        if not texts:
            return []
        return self.tokenizer(texts, add_special_tokens=False, truncation=True, max_length=max_length)[
            "input_ids"
        ]

    def _encode_unixcoder(self, examples: Sequence[Example], max_length: int) -> list[list[int]]:
        cls_id, mode_id, sep_id = self._unixcoder_ids()
        prefix = [cls_id, mode_id, sep_id]
        firsts = self._token_ids([ex.code for ex in examples], max_length)
        paired = [i for i, ex in enumerate(examples) if ex.code2 is not None]
        seconds = dict(zip(paired, self._token_ids([examples[i].code2 or "" for i in paired], max_length)))
        out: list[list[int]] = []
        for i, first in enumerate(firsts):
            if i in seconds:  # RoBERTa's pair template: a </s></s> b </s>
                a, b = _truncate_pair(first, seconds[i], max_length - len(prefix) - 3)
                out.append(prefix + a + [sep_id, sep_id] + b + [sep_id])
            else:
                out.append(prefix + first[: max_length - len(prefix) - 1] + [sep_id])
        return out

    def _encode_default(self, examples: Sequence[Example], max_length: int) -> list[list[int]]:
        out: dict[int, list[int]] = {}
        singles = [i for i, ex in enumerate(examples) if ex.code2 is None]
        pairs = [i for i, ex in enumerate(examples) if ex.code2 is not None]
        common: dict[str, Any] = {"truncation": "longest_first", "max_length": max_length}
        if singles:
            ids = self.tokenizer([examples[i].code for i in singles], **common)["input_ids"]
            out.update(zip(singles, ids))
        if pairs:
            firsts = [examples[i].code for i in pairs]
            seconds = [examples[i].code2 or "" for i in pairs]
            out.update(zip(pairs, self.tokenizer(firsts, seconds, **common)["input_ids"]))
        return [out[i] for i in range(len(examples))]

    @property
    def max_tokens(self) -> int:
        """The longest input the model takes: its position embeddings, less RoBERTa's padding offset."""
        cfg = self.model.config
        positions = getattr(cfg, "max_position_embeddings", None) or 10**9
        if cfg.model_type in ("roberta", "xlm-roberta", "camembert"):
            positions -= (cfg.pad_token_id or 0) + 1
        return int(positions)

    def encode(self, examples: Sequence[Example], max_length: int) -> list[list[int]]:
        """Token ids per example in the teacher's input form, at most ``max_length`` each."""
        if max_length < 6:
            raise ValueError(f"max_length {max_length} leaves no room for text next to the special tokens")
        # A longer request than the model has positions for (e.g. a student's max length of 512 on a smaller
        # teacher) would index past its position embeddings: cut to what the model takes.
        max_length = min(max_length, self.max_tokens)
        if self.input_form == "unixcoder":
            return self._encode_unixcoder(examples, max_length)
        return self._encode_default(examples, max_length)

    # -- model ---------------------------------------------------------------------------------------------------

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> StudentOutput:
        out = self.model(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True)
        return hf_student_output(out, attention_mask)

    def signals(self, input_ids: Tensor, attention_mask: Tensor, spec: SignalSpec) -> TeacherSignals:
        """Exactly the signals ``spec`` names. The caller sets eval mode and ``torch.no_grad()``."""
        valid = range(self.shape.num_layers + 1)
        bad = [layer for layer in (*spec.cls_layers, *spec.token_layers) if layer not in valid]
        if bad:
            raise ValueError(
                f"teacher '{self.name_or_path}' has layers 0..{self.shape.num_layers}; asked for {sorted(set(bad))}"
            )
        need_states = bool(spec.cls_layers or spec.token_layers)
        out = self.model(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=need_states)
        states = out.hidden_states if need_states else ()
        return TeacherSignals(
            logits=out.logits if spec.logits else None,
            cls={layer: states[layer][:, 0] for layer in spec.cls_layers},
            tokens={layer: states[layer] for layer in spec.token_layers},
            token_mask=attention_mask if spec.token_layers else None,
        )


# -- offline models for tests, the smoke study and benchmarks ------------------------------------------------------


def _default_tokenizer_texts() -> list[str]:
    """Real code available offline everywhere: a few standard-library modules' sources."""
    import argparse
    import dataclasses
    import json as json_module
    import textwrap

    return [
        Path(module.__file__).read_text()
        for module in (argparse, dataclasses, json_module, textwrap)
        if module.__file__
    ]


def create_random_teacher(
    out_dir: str | Path,
    arch: str = "roberta",
    num_layers: int = 2,
    hidden_size: int = 64,
    num_heads: int = 2,
    intermediate_size: int = 128,
    tokenizer_texts: list[str] | None = None,
    vocab_size: int = 1000,
    num_labels: int = 2,
    max_length: int = 512,
    input_form: str | None = None,
    seed: int = 0,
) -> Path:
    """Write a randomly initialised teacher folder that ``Teacher.load`` reads; returns ``out_dir``.

    ``arch``: ``"roberta"`` (a byte-level BPE tokenizer trained on ``tokenizer_texts``, default: some standard
    library sources), ``"bert"`` or ``"modernbert"`` (both reuse MiniLM's WordPiece tokenizer). The embedding table
    has ``max(vocab_size, tokenizer size)`` rows, so ``vocab_size=50265`` gives roberta-base's parameter count
    (for timing) even though a small corpus yields fewer tokens. ``input_form`` is recorded in ``teacher.json``
    when given; otherwise ``Teacher.load`` guesses from the folder name as for a hub model. A unixcoder-form
    RoBERTa teacher gets the ``<encoder-only>`` token.
    """
    from transformers import BertConfig, ModernBertConfig, RobertaConfig

    from models.tokenizer import hf_tokenizer, train_bpe

    out = Path(out_dir)
    form = resolve_input_form(out.name, input_form or "auto")
    if arch == "roberta":
        bpe = train_bpe(tokenizer_texts or _default_tokenizer_texts(), vocab_size)
        if form == "unixcoder":
            bpe.add_special_tokens([ENCODER_ONLY])
        tokenizer = hf_tokenizer(bpe, model_max_length=max_length)
        config: Any = RobertaConfig(
            vocab_size=max(vocab_size, len(tokenizer)),
            hidden_size=hidden_size,
            num_hidden_layers=num_layers,
            num_attention_heads=num_heads,
            intermediate_size=intermediate_size,
            # RoBERTa numbers positions from pad_token_id + 1.
            max_position_embeddings=max_length + tokenizer.pad_token_id + 1,
            type_vocab_size=1,
            pad_token_id=tokenizer.pad_token_id,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            num_labels=num_labels,
        )
    elif arch in ("bert", "modernbert"):
        tokenizer = AutoTokenizer.from_pretrained(minilm_path())
        common = {
            "vocab_size": max(vocab_size, len(tokenizer)),
            "hidden_size": hidden_size,
            "num_hidden_layers": num_layers,
            "num_attention_heads": num_heads,
            "intermediate_size": intermediate_size,
            "max_position_embeddings": max_length,
            "pad_token_id": tokenizer.pad_token_id,
            "num_labels": num_labels,
        }
        if arch == "bert":
            config = BertConfig(**common)
        else:
            config = ModernBertConfig(
                **common,
                bos_token_id=tokenizer.cls_token_id,
                eos_token_id=tokenizer.sep_token_id,
                cls_token_id=tokenizer.cls_token_id,
                sep_token_id=tokenizer.sep_token_id,
            )
    else:
        raise ValueError(f"unknown teacher arch '{arch}'; valid: ['bert', 'modernbert', 'roberta']")

    # A fixed seed without disturbing the caller's random state.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AutoModelForSequenceClassification.from_config(config)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    if input_form is not None:
        info = {"input_form": form, "num_labels": num_labels, "source": f"random-{arch}"}
        (out / TEACHER_FILE).write_text(json.dumps(info, indent=2))
    return out
