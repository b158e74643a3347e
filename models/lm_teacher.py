"""Causal-LM teachers for the completion study: any ``AutoModelForCausalLM`` by hub id or folder, plus tiny ones.

``LMTeacher.load`` takes a hub id, an alias (``codegpt`` = ``microsoft/CodeGPT-small-py``) or a local folder. A model
that is neither a folder nor loadable (offline, not in the Hugging Face cache) fails at once with one line naming what
to download or set (``models.teacher.ModelNotAvailableError``, shared with the classification teachers).
``trust_remote_code`` stays off unless the caller turns it on.

Signals, in the ``kd_methods.base`` convention: ``hidden_states[l]`` for l = 0..L, where the last one is what the
output head reads (for GPT-2: after ``ln_f``; transformers ties ``hidden_states[-1]`` to ``last_hidden_state``). The
output head (``get_output_embeddings()``) is served as ``extras["lm_head.weight"]`` (and ``"lm_head.bias"`` when the
model has one), so a method can rebuild the logits from the final hidden state: what the exact LM cache stores.

``create_random_gpt2_teacher`` writes a tiny random GPT-2 teacher folder for tests, offline, with a byte-level BPE
code tokenizer (HF ``tokenizers``) holding CodeXGLUE's special tokens ``<s> </s> <EOL> <pad> <STR_LIT> <NUM_LIT>
<CHAR_LIT>``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel

from kd_methods.base import ModelShape, SignalSpec, StudentOutput, TeacherSignals
from models.offline import hub_local_only
from models.teacher import ModelNotAvailableError, _looks_like_path, _not_available

TEACHER_ALIASES = {"codegpt": "microsoft/CodeGPT-small-py"}
# CodeXGLUE's run_lm.py roles: bos <s>, eos </s>, sep <EOL>, pad <pad>; the literal placeholders are additional.
CODE_SPECIAL_TOKENS = ("<s>", "</s>", "<EOL>", "<pad>", "<STR_LIT>", "<NUM_LIT>", "<CHAR_LIT>")
HEAD_WEIGHT, HEAD_BIAS = "lm_head.weight", "lm_head.bias"


def resolve_lm_teacher(name: str) -> str:
    """An alias's hub id, else ``name`` unchanged."""
    return TEACHER_ALIASES.get(name.lower(), name)


