"""A byte-level BPE tokenizer with CodeXGLUE's special tokens, trained offline on completion text.

CodeXGLUE fine-tunes CodeGPT with GPT-2's tokenizer plus ``sep_token='<EOL>'``, ``bos_token='<s>'``,
``eos_token='</s>'``, ``pad_token='<pad>'``, ``unk_token='<|UNKNOWN|>'`` and the literal placeholders as
additional special tokens (``run_lm.py``). This builds the same arrangement around a small BPE trained with HF
``tokenizers``, for tests and the local profile, where no hub tokenizer can be downloaded.

The special tokens absorb the whitespace on either side (``lstrip``/``rstrip``), as the slow ``GPT2Tokenizer``
``run_lm.py`` used strips it around every added token: ``x = <NUM_LIT> <EOL> y`` is ``x Ġ= <NUM_LIT> <EOL> y``, no
lone ``Ġ`` beside a special. ``DecodeIds`` puts those spaces back (``generate.decode_ids``), so a model that emits
the reference tokens decodes to the reference line exactly.
"""

from __future__ import annotations

from collections.abc import Iterable

from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from tasks.completion.preprocess import BOS, EOL, EOS, PAD, UNK, special_tokens


def special_token(text: str) -> AddedToken:
    """A CodeXGLUE special token as ``run_lm.py``'s slow tokenizer treats it: never split, whitespace around it
    absorbed."""
    return AddedToken(text, lstrip=True, rstrip=True, special=True, normalized=False)


def build_bpe_tokenizer(texts: Iterable[str], vocab_size: int = 2000) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE on preprocessed files (``"<s> ... </s>"``); deterministic for the same texts."""
    extra = special_tokens()
    base = [PAD, BOS, EOS, EOL, UNK]
    tok = Tokenizer(models.BPE(unk_token=UNK))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=[special_token(t) for t in base + extra],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS,
        eos_token=EOS,
        sep_token=EOL,
        pad_token=PAD,
        unk_token=UNK,
        additional_special_tokens=extra,
    )
