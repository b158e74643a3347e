"""Student tokenizers: byte-level BPE trained on a task family's training code, cached on disk.

Every student has its own tokenizer, as in the paper: byte-level BPE (Hugging Face ``tokenizers``), minimum pair
frequency 2, special tokens ``<s> <pad> </s> <unk> <mask>`` with ids 0..4, RoBERTa post-processing
(``<s> A </s>``, pairs ``<s> A </s></s> B </s>``) and truncation to ``max_length`` tokens (specials included,
``longest_first`` for pairs). One tokenizer per family and vocabulary size: ``c_java`` is trained on the defect and
clone data, ``python`` on the exception data (``get_student_tokenizer``).

Training reads each distinct text once: clone pairs reuse the same functions many times, and counting a function
once per pair would let a few popular functions dominate the merges (and make training much slower).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from tokenizers import Tokenizer, decoders, pre_tokenizers, processors, trainers
from tokenizers import models as bpe_models

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerFast

    from tasks.base import Example, TaskData

SPECIAL_TOKENS = ("<s>", "<pad>", "</s>", "<unk>", "<mask>")
BOS, PAD, EOS, UNK, MASK = SPECIAL_TOKENS
TOKENIZER_FILE = "tokenizer.json"
META_FILE = "meta.json"
PIN_DIR = "requests"  # request pins: which tokenizer folder a data request's key gave (get_student_tokenizer)
# Part of the cache key: bump when training or post-processing changes so old caches are not reused.
FORMAT_VERSION = 1


def unique_texts(texts: Iterable[str]) -> Iterator[str]:
    """Each distinct non-empty text once, in first-seen order."""
    seen: set[bytes] = set()
    for text in texts:
        if not text:
            continue
        digest = hashlib.sha1(text.encode("utf-8", "surrogatepass")).digest()
        if digest not in seen:
            seen.add(digest)
            yield text


def train_bpe(texts: Iterable[str], vocab_size: int, min_frequency: int = 2) -> Tokenizer:
    """A byte-level BPE tokenizer with the student special tokens and RoBERTa post-processing.

    The vocabulary may come out smaller than ``vocab_size`` when the text has too few frequent pairs; callers size
    the model from ``get_vocab_size()``.
    """
    if vocab_size < len(SPECIAL_TOKENS) + 1:
        raise ValueError(f"vocab_size {vocab_size} is too small for the {len(SPECIAL_TOKENS)} special tokens")
    tokenizer = Tokenizer(bpe_models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=list(SPECIAL_TOKENS),
        # All 256 bytes, so any input, even a byte never seen in training, has a token (no <unk> needed).
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    ids = [tokenizer.token_to_id(tok) for tok in SPECIAL_TOKENS]
    if ids != list(range(len(SPECIAL_TOKENS))):
        raise RuntimeError(f"special tokens got ids {ids}, expected 0..{len(SPECIAL_TOKENS) - 1}")
    tokenizer.post_processor = processors.RobertaProcessing(
        (EOS, tokenizer.token_to_id(EOS)), (BOS, tokenizer.token_to_id(BOS)), add_prefix_space=False
    )
    return tokenizer


def hf_tokenizer(tokenizer: Tokenizer, model_max_length: int = 512) -> PreTrainedTokenizerFast:
    """The same tokenizer as a ``transformers`` tokenizer (RoBERTa special-token roles), e.g. for a saved teacher."""
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token=BOS,
        eos_token=EOS,
        sep_token=EOS,
        cls_token=BOS,
        unk_token=UNK,
        pad_token=PAD,
        mask_token=MASK,
        model_max_length=model_max_length,
    )


class StudentTokenizer:
    """A trained student tokenizer: ``encode``, ``pad_id``, ``vocab_size``, ``save``/``load``.

    ``path`` is the folder it was loaded from or saved to; ``from_cache`` says whether ``train_or_load`` found it on
    disk instead of training it.
    """

    def __init__(self, tokenizer: Tokenizer, path: Path | None = None, from_cache: bool = False) -> None:
        self.tokenizer = tokenizer
        self.path = path
        self.from_cache = from_cache
        pad = tokenizer.token_to_id(PAD)
        if pad is None:
            raise ValueError(f"tokenizer has no {PAD} token")
        self._pad_id: int = pad
        self._max_length: int | None = None

    @property
    def pad_id(self) -> int:
        return self._pad_id

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.get_vocab_size()

    def _set_max_length(self, max_length: int) -> None:
        if max_length < 4:
            raise ValueError(f"max_length {max_length} leaves no room for text next to the special tokens")
        if max_length != self._max_length:
            self.tokenizer.enable_truncation(max_length, strategy="longest_first")
            self._max_length = max_length

    def encode_texts(self, texts: Sequence[str | tuple[str, str]], max_length: int) -> list[list[int]]:
        """Ids of single texts or ``(a, b)`` pairs, with specials, truncated to ``max_length``."""
        self._set_max_length(max_length)
        return [enc.ids for enc in self.tokenizer.encode_batch(list(texts))]

    def encode(self, examples: Sequence[Example], max_length: int) -> list[list[int]]:
        """One id list per example; an example with ``code2`` is encoded as the pair ``(code, code2)``."""
        inputs: list[str | tuple[str, str]] = [
            ex.code if ex.code2 is None else (ex.code, ex.code2) for ex in examples
        ]
        return self.encode_texts(inputs, max_length)

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = True) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=skip_special_tokens)

    def to_hf(self, model_max_length: int = 512) -> PreTrainedTokenizerFast:
        return hf_tokenizer(Tokenizer.from_str(self.tokenizer.to_str()), model_max_length)

    def save(self, directory: str | Path, meta: dict[str, object] | None = None) -> Path:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.tokenizer.save(str(directory / TOKENIZER_FILE))
        info = {"vocab_size": self.vocab_size, "format_version": FORMAT_VERSION, **(meta or {})}
        (directory / META_FILE).write_text(json.dumps(info, indent=2, sort_keys=True))
        self.path = directory
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> StudentTokenizer:
        directory = Path(directory)
        file = directory / TOKENIZER_FILE
        if not file.is_file():
            raise FileNotFoundError(f"no student tokenizer in {directory} (missing {TOKENIZER_FILE})")
        return cls(Tokenizer.from_file(str(file)), path=directory)

    @classmethod
    def train_or_load(
        cls,
        texts_fn: Callable[[], Iterable[str]],
        vocab_size: int,
        cache_dir: str | Path,
        key: str,
        min_frequency: int = 2,
        meta: dict[str, object] | None = None,
    ) -> StudentTokenizer:
        """Load ``cache_dir/key`` if present, else train on ``texts_fn()`` and store it there.

        Safe when several processes race: each trains into its own temporary folder and renames it into place;
        a directory rename fails when the target exists, so the loser discards its copy and loads the winner's.
        """
        cache_dir = Path(cache_dir)
        final = cache_dir / key
        if (final / TOKENIZER_FILE).is_file():
            found = cls.load(final)
            found.from_cache = True
            return found
        cache_dir.mkdir(parents=True, exist_ok=True)
        trained = cls(train_bpe(unique_texts(texts_fn()), vocab_size, min_frequency))
        tmp = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=cache_dir))
        try:
            trained.save(
                tmp, meta={"requested_vocab_size": vocab_size, "min_frequency": min_frequency, **(meta or {})}
            )
            os.rename(tmp, final)
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)
            if not (final / TOKENIZER_FILE).is_file():
                raise
            found = cls.load(final)
            found.from_cache = True
            return found
        trained.path = final
        return trained


def tokenizer_cache_key(
    family: str, vocab_size: int, min_frequency: int, datasets: Sequence[TaskData]
) -> str:
    """sha256 of the settings and each dataset's content fingerprint, in order."""
    payload = json.dumps(
        {
            "format_version": FORMAT_VERSION,
            "family": family,
            "vocab_size": vocab_size,
            "min_frequency": min_frequency,
            "datasets": [data.fingerprint() for data in datasets],
        },
        sort_keys=True,
    )
    return hashlib.sha256(payload.encode()).hexdigest()