class LMTeacher(nn.Module):
    """A causal LM and its tokenizer: ``encode_texts``, ``forward`` (student interface), ``signals``, ``head``."""

    def __init__(self, model: PreTrainedModel, tokenizer: Any, name_or_path: str) -> None:
        super().__init__()
        self.model = model
        self.tokenizer = tokenizer
        self.name_or_path = str(name_or_path)
        cfg = model.config
        self.shape = ModelShape(num_layers=int(cfg.num_hidden_layers), hidden_size=int(cfg.hidden_size))
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        if pad is None:
            raise ValueError(f"teacher '{name_or_path}' has neither a pad nor an eos token in its tokenizer")
        self.pad_id: int = int(pad)
        if len(tokenizer) > self.vocab_size:
            raise ValueError(
                f"teacher '{name_or_path}': its tokenizer has {len(tokenizer)} tokens but the model's output head "
                f"only {self.vocab_size}; resize the embeddings (model.resize_token_embeddings) and save it again"
            )

    @property
    def vocab_size(self) -> int:
        return int(self.model.get_output_embeddings().weight.shape[0])

    @property
    def max_positions(self) -> int:
        cfg = self.model.config
        return int(getattr(cfg, "n_positions", None) or getattr(cfg, "max_position_embeddings", 10**9))

    @classmethod
    def load(cls, id_or_path: str | Path, trust_remote_code: bool = False) -> LMTeacher:
        """Load from an alias, hub id or folder; offline a missing model fails in one line saying what to do.

        The tokenizer must fit the model's embeddings. A hub checkpoint that CodeXGLUE extends first (CodeGPT's
        tokenizer names an ``<|UNKNOWN|>`` its vocabulary lacks) goes through ``load_codexglue_teacher``."""
        model, tokenizer, source = load_lm_parts(id_or_path, trust_remote_code)
        return cls(model, tokenizer, source)

    def save(self, directory: str | Path) -> Path:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.model.save_pretrained(directory)
        self.tokenizer.save_pretrained(directory)
        return directory

    def add_special_tokens(self, tokens: Sequence[str], roles: dict[str, str] | None = None) -> int:
        """Add tokens the tokenizer lacks (e.g. CodeXGLUE's ``<STR_LIT:...>`` literals, as ``run_lm.py`` does) as
        special tokens, set the named ``roles`` (``{"sep_token": "<EOL>", ...}``), and grow the embeddings and
        head to the tokenizer; returns how many tokens were new. Do it before building students, caches or
        blocks: all of them depend on the vocabulary."""
        return extend_vocabulary(self.model, self.tokenizer, tokens, roles)

    def encode_texts(self, texts: Iterable[str]) -> list[list[int]]:
        """Token ids per text, no specials added (CodeXGLUE's files already carry ``<s>`` and ``</s>``)."""
        texts = list(texts)
        if not texts:
            return []
        # Whole files are longer than the model's positions on purpose (they are cut into blocks): no warning.
        return self.tokenizer(texts, add_special_tokens=False, verbose=False)["input_ids"]

    # -- model ---------------------------------------------------------------------------------------------------

    def head(self) -> dict[str, Tensor]:
        """The output head's weight ``[V, H]`` (and bias ``[V]`` if any), detached."""
        out_emb = self.model.get_output_embeddings()
        head = {HEAD_WEIGHT: out_emb.weight.detach()}
        if getattr(out_emb, "bias", None) is not None:
            head[HEAD_BIAS] = out_emb.bias.detach()
        return head

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> StudentOutput:
        out = self.model(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True)
        return StudentOutput(out.logits, tuple(out.hidden_states), (), attention_mask)

    def signals(
        self, input_ids: Tensor, attention_mask: Tensor, spec: SignalSpec, output: StudentOutput | None = None
    ) -> TeacherSignals:
        """The signals ``spec`` names plus the output head (extras). The caller sets eval mode and no_grad, or
        passes ``output`` (a forward it already ran, e.g. the in-training teacher's) to reuse it."""
        valid = range(self.shape.num_layers + 1)
        bad = [layer for layer in (*spec.cls_layers, *spec.token_layers) if layer not in valid]
        if bad:
            raise ValueError(
                f"teacher '{self.name_or_path}' has layers 0..{self.shape.num_layers}; asked for {sorted(set(bad))}"
            )
        out = output if output is not None else self(input_ids, attention_mask)
        return TeacherSignals(
            logits=out.logits.detach() if spec.logits else None,
            cls={layer: out.hidden_states[layer][:, 0].detach() for layer in spec.cls_layers},
            tokens={layer: out.hidden_states[layer].detach() for layer in spec.token_layers},
            token_mask=attention_mask if spec.token_layers else None,
            extras=self.head(),
        )


def load_lm_parts(
    id_or_path: str | Path, trust_remote_code: bool = False
) -> tuple[PreTrainedModel, Any, str]:
    """(model in float32, tokenizer, resolved source) of an alias, hub id or folder, unchecked; offline a model
    that is not cached fails in one line (``ModelNotAvailableError``)."""
    source = resolve_lm_teacher(str(id_or_path))
    local = Path(source).expanduser()
    is_local = local.is_dir()
    if not is_local and _looks_like_path(source):
        raise ModelNotAvailableError(f"teacher folder '{source}' does not exist")
    load_from = str(local) if is_local else source
    # a hub id loads from the cache alone when offline or the hub does not answer: a miss fails at once
    kwargs: dict[str, Any] = {
        "trust_remote_code": trust_remote_code,
        "local_files_only": is_local or hub_local_only(),
    }
    try:
        tokenizer = AutoTokenizer.from_pretrained(load_from, **kwargs)
        model = AutoModelForCausalLM.from_pretrained(load_from, **kwargs)
    except OSError as err:
        if is_local:
            raise
        raise _not_available(source, err) from err
    if any(p.dtype != torch.float32 for p in model.parameters()):
        model = model.float()  # fp16 checkpoints: training and the cache work in float32
    return model, tokenizer, source


