"""Line-level completion with a Hugging Face causal LM, decoded as CodeXGLUE's ``run_lm.py`` does.

``eval_line_completion`` in ``Code-Code/CodeCompletion-line/code/run_lm.py`` (with ``code/beam.py``):

* context: ``tokenizer.encode(input)[-(block_size - 100):]``, i.e. the last 924 tokens at block size 1024;
* beam search of width 5 (a ``Beam`` class from OpenNMT): scores are sums of log-probabilities with no length
  normalisation; a beam that has emitted a stop token gets no children (its row is set to -1e20); a hypothesis is
  *finished* when a stop token enters the beam; search ends when the best beam ends in a stop token and at least
  ``beam`` hypotheses have finished, or after 100 new tokens; the answer is the best-scoring finished hypothesis
  (topped up with unfinished ones when fewer than ``beam`` finished); the first step expands only one row, since
  every row holds the same context;
* stop tokens: ``<EOL>`` for Python (we also stop at ``</s>``, the end of a file; not with ``codexglue_compat``);
* ``DecodeIds``: a ``Ġ`` piece adds one space, bos/eos/sep/pad and ``<NUM_LIT...>`` pieces get a space on each
  side, other pieces are glued on.

Their bugs, fixed here (``codexglue_compat=True`` reproduces them, to match numbers produced by their script):

* ``DecodeIds(t).strip("<EOL>")`` strips the *characters* ``< E O L >`` from both ends, not the token, so
  ``LOGGER . info ( )`` became ``GGER . info ( )`` and ``Exception ( )`` became ``xception ( )``. We cut the
  hypothesis at the first stop token id instead.
* ``if 0 in t: t = t[:t.index(0)]`` (zeros were their padding) cut a prediction at token id 0, which is ``!`` in
  GPT-2's vocabulary. We never pad hypotheses.
* pieces were glued as raw byte-level strings, so non-ASCII text came out as mojibake; we decode runs of ordinary
  pieces with the tokenizer's own byte-level decoder.

Unlike theirs (batch size 1, "it could not be batched"), samples are batched with left padding; each sample keeps
its own beam, and one that has finished is frozen while the others go on.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

import torch

from tasks.completion.preprocess import EOL, EOS

_DEAD = -1e20  # their value for a finished row's children
SPACE_PIECE = "\u0120"  # Ġ: a byte-level BPE piece that starts with a space


@dataclass(frozen=True)
class GenerationSettings:
    beam_size: int = 5
    max_new_tokens: int = 100
    max_length: int | None = None  # model context; None: the model's n_positions (CodeXGLUE: block_size 1024)
    batch_size: int = 8
    stop_tokens: tuple[str, ...] | None = (
        None  # None: <EOL> and </s>; with codexglue_compat <EOL> only, as theirs
    )
    codexglue_compat: bool = False

    def __post_init__(self) -> None:
        if self.stop_tokens is None:
            object.__setattr__(self, "stop_tokens", (EOL,) if self.codexglue_compat else (EOL, EOS))
        if self.beam_size < 1 or self.max_new_tokens < 1 or self.batch_size < 1:
            raise ValueError("generation: beam_size, max_new_tokens and batch_size must be >= 1")


class _Beam:
    """One sample's beam bookkeeping, CodeXGLUE's ``Beam`` semantics on plain Python lists."""

    def __init__(self, size: int, stop_ids: set[int]) -> None:
        self.size, self.stop = size, stop_ids
        self.prev_ks: list[list[int]] = []
        self.next_ys: list[list[int]] = []
        self.finished: list[tuple[float, int, int]] = []
        self.eos_top = False

    def done(self) -> bool:
        return self.eos_top and len(self.finished) >= self.size

    def record(self, scores: list[float], prev_k: list[int], next_y: list[int]) -> None:
        self.prev_ks.append(prev_k)
        self.next_ys.append(next_y)
        t = len(self.next_ys)
        for i, y in enumerate(next_y):
            if y in self.stop:
                self.finished.append((scores[i], t, i))
        if next_y[0] in self.stop:
            self.eos_top = True

    def best(self, scores: list[float]) -> list[int]:
        """The best hypothesis' token ids, up to and including its first stop token."""
        t = len(self.next_ys)
        finished = sorted(self.finished or [(scores[0], t, 0)], key=lambda a: -a[0])
        if len(finished) < self.size:
            unfinished = sorted(
                ((scores[i], t, i) for i, y in enumerate(self.next_ys[-1]) if y not in self.stop),
                key=lambda a: -a[0],
            )
            finished += unfinished[: self.size - len(finished)]
        _, timestep, k = finished[0]
        hyp = []
        for j in range(timestep - 1, -1, -1):
            hyp.append(self.next_ys[j][k])
            k = self.prev_ks[j][k]
        hyp.reverse()
        for n, tok in enumerate(hyp):
            if tok in self.stop:
                return hyp[: n + 1]
        return hyp