def training_texts(datasets: Sequence[TaskData]) -> Iterator[str]:
    """The train split's code, and ``code2`` of pairs, of every dataset."""
    for data in datasets:
        for ex in data.train:
            yield ex.code
            if ex.code2 is not None:
                yield ex.code2


def _pin_path(cache_dir: Path, family: str, vocab_size: int, min_frequency: int, request_key: str) -> Path:
    digest = hashlib.sha256(request_key.encode()).hexdigest()[:32]
    return cache_dir / PIN_DIR / f"{family}-{vocab_size}-{min_frequency}-{digest}.json"


def _inside(cache_dir: Path, key: object) -> Path | None:
    """``cache_dir/key`` when ``key`` names a folder directly in ``cache_dir`` that stays inside it once links are
    resolved (``cache/manifest.py``'s rule: no '..', and resolved, still under the cache folder); else None."""
    if not isinstance(key, str) or "\x00" in key or ".." in Path(key).parts:
        return None
    folder = cache_dir / key
    if folder.parent != cache_dir or folder == cache_dir:
        return None
    try:
        root, resolved = cache_dir.resolve(), folder.resolve()
    except (OSError, RuntimeError, ValueError):  # a link loop, a name the file system refuses
        return None
    return folder if resolved != root and resolved.is_relative_to(root) else None