def extend_vocabulary(
    model: PreTrainedModel, tokenizer: Any, tokens: Sequence[str], roles: dict[str, str] | None = None
) -> int:
    """Give ``tokenizer`` the ``roles`` and the ``tokens`` (as special tokens), then grow ``model``'s embeddings
    and head to its length (never shrink: a padded table keeps its rows); returns how many were new.

    Every one of them, new or already in the vocabulary (CodeGPT's ``<s>``, ``<EOL>``), becomes a special token that
    absorbs the whitespace beside it, as in the slow ``GPT2Tokenizer`` CodeXGLUE's ``run_lm.py`` used: inputs then
    tokenize as CodeGPT was fine-tuned on them (``x Ġ= <NUM_LIT> <EOL>``, not ``x Ġ= Ġ <NUM_LIT> Ġ <EOL>``)."""
    from tasks.completion.tokenizer import special_token

    roles = dict(roles or {})
    vocab = tokenizer.get_vocab()
    wanted = list(dict.fromkeys([*roles.values(), *tokens]))
    new = [t for t in wanted if t not in vocab]
    extra = [special_token(t) for t in dict.fromkeys(tokens) if t not in roles.values()]
    if roles or extra:
        tokenizer.add_special_tokens(
            {**{k: special_token(v) for k, v in roles.items()}, "additional_special_tokens": extra},
            replace_extra_special_tokens=False,
        )
    if len(tokenizer) > model.get_output_embeddings().weight.shape[0]:
        model.resize_token_embeddings(len(tokenizer))
    return len(new)


def codexglue_tokens() -> tuple[dict[str, str], list[str]]:
    """CodeXGLUE ``run_lm.py``'s tokenizer set-up: the roles (bos ``<s>``, eos ``</s>``, sep ``<EOL>``, pad
    ``<pad>``, unk ``<|UNKNOWN|>``) and the additional special tokens (``<STR_LIT>``, ``<NUM_LIT>``,
    ``<CHAR_LIT>`` and one per kept literal of ``literals.json``: ``tasks.completion.special_tokens()``)."""
    from tasks.completion.preprocess import BOS, EOL, EOS, PAD, UNK, special_tokens

    roles = {"bos_token": BOS, "eos_token": EOS, "sep_token": EOL, "pad_token": PAD, "unk_token": UNK}
    return roles, special_tokens()


def load_codexglue_teacher(id_or_path: str | Path, trust_remote_code: bool = False) -> tuple[LMTeacher, int]:
    """A hub or folder causal LM set up as CodeXGLUE's ``run_lm.py`` sets up CodeGPT: load, give the tokenizer
    CodeXGLUE's roles and tokens (``codexglue_tokens``), grow the embeddings to the tokenizer, and only then
    check that they fit. Returns the teacher and how many tokens were added.

    The order matters: ``microsoft/CodeGPT-small-py``'s tokenizer config names ``<|UNKNOWN|>`` as its unknown
    token, which its vocabulary (50,000 entries plus ``<EOL>`` in ``added_tokens.json``, 50,001 embedding rows)
    lacks, so ``transformers`` appends it at load and the tokenizer is one longer than the model until resized.
    """
    model, tokenizer, source = load_lm_parts(id_or_path, trust_remote_code)
    roles, tokens = codexglue_tokens()
    added = extend_vocabulary(model, tokenizer, tokens, roles)
    return LMTeacher(model, tokenizer, source), added


# -- offline teachers for tests ----------------------------------------------------------------------------------


def train_code_tokenizer(texts: Sequence[str], vocab_size: int = 1000, model_max_length: int = 1024) -> Any:
    """A byte-level BPE code tokenizer with CodeXGLUE's specials, as a ``transformers`` fast tokenizer.

    The specials absorb the spaces next to them (``lstrip``/``rstrip``), as GPT-2's old slow tokenizer did, so
    ``a <EOL> b`` costs no extra ``Ġ`` token around ``<EOL>``.
    """
    from tokenizers import AddedToken, Tokenizer, decoders, pre_tokenizers, trainers
    from tokenizers import models as bpe_models
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(bpe_models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    specials = [AddedToken(t, lstrip=True, rstrip=True, special=True) for t in CODE_SPECIAL_TOKENS]
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        bos_token="<s>",
        eos_token="</s>",
        sep_token="<EOL>",
        pad_token="<pad>",
        additional_special_tokens=list(CODE_SPECIAL_TOKENS[4:]),
        model_max_length=model_max_length,
    )


