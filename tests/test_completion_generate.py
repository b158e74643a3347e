"""Line completion as CodeXGLUE runs it, on a tiny real GPT2LMHeadModel and a BPE tokenizer built offline."""

from __future__ import annotations

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

from tasks.completion.generate import GenerationSettings, beam_search, complete_lines, decode_ids
from tasks.completion.tokenizer import build_bpe_tokenizer

FILES = [
    "<s> import os <EOL> def f ( x ) : <EOL> return os . path . join ( x , '<STR_LIT>' ) </s>",
    "<s> class A ( object ) : <EOL> def __init__ ( self ) : <EOL> self . x = <NUM_LIT:1> </s>",
    '<s> for i in range ( <NUM_LIT> ) : <EOL> print ( i ) <EOL> LOGGER . info ( "<STR_LIT>" ) </s>',
    "<s> try : <EOL> x = y [ <NUM_LIT:0> ] <EOL> except Exception : <EOL> raise OrderedDict ( ) </s>",
    "<s> x = <NUM_LIT:1> <EOL> x = <NUM_LIT:1> <EOL> x = <NUM_LIT:1> <EOL> name = 'café' </s>",
]
INPUTS = [
    "<s> import os <EOL> def f ( x ) :",
    "<s> class A ( object ) : <EOL> def __init__ ( self ) : <EOL> self . x =",
    "<s> for i in range ( <NUM_LIT> ) : <EOL>",
    "<s> try : <EOL> x = y [ <NUM_LIT:0> ] <EOL> except Exception : <EOL> raise OrderedDict",
    "<s> x",
]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tok():
    return build_bpe_tokenizer(FILES * 4, vocab_size=700)


def _model(tok, seed: int = 0, n_positions: int = 128) -> GPT2LMHeadModel:
    torch.manual_seed(seed)
    cfg = GPT2Config(
        vocab_size=len(tok),
        n_positions=n_positions,
        n_embd=32,
        n_layer=2,
        n_head=2,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        # Large random weights: peaked, context-dependent next-token distributions, so a search that mixed up
        # its beams' histories (KV cache rows) would pick other tokens; at 0.02 the model is near-uniform.
        initializer_range=0.5,
    )
    return GPT2LMHeadModel(cfg).eval()


def _stops(tok) -> set[int]:
    return {tok.sep_token_id, tok.eos_token_id}


@torch.no_grad()
def _greedy(model, ids: list[int], stops: set[int], n: int) -> list[int]:
    out: list[int] = []
    for _ in range(n):  # full forward every step: no cache, no beam code
        nxt = int(model(torch.tensor([ids + out])).logits[0, -1].argmax())
        out.append(nxt)
        if nxt in stops:
            break
    return out