def _cache_kw(model: torch.nn.Module) -> str:
    # transformers 5.24 calls the KV cache argument `cache`; earlier 5.x releases `past_key_values`.
    params = inspect.signature(model.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def _out_cache(out: object) -> object:
    return out.cache if getattr(out, "cache", None) is not None else out.past_key_values


@torch.no_grad()
def beam_search(
    model, context_ids: list[list[int]], stop_ids: set[int], s: GenerationSettings
) -> list[list[int]]:
    """Best hypothesis per context (token ids, ending with a stop id when one was reached)."""
    device = next(model.parameters()).device
    kw = _cache_kw(model)
    B, K = len(context_ids), s.beam_size
    L = max(len(c) for c in context_ids)
    pad = 0  # any id: padded positions are masked out
    ids = torch.tensor([[pad] * (L - len(c)) + c for c in context_ids], device=device)
    mask = torch.tensor([[0] * (L - len(c)) + [1] * len(c) for c in context_ids], device=device)
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    out = model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=True, logits_to_keep=1)
    cache = _out_cache(out)
    cache.batch_repeat_interleave(K)
    mask = mask.repeat_interleave(K, dim=0)
    next_pos = pos[:, -1:].repeat_interleave(K, dim=0) + 1
    beams = [_Beam(K, stop_ids) for _ in range(B)]
    scores = torch.zeros(B, K, device=device)
    last = torch.zeros(B, K, dtype=torch.long, device=device)
    stop_t = torch.tensor(sorted(stop_ids), dtype=torch.long, device=device)
    logits = out.logits[:, -1].repeat_interleave(K, dim=0)
    for step in range(s.max_new_tokens):
        lp = torch.log_softmax(logits.float(), dim=-1).view(B, K, -1)
        V = lp.shape[-1]
        if step == 0:
            best, idx = lp[:, 0, :].topk(K, dim=-1)
            prev_k = torch.zeros_like(idx)
        else:
            cand = lp + scores.unsqueeze(-1)
            cand[torch.isin(last, stop_t)] = _DEAD
            best, idx = cand.view(B, -1).topk(K, dim=-1)
            prev_k = idx // V
        next_y = idx % V
        frozen = torch.tensor([b.done() for b in beams], device=device)
        ar = torch.arange(K, device=device).expand(B, K)
        best = torch.where(frozen[:, None], scores, best)
        prev_k = torch.where(frozen[:, None], ar, prev_k)
        next_y = torch.where(frozen[:, None], last, next_y)
        best_l, prev_l, next_l = best.tolist(), prev_k.tolist(), next_y.tolist()
        for b, beam in enumerate(beams):
            if not beam.done():
                beam.record(best_l[b], prev_l[b], next_l[b])
        scores, last = best, next_y
        if all(b.done() for b in beams) or step == s.max_new_tokens - 1:
            break
        cache.reorder_cache((prev_k + torch.arange(B, device=device)[:, None] * K).view(-1))
        mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
        out = model(
            input_ids=last.view(-1, 1),
            attention_mask=mask,
            position_ids=next_pos,
            use_cache=True,
            **{kw: cache},
        )
        cache, logits, next_pos = _out_cache(out), out.logits[:, -1], next_pos + 1
    final = scores.tolist()
    return [beam.best(final[b]) for b, beam in enumerate(beams)]


def decode_ids(ids: list[int], tokenizer, stop_ids: set[int], codexglue_compat: bool = False) -> str:
    """A hypothesis as text, following ``DecodeIds``; cut at the first stop id (their strip bug when compat)."""
    if codexglue_compat:
        if 0 in ids:
            ids = ids[: ids.index(0)]
    else:
        for n, i in enumerate(ids):
            if i in stop_ids:
                ids = ids[:n]
                break
    spaced = {tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.sep_token_id, tokenizer.pad_token_id}
    added = set(tokenizer.all_special_ids)
    codes, run = "", []

    def glue(text: str) -> None:
        nonlocal codes
        # Theirs: a Ġ piece after a trailing space adds no second space.
        if text.startswith(" ") and codes.endswith(" "):
            text = text[1:]
        codes += text

    def flush() -> None:
        # Each stretch that starts at a Ġ piece is glued on its own, so the rule above holds inside a run too
        # (``x Ġ Ġ=`` is ``x =``, as theirs); a space byte never sits inside a multi-byte character, so the
        # stretches decode as the whole run would.
        starts = [n for n, p in enumerate(run) if n == 0 or p.startswith(SPACE_PIECE)]
        for a, b in zip(starts, [*starts[1:], len(run)]):
            glue(tokenizer.convert_tokens_to_string(run[a:b]))
        run.clear()

    for i, piece in zip(ids, tokenizer.convert_ids_to_tokens(ids)):
        if i in spaced or piece.startswith("<NUM_LIT") or i in added:
            flush()
            codes += f" {piece} " if (i in spaced or piece.startswith("<NUM_LIT")) else piece
        else:
            run.append(piece)
    flush()
    text = codes.strip(" ")
    if codexglue_compat:
        return text.strip("<EOL>").strip()  # the bug, on purpose: strips characters, not the token
    return text.strip()


def complete_lines(
    model, tokenizer, inputs: list[str], settings: GenerationSettings | None = None
) -> list[str]:
    """One predicted line per line-level input (``"<s> ..."``), in order; the model is put in eval mode."""
    s = settings or GenerationSettings()
    model.eval()
    positions = int(getattr(model.config, "n_positions", 1024))
    max_length = s.max_length or positions
    if max_length > positions:  # else an IndexError deep in the position embeddings
        raise ValueError(f"generation: max_length {max_length} exceeds the model's {positions} positions")
    keep = max_length - s.max_new_tokens
    if keep < 1:
        raise ValueError(
            f"generation: max_length {max_length} leaves no room for {s.max_new_tokens} new tokens"
        )
    stop_ids = set(tokenizer.convert_tokens_to_ids(list(s.stop_tokens)))
    if tokenizer.unk_token_id in stop_ids:
        raise ValueError(
            f"generation: stop tokens {list(s.stop_tokens)} are not all in the tokenizer's vocabulary"
        )
    contexts = [tokenizer.encode(text, add_special_tokens=False)[-keep:] for text in inputs]
    preds: list[str] = []
    for start in range(0, len(contexts), s.batch_size):
        batch = contexts[start : start + s.batch_size]
        for hyp in beam_search(model, batch, stop_ids, s):
            preds.append(decode_ids(hyp, tokenizer, stop_ids, s.codexglue_compat))
    return preds