def _default_code_texts() -> list[str]:
    """Real code available offline everywhere, in CodeXGLUE's shape: whitespace-split tokens and ``<EOL>``."""
    import argparse
    import dataclasses
    import textwrap

    texts = []
    for module in (argparse, dataclasses, textwrap):
        lines = Path(module.__file__ or "").read_text().splitlines()
        texts.append(
            "<s> " + " <EOL> ".join(" ".join(line.split()) for line in lines if line.strip()) + " </s>"
        )
    return texts


def create_random_gpt2_teacher(
    out_dir: str | Path,
    num_layers: int = 4,
    hidden_size: int = 64,
    num_heads: int = 2,
    n_positions: int = 128,
    vocab_size: int = 1000,
    tokenizer_texts: Sequence[str] | None = None,
    dropout: float = 0.1,
    seed: int = 0,
    tokenizer: Any = None,
) -> Path:
    """Write a randomly initialised GPT-2 teacher folder (config, safetensors, tokenizer) that ``LMTeacher.load``
    reads; the head has ``max(vocab_size, tokenizer size)`` rows, so a large ``vocab_size`` gives a realistic head
    for timing even when a small corpus yields fewer tokens. ``dropout`` sets GPT-2's residual, embedding and
    attention dropout (0.1 as in GPT-2; students copy it from the teacher's config). ``tokenizer``: a ready
    ``transformers`` tokenizer to use instead of training one (e.g. the completion task's BPE)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    if tokenizer is None:
        tokenizer = train_code_tokenizer(
            tokenizer_texts or _default_code_texts(), vocab_size, model_max_length=n_positions
        )
    config = GPT2Config(
        vocab_size=max(vocab_size, len(tokenizer)),
        n_positions=n_positions,
        n_embd=hidden_size,
        n_layer=num_layers,
        n_head=num_heads,
        resid_pdrop=dropout,
        embd_pdrop=dropout,
        attn_pdrop=dropout,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = GPT2LMHeadModel(config)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


# A causal LM's config (what AutoModelForCausalLM loads): GPT-2's fields, or an architecture of that kind.
_CAUSAL_FIELDS = ("n_layer", "n_positions")
_CAUSAL_ARCHS = ("LMHeadModel", "ForCausalLM")
_SHAPE_FIELDS = ("n_layer", "n_embd", "n_head", "n_positions", "vocab_size")


def causal_lm_problem(folder: Path) -> str | None:
    """Why ``folder`` cannot be loaded as a causal LM (a completion teacher or a student's initial weights), or
    None: a file, no or unreadable config.json, another kind of model, shape fields that are not positive
    integers."""
    import json

    if not folder.is_dir():
        return f"teacher source {folder} is a file, not a model folder"
    file = folder / "config.json"
    if not file.is_file():
        return f"folder {folder} holds no config.json (not a saved model)"
    try:
        cfg = json.loads(file.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        return f"{file}: not readable JSON ({err})"
    if not isinstance(cfg, dict):
        return f"{file}: not a JSON object"
    archs = cfg.get("architectures") or []
    archs = [str(a) for a in archs] if isinstance(archs, list) else []
    if any(a.endswith(_CAUSAL_ARCHS) for a in archs) or (not archs and any(k in cfg for k in _CAUSAL_FIELDS)):
        bad = [k for k in _SHAPE_FIELDS if k in cfg and (type(cfg[k]) is not int or cfg[k] < 1)]
        return f"{file}: {bad[0]} must be a positive integer, got {cfg[bad[0]]!r}" if bad else None
    kind = archs[0] if archs else cfg.get("model_type", "unknown")
    return (
        f"folder {folder} holds a {kind} model, not a causal LM (GPT-2-like: an architecture ending in "
        "LMHeadModel or ForCausalLM); a completion teacher generates code"
    )