@torch.no_grad()
def _reference_beam(model, ids: list[int], k: int, steps: int) -> list[int]:
    """Beam search without stop tokens, recomputing every hypothesis from scratch: the best of the final beam."""
    lp = torch.log_softmax(model(torch.tensor([ids])).logits[0, -1], -1)
    scores, first = lp.topk(k)
    hyps = [[int(t)] for t in first]
    for _ in range(steps - 1):
        batch = torch.tensor([ids + h for h in hyps])
        lp = torch.log_softmax(model(batch).logits[:, -1], -1)
        cand = (lp + scores[:, None]).view(-1)
        scores, idx = cand.topk(k)
        V = lp.shape[-1]
        hyps = [hyps[int(i) // V] + [int(i) % V] for i in idx]
    return hyps[0]


@torch.no_grad()
def _reference_with_stops(model, ids: list[int], k: int, steps: int, stops: set[int]) -> list[int]:
    """CodeXGLUE's beam rules, recomputed from scratch each step: finished rows get no children, a hypothesis
    finishes when a stop token enters the beam, search ends when the top row stopped and k have finished; the
    answer is the best finished one (topped up with unfinished ones), cut after its first stop."""
    lp = torch.log_softmax(model(torch.tensor([ids])).logits[0, -1], -1)
    scores, first = lp.topk(k)
    hyps = [[int(t)] for t in first]
    finished = [(float(scores[i]), hyps[i]) for i in range(k) if hyps[i][-1] in stops]
    for _ in range(steps - 1):
        if hyps[0][-1] in stops and len(finished) >= k:
            break
        lp = torch.log_softmax(model(torch.tensor([ids + h for h in hyps])).logits[:, -1], -1)
        cand = lp + scores[:, None]
        for i, h in enumerate(hyps):
            if h[-1] in stops:
                cand[i] = -1e20
        V = lp.shape[-1]
        scores, idx = cand.view(-1).topk(k)
        hyps = [hyps[int(i) // V] + [int(i) % V] for i in idx]
        finished += [(float(scores[i]), hyps[i]) for i in range(k) if hyps[i][-1] in stops]
    ranked = sorted(finished or [(float(scores[0]), hyps[0])], key=lambda a: -a[0])
    if len(ranked) < k:
        ranked += sorted(
            ((float(scores[i]), hyps[i]) for i in range(k) if hyps[i][-1] not in stops), key=lambda a: -a[0]
        )
    best = ranked[0][1]
    return next((best[: n + 1] for n, t in enumerate(best) if t in stops), best)


def test_beam_one_is_the_greedy_argmax_path(tok) -> None:
    model = _model(tok)
    for text in INPUTS:
        ids = tok.encode(text, add_special_tokens=False)
        s = GenerationSettings(beam_size=1, max_new_tokens=12)
        assert beam_search(model, [ids], _stops(tok), s)[0] == _greedy(model, ids, _stops(tok), 12)


def test_beam_search_keeps_beam_size_hypotheses(tok) -> None:
    model = _model(tok, seed=1)
    differs = 0
    for k in (2, 3):
        for text in INPUTS:
            ids = tok.encode(text, add_special_tokens=False)
            got = beam_search(model, [ids], set(), GenerationSettings(beam_size=k, max_new_tokens=8))[0]
            assert got == _reference_beam(model, ids, k, 8), (k, text)
            differs += got != _greedy(model, ids, set(), 8)
    assert differs >= 3  # the beam matters on these inputs, so the check above is not greedy in disguise


def test_finished_hypotheses_follow_codexglue_rules(tok) -> None:
    # Many stop ids, so hypotheses finish at different steps and finished rows must stop having children.
    model = _model(tok, seed=4)
    stops = set(range(250, 330))
    ended = 0
    for k in (2, 4):
        for text in INPUTS:
            ids = tok.encode(text, add_special_tokens=False)
            got = beam_search(model, [ids], stops, GenerationSettings(beam_size=k, max_new_tokens=10))[0]
            assert got == _reference_with_stops(model, ids, k, 10, stops), (k, text)
            ended += got[-1] in stops and len(got) > 1
    assert ended >= 3


def test_batched_equals_one_by_one_and_long_context_is_cut(tok) -> None:
    model = _model(tok, seed=2)
    s1 = GenerationSettings(beam_size=3, max_new_tokens=8, batch_size=1)
    s4 = GenerationSettings(beam_size=3, max_new_tokens=8, batch_size=4)
    assert complete_lines(model, tok, INPUTS, s1) == complete_lines(model, tok, INPUTS, s4)
    # Context longer than n_positions: only the last (128 - 8) tokens are kept, as CodeXGLUE keeps block_size - 100.
    long_input = " ".join(FILES * 3).replace(" </s>", "")
    ids = tok.encode(long_input, add_special_tokens=False)
    assert len(ids) > 128
    got = complete_lines(model, tok, [long_input], s1)
    want = decode_ids(beam_search(model, [ids[-120:]], _stops(tok), s1)[0], tok, _stops(tok))
    assert got == [want]
    # a max_length past the model's positions is one clear line, not an IndexError in the position embeddings
    with pytest.raises(ValueError, match="max_length 192 exceeds the model's 128 positions"):
        complete_lines(model, tok, INPUTS, GenerationSettings(max_length=192, max_new_tokens=8))


def test_stops_at_eol_after_learning_a_line(tok) -> None:
    # Teach a tiny model that "x = <NUM_LIT:1>" is followed by <EOL>: generation must end there, not run on.
    model = _model(tok, seed=3).train()
    batch = torch.tensor([tok.encode(FILES[4] + " " + FILES[4], add_special_tokens=False)])
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for _ in range(100):
        opt.zero_grad()
        model(input_ids=batch, labels=batch).loss.backward()
        opt.step()
    model.eval()
    ids = tok.encode("<s> x = <NUM_LIT:1> <EOL> x =", add_special_tokens=False)
    for k in (1, 5):
        hyp = beam_search(model, [ids], _stops(tok), GenerationSettings(beam_size=k, max_new_tokens=30))[0]
        assert hyp[-1] == tok.sep_token_id and sum(t in _stops(tok) for t in hyp) == 1 and len(hyp) < 30
    preds = complete_lines(
        model, tok, ["<s> x = <NUM_LIT:1> <EOL> x ="], GenerationSettings(max_new_tokens=30)
    )
    assert preds == ["<NUM_LIT:1>"]


def test_decode_fixes_the_strip_bug(tok) -> None:
    eol = tok.sep_token_id
    for line, mangled in [
        ("Exception ( )", "xception ( )"),
        ("LOGGER . info ( )", "GGER . info ( )"),
        ("OrderedDict ( )", "rderedDict ( )"),
    ]:
        ids = tok.encode(" " + line, add_special_tokens=False) + [eol]
        assert decode_ids(ids, tok, _stops(tok)) == line
        assert decode_ids(ids, tok, _stops(tok), codexglue_compat=True) == mangled
    # Non-ASCII text survives byte-level decoding; <NUM_LIT...> pieces get spaces as in DecodeIds.
    ids = tok.encode(" name = 'café' <EOL> junk", add_special_tokens=False)
    assert decode_ids(ids, tok, _stops(tok)) == "name = 'café'"
    ids = tok.encode(" x = <NUM_LIT:1>", add_special_tokens=False)
    assert decode_ids(ids, tok, _stops(tok)).split() == ["x", "=", "<NUM_LIT:1>"]


def test_reference_tokens_decode_to_the_reference_line(tok) -> None:
    """A model that emits exactly the reference tokens of a line scores ES 100: the specials absorb the spaces
    beside them when encoding (as run_lm.py's slow tokenizer), and DecodeIds' spaces around <NUM_LIT...> and a
    lone Ġ piece's space are each added once."""
    cases = [
        ("<s> x =", "<NUM_LIT:1>"),
        ("<s> for i in range (", "<NUM_LIT> ) :"),
        ("<s> self . x", "= y [ <NUM_LIT:0> , - <NUM_LIT> ] . join ( '<STR_LIT>' )"),
        ("<s> import os <EOL>", "name = 'café'"),
    ]
    for context, gt in cases:
        full = tok.encode(f"{context} {gt} <EOL>", add_special_tokens=False)
        ctx = tok.encode(context, add_special_tokens=False)
        assert full[: len(ctx)] == ctx
        pieces = tok.convert_ids_to_tokens(full)
        specials = set(tok.all_special_tokens)
        for a, b in zip(pieces, pieces[1:]):  # no space piece beside a special
            assert not (a in specials and b.startswith("\u0120")) and not (b in specials and a == "\u0120")
        assert decode_ids(full[len(ctx) :], tok, _stops(tok)) == gt
    # Their rule holds inside a run of ordinary pieces too: a Ġ piece after a space adds none.
    pieces = ["x", "\u0120", "\u0120=", "\u0120", "\u0120y"]
    ids = tok.convert_tokens_to_ids(pieces) + [tok.sep_token_id]
    assert tok.unk_token_id not in ids
    assert decode_ids(ids, tok, _stops(tok)) == "x = y"


def test_compat_stops_at_eol_only_as_theirs() -> None:
    assert GenerationSettings().stop_tokens == ("<EOL>", "</s>")
    assert GenerationSettings(codexglue_compat=True).stop_tokens == ("<EOL>",)
    assert GenerationSettings(stop_tokens=("</s>",), codexglue_compat=True).stop_tokens == ("</s>",)


def test_settings_are_checked(tok) -> None:
    with pytest.raises(ValueError, match="beam_size"):
        GenerationSettings(beam_size=0)
    with pytest.raises(ValueError, match="no room"):
        complete_lines(_model(tok), tok, INPUTS[:1], GenerationSettings(max_new_tokens=128))
    with pytest.raises(ValueError, match="stop tokens"):
        complete_lines(
            _model(tok), tok, INPUTS[:1], GenerationSettings(max_new_tokens=8, stop_tokens=("<NOPE>",))
        )


def test_generate_command_writes_one_line_per_sample(tok, tmp_path) -> None:
    import json

    from tasks.completion.__main__ import main

    model = _model(tok, seed=5)
    model.save_pretrained(tmp_path / "m")
    tok.save_pretrained(tmp_path / "m")
    answers = tmp_path / "line_test.json"
    answers.write_text(
        "".join(json.dumps({"id": i, "input": t, "gt": "x"}) + "\n" for i, t in enumerate(INPUTS))
    )
    preds = tmp_path / "predictions.txt"
    argv = [
        "generate",
        "--model",
        str(tmp_path / "m"),
        "--answers",
        str(answers),
        "--predictions",
        str(preds),
    ]
    assert main([*argv, "--beam", "2", "--max-new-tokens", "6"]) == 0
    lines = preds.read_text(encoding="utf-8").split("\n")
    want = complete_lines(model, tok, INPUTS, GenerationSettings(beam_size=2, max_new_tokens=6))
    assert lines[:-1] == want and lines[-1] == ""
    assert main(["score", "--answers", str(answers), "--predictions", str(preds)]) == 0
    with pytest.raises(SystemExit):
        main(
            [
                "generate",
                "--model",
                str(tmp_path / "none"),
                "--answers",
                str(answers),
                "--predictions",
                str(preds),
            ]
        )