def _pinned(pin: Path, cache_dir: Path) -> StudentTokenizer | None:
    """The tokenizer a request pin names, when both are on disk."""
    try:
        key = json.loads(pin.read_text())["tokenizer"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    folder = _inside(cache_dir, key)
    if folder is None or not (folder / TOKENIZER_FILE).is_file():
        return None  # a pin never points outside the cache folder: it is ignored, the tokenizer found again
    found = StudentTokenizer.load(folder)
    found.from_cache = True
    return found


def get_student_tokenizer(
    family: str,
    vocab_size: int,
    datasets: Sequence[TaskData] | Callable[[], Sequence[TaskData]],
    cache_dir: str | Path,
    min_frequency: int = 2,
    *,
    request_key: str | None = None,
) -> StudentTokenizer:
    """The family's tokenizer of ``vocab_size`` trained on ``datasets``' train splits, from the cache when there.

    ``datasets`` are the family's task data (``c_java``: defect and clone; ``python``: exception), loaded with the
    study's *data seed* (never a trial's seed, or each seed would train its own vocabulary), or a function
    returning them, called only when needed. The cache folder is
    ``cache_dir/<family>-<vocab_size>-<sha256 of settings and data fingerprints>``.

    ``request_key`` (``tasks.family_request_key``: which files, hub revision and data seed the data come from)
    lets a later call find that folder without loading the data: the first call writes a pin
    ``cache_dir/requests/<...>.json`` naming the folder; a call with the same key and a callable ``datasets``
    reads the pin and never loads, so a trial of one task does not load the family's other tasks (clone
    detection's hub splits are gigabytes).
    """
    cache_dir = Path(cache_dir)
    pin = _pin_path(cache_dir, family, vocab_size, min_frequency, request_key) if request_key else None
    if pin is not None and pin.is_file():
        found = _pinned(pin, cache_dir)
        if found is not None:
            return found
    data = list(datasets() if callable(datasets) else datasets)
    if not data:
        raise ValueError(f"no datasets to train the '{family}' tokenizer on")
    digest = tokenizer_cache_key(family, vocab_size, min_frequency, data)
    key = f"{family}-{vocab_size}-{digest[:32]}"
    tokenizer = StudentTokenizer.train_or_load(
        lambda: training_texts(data),
        vocab_size,
        cache_dir,
        key=key,
        min_frequency=min_frequency,
        meta={"family": family, "fingerprints": [d.fingerprint() for d in data]},
    )
    if pin is not None:
        pin.parent.mkdir(parents=True, exist_ok=True)
        tmp = pin.with_name(f".{pin.name}.{os.getpid()}")
        tmp.write_text(json.dumps({"tokenizer": key, "request": request_key}))
        os.replace(tmp, pin)  # atomic: a racing writer names the same folder
    return tokenizer
