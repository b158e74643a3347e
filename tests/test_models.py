"""Students, student tokenizers and teachers: shapes, parameter counts, caching, input forms, offline behaviour."""

from __future__ import annotations

import os

# Before transformers/huggingface_hub are imported anywhere in this process: they read it at import time.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import inspect
import json
import textwrap as textwrap_module
import time
from pathlib import Path

import pytest
import torch
from transformers import AutoModel, AutoModelForSequenceClassification

from kd_methods.base import ModelShape, SignalSpec
from models import (
    SPECIAL_TOKENS,
    STUDENTS,
    ModelNotAvailableError,
    StudentTokenizer,
    Teacher,
    build_student,
    count_parameters,
    create_random_teacher,
    get_student_spec,
    get_student_tokenizer,
    minilm_path,
    nominal_params_from_name,
    student_param_count,
)
from models.tokenizer import train_bpe
from tasks.base import Example, TaskData

NAMED = [name for name in STUDENTS if not name.endswith("-tiny")]


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def _code_chunks() -> list[str]:
    """Real code (a standard-library module) cut into function-sized pieces."""
    lines = Path(textwrap_module.__file__).read_text().splitlines()
    return ["\n".join(lines[i : i + 15]) for i in range(0, len(lines), 15)]


@pytest.fixture(scope="module")
def code_data() -> TaskData:
    chunks = _code_chunks()
    train = [Example(i, chunk, i % 2) for i, chunk in enumerate(chunks[:30])]
    val = [Example(i, chunk, 0) for i, chunk in enumerate(chunks[30:34])]
    return TaskData(train=train, validation=val, test=list(val))


@pytest.fixture(scope="module")
def pair_data() -> TaskData:
    chunks = _code_chunks()
    train = [Example(i, chunks[i], i % 2, chunks[i + 1]) for i in range(20)]
    return TaskData(train=train, validation=train[:2], test=train[:2])


def _batch(rows: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = torch.tensor(row)
        mask[i, : len(row)] = 1
    return ids, mask


# -- students ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMED)
def test_named_student_param_count_within_10_percent(name: str) -> None:
    nominal = nominal_params_from_name(name)
    assert nominal is not None and nominal == get_student_spec(name).nominal_params
    count = student_param_count(name, num_labels=2)
    assert abs(count - nominal) / nominal <= 0.10, f"{name}: {count:,} params"


def test_paper_shapes_and_layer_constraints() -> None:
    base = get_student_spec("roberta-124m")
    assert (base.num_layers, base.hidden_size, base.intermediate_size, base.vocab_size) == (
        12,
        768,
        3072,
        50000,
    )
    for name, (vocab, hidden, layers) in {
        "bigru-30m": (20000, 448, 6),
        "bigru-7m": (5000, 320, 3),
        "bigru-1.5m": (2000, 176, 2),
    }.items():
        spec = get_student_spec(name)
        assert (spec.vocab_size, spec.hidden_size, spec.num_layers) == (vocab, hidden, layers)
    vocabs = {"roberta-30m": 20000, "roberta-7m": 5000, "roberta-1.5m": 2000, "roberta-0.6m": 1000}
    for name, vocab in vocabs.items():
        assert get_student_spec(name).vocab_size == vocab
    for spec in STUDENTS.values():
        if spec.arch == "roberta":
            assert 12 % spec.num_layers == 0


def test_meta_count_matches_a_real_build() -> None:
    torch.manual_seed(0)
    for name in ("roberta-tiny", "bigru-tiny"):
        assert student_param_count(name, num_labels=3) == count_parameters(build_student(name, 3))


@pytest.mark.parametrize("name", sorted(STUDENTS))
def test_spec_count_equals_the_built_model(name: str) -> None:
    """The planner counts parameters from the spec (no torch); it must be the model's own count, for any head and
    position table."""
    spec = get_student_spec(name)
    for labels, max_length in ((1, 512), (2, 96), (20, 320)):
        built = student_param_count(name, num_labels=labels, max_length=max_length)
        assert spec.num_parameters(labels, max_length) == built, (name, labels, max_length)


def test_unknown_student_lists_valid_names() -> None:
    with pytest.raises(KeyError) as err:
        get_student_spec("roberta-999m")
    assert "roberta-999m" in str(err.value) and "bigru-7m" in str(err.value)


@pytest.mark.parametrize("name", ["roberta-tiny", "bigru-tiny"])
def test_student_forward_shapes(name: str) -> None:
    torch.manual_seed(0)
    spec = get_student_spec(name)
    model = build_student(name, num_labels=3, vocab_size=300, max_length=16)
    assert model.spec.vocab_size == 300 and model.spec.name == name
    rows = [
        [0, *range(5, 19), 2],
        [0, 7, 8, 2],
        [0, 9, 10, 11, 12, 2],
    ]  # the first is exactly max_length long
    ids, mask = _batch(rows, pad_id=1)
    out = model(ids, mask)
    width = spec.hidden_size if spec.arch == "roberta" else 2 * spec.hidden_size
    layer0 = spec.hidden_size if spec.arch == "roberta" else spec.embed_dim
    assert model.shape == ModelShape(
        spec.num_layers, width, embedding_size=None if layer0 == width else layer0
    )
    assert model.shape.embedding_width == layer0
    assert out.logits.shape == (3, 3)
    assert len(out.hidden_states) == len(out.cls_states) == spec.num_layers + 1
    assert out.hidden_states[0].shape == (3, 16, layer0) and out.cls_states[0].shape == (3, layer0)
    for h, c in zip(out.hidden_states[1:], out.cls_states[1:]):
        assert h.shape == (3, 16, width) and c.shape == (3, width)
    assert torch.equal(out.attention_mask, mask)
    out.logits.sum().backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None for g in grads) and any(g.abs().sum() > 0 for g in grads)


def test_roberta_student_cls_is_position_zero_and_positions_fit_max_length() -> None:
    model = build_student("roberta-tiny", num_labels=2, max_length=16).eval()
    assert model.model.config.max_position_embeddings == 18
    assert model.model.config.pad_token_id == 1
    ids, mask = _batch([[0, *range(5, 19), 2]], pad_id=1)
    with torch.no_grad():
        out = model(ids, mask)
    for h, c in zip(out.hidden_states, out.cls_states):
        assert torch.equal(h[:, 0], c)


def test_bigru_padding_invariance() -> None:
    torch.manual_seed(0)
    model = build_student("bigru-tiny", num_labels=2).eval()
    row = [0, 11, 12, 13, 14, 2]
    alone_ids, alone_mask = _batch([row], pad_id=1)
    # The same row padded to 11 next to a longer one, and placed second so sorting by length matters.
    padded_ids, padded_mask = _batch([[0, *range(20, 29), 2], row], pad_id=1)
    with torch.no_grad():
        alone = model(alone_ids, alone_mask)
        padded = model(padded_ids, padded_mask)
    n = len(row)
    torch.testing.assert_close(padded.logits[1], alone.logits[0])
    for h_a, h_p, c_a, c_p in zip(
        alone.hidden_states, padded.hidden_states, alone.cls_states, padded.cls_states
    ):
        torch.testing.assert_close(h_p[1, :n], h_a[0])
        torch.testing.assert_close(c_p[1], c_a[0])
    for h_p in padded.hidden_states[
        1:
    ]:  # the GRUs run packed: nothing at the padding (the embeddings are dense)
        assert torch.count_nonzero(h_p[1, n:]) == 0
    # cls_states[l] = forward state at the last real token ++ backward state at position 0.
    half = model.spec.hidden_size
    for h, c in zip(padded.hidden_states[1:], padded.cls_states[1:]):
        torch.testing.assert_close(c[1, :half], h[1, n - 1, :half])
        torch.testing.assert_close(c[1, half:], h[1, 0, half:])


def test_bigru_is_the_authors_model() -> None:
    """The authors' BiGRU (kd-empirical ``model_gru.py``): RobertaEmbeddings at the GRU width, one stacked
    bidirectional ``nn.GRU`` (no dropout between layers), RobertaClassificationHead on concat(forward state at the
    last position, backward state at position 0). Built from our weights, it gives our logits on unpadded input."""
    from transformers.models.roberta.modeling_roberta import RobertaClassificationHead, RobertaEmbeddings

    torch.manual_seed(0)
    model = build_student("bigru-7m", num_labels=2, vocab_size=300, max_length=16).eval()
    assert isinstance(model.embeddings, RobertaEmbeddings) and isinstance(
        model.classifier, RobertaClassificationHead
    )
    spec, h = model.spec, model.spec.hidden_size
    assert spec.embed_dim == h == 320 and model.embeddings.word_embeddings.embedding_dim == h
    stacked = torch.nn.GRU(h, h, num_layers=spec.num_layers, bidirectional=True, batch_first=True).eval()
    with torch.no_grad():
        for i, gru in enumerate(model.layers):
            for name, value in gru.named_parameters():  # weight_ih_l0(_reverse) -> weight_ih_l{i}(_reverse)
                getattr(stacked, name.replace("_l0", f"_l{i}")).copy_(value)
        ids = torch.tensor([[0, 5, 6, 7, 8, 2], [0, 9, 9, 10, 11, 2]])
        out = stacked(model.embeddings(input_ids=ids))[0]
        summary = torch.cat((out[:, -1, :h], out[:, 0, h:]), dim=1).unsqueeze(1)
        ours = model(ids, torch.ones_like(ids))
    torch.testing.assert_close(ours.logits, model.classifier(summary))
    # positions reach the GRU: token 9 at positions 2 and 3 embeds differently
    emb = ours.hidden_states[0]
    assert not torch.allclose(emb[1, 1], emb[1, 2])
    # initialised as post_init does: N(0, 0.02), the padding row zero
    words = model.embeddings.word_embeddings.weight
    assert (
        abs(float(words.detach().std()) - 0.02) < 0.002 and torch.count_nonzero(words[spec.pad_token_id]) == 0
    )


def test_bigru_rejects_left_padding() -> None:
    model = build_student("bigru-tiny", num_labels=2)
    ids = torch.tensor([[1, 0, 5, 2]])
    with pytest.raises(ValueError, match="right padding"):
        model(ids, torch.tensor([[0, 1, 1, 1]]))


# -- student tokenizers ------------------------------------------------------------------------------------------


def test_tokenizer_train_cache_load_round_trip(
    tmp_path: Path, code_data: TaskData, pair_data: TaskData
) -> None:
    first = get_student_tokenizer("c_java", 400, [code_data, pair_data], tmp_path)
    assert not first.from_cache and first.path is not None and first.path.parent == tmp_path
    assert [first.tokenizer.token_to_id(t) for t in SPECIAL_TOKENS] == [0, 1, 2, 3, 4]
    assert first.pad_id == 1 and 261 < first.vocab_size <= 400
    file = first.path / "tokenizer.json"
    mtime = file.stat().st_mtime_ns

    second = get_student_tokenizer("c_java", 400, [code_data, pair_data], tmp_path)
    assert second.from_cache and second.path == first.path and file.stat().st_mtime_ns == mtime
    assert second.encode(code_data.train, 64) == first.encode(code_data.train, 64)

    # Other settings or other data give another cache entry; nothing half-written is left behind.
    other = get_student_tokenizer("c_java", 300, [code_data, pair_data], tmp_path)
    assert not other.from_cache and other.path != first.path
    assert sorted(p.name.startswith(".") for p in tmp_path.iterdir()) == [False, False]

    loaded = StudentTokenizer.load(first.path)
    assert loaded.vocab_size == first.vocab_size
    assert loaded.encode(pair_data.train, 48) == first.encode(pair_data.train, 48)


def test_tokenizer_race_loser_loads_the_winner(tmp_path: Path, code_data: TaskData) -> None:
    texts = [ex.code for ex in code_data.train]
    key = "python-300-racekey"

    def texts_fn() -> list[str]:
        # Another process finishes first, while this one is about to train.
        StudentTokenizer(train_bpe(texts, 280)).save(tmp_path / key)
        return texts

    result = StudentTokenizer.train_or_load(texts_fn, 300, tmp_path, key)
    assert result.from_cache and result.vocab_size <= 280
    assert [p.name for p in tmp_path.iterdir()] == [key]


def test_tokenizer_encoding_pairs_and_truncation(code_data: TaskData) -> None:
    tok = StudentTokenizer(train_bpe([ex.code for ex in code_data.train], 400))
    single = tok.encode([Example(0, "def f(x):\n    return x", 0)], 64)[0]
    assert single[0] == 0 and single[-1] == 2 and single.count(2) == 1
    pair = tok.encode([Example(0, "def f(x): return x", 1, "def g(y): return y")], 64)[0]
    assert pair[0] == 0 and pair[-1] == 2 and pair.count(2) == 3
    sep = pair.index(2)
    assert pair[sep + 1] == 2  # <s> A </s></s> B </s>

    long_a, long_b = code_data.train[0].code * 5, code_data.train[1].code * 5
    ids = tok.encode([Example(0, long_a, 0), Example(1, long_a, 0, long_b)], 32)
    assert [len(r) for r in ids] == [32, 32]
    assert ids[1].count(2) == 3 and ids[1][-1] == 2
    assert tok.decode(tok.encode([Example(0, "x = 1", 0)], 16)[0]) == "x = 1"


# -- teachers ----------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def unixcoder_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    texts = _code_chunks()
    return create_random_teacher(
        tmp_path_factory.mktemp("teachers") / "tiny-unixcoder", tokenizer_texts=texts
    )


def test_unixcoder_input_form(unixcoder_dir: Path) -> None:
    assert not (unixcoder_dir / "teacher.json").exists()  # the form comes from the name, as for a hub id
    teacher = Teacher.load(unixcoder_dir, num_labels=2)
    assert teacher.input_form == "unixcoder"
    tok = teacher.tokenizer
    prefix = tok.convert_tokens_to_ids(["<s>", "<encoder-only>", "</s>"])
    assert prefix[1] != tok.unk_token_id and len(set(prefix)) == 3
    eos = tok.convert_tokens_to_ids("</s>")
    long_code = "def f(x):\n    return x + 1\n" * 40
    single, pair = teacher.encode(
        [Example(0, long_code, 0), Example(1, "int a;", 1, long_code)], max_length=40
    )
    assert single[:3] == prefix and single[-1] == eos and len(single) == 40
    # RoBERTa's pair template after the mode prefix: a </s></s> b </s>
    assert pair[:3] == prefix and pair.count(eos) == 4 and pair[-1] == eos and len(pair) == 40
    first_end = pair.index(eos, 3)
    assert pair[first_end + 1] == eos
    assert tok.decode(pair[3:first_end]) == "int a;"  # the short side is kept whole

    plain = Teacher.load(unixcoder_dir, num_labels=2, input_form="default")
    ids = plain.encode([Example(0, "int a;", 0)], 40)[0]
    assert ids[0] == prefix[0] and prefix[1] not in ids


def test_unixcoder_form_needs_encoder_only_token(tmp_path: Path) -> None:
    folder = create_random_teacher(tmp_path / "plain", tokenizer_texts=_code_chunks())
    with pytest.raises(ValueError, match="encoder-only"):
        Teacher.load(folder, num_labels=2, input_form="unixcoder")


def test_teacher_signals_match_plain_hf_forward(unixcoder_dir: Path) -> None:
    teacher = Teacher.load(unixcoder_dir, num_labels=2).eval()
    assert teacher.shape == ModelShape(2, 64) and teacher.num_labels == 2 and teacher.pad_id == 1
    rows = teacher.encode([Example(0, "def f(): pass", 0), Example(1, "x = [1, 2, 3]\nprint(x)", 1)], 32)
    ids, mask = _batch(rows, teacher.pad_id)
    spec = SignalSpec(logits=True, cls_layers=(2, 0), token_layers=(1,))
    with torch.no_grad():
        signals = teacher.signals(ids, mask, spec)
        plain = AutoModelForSequenceClassification.from_pretrained(unixcoder_dir).eval()
        ref = plain(input_ids=ids, attention_mask=mask, output_hidden_states=True)
    assert sorted(signals.cls) == [0, 2] and sorted(signals.tokens) == [1]
    torch.testing.assert_close(signals.logits, ref.logits)
    for layer in (0, 2):
        assert signals.cls[layer].shape == (2, 64)
        torch.testing.assert_close(signals.cls[layer], ref.hidden_states[layer][:, 0])
    assert signals.tokens[1].shape == (2, ids.shape[1], 64)
    torch.testing.assert_close(signals.tokens[1], ref.hidden_states[1])
    assert torch.equal(signals.token_mask, mask)

    only_logits = teacher.signals(ids, mask, SignalSpec(logits=True))
    assert only_logits.cls == {} and only_logits.tokens == {} and only_logits.token_mask is None
    with pytest.raises(ValueError, match="layers 0..2"):
        teacher.signals(ids, mask, SignalSpec(cls_layers=(3,)))

    out = teacher(ids, mask)  # the trainer's interface
    assert len(out.hidden_states) == 3 and torch.equal(out.cls_states[1], out.hidden_states[1][:, 0])


def test_teacher_save_keeps_form_and_weights_and_swaps_head(unixcoder_dir: Path, tmp_path: Path) -> None:
    teacher = Teacher.load(unixcoder_dir, num_labels=2).eval()
    saved = teacher.save(tmp_path / "finetuned")
    assert (saved / "model.safetensors").is_file() and json.loads((saved / "teacher.json").read_text())[
        "input_form"
    ] == "unixcoder"
    again = Teacher.load(saved, num_labels=2).eval()
    assert again.input_form == "unixcoder"
    ids, mask = _batch(teacher.encode([Example(0, "int main() { return 0; }", 0)], 32), 1)
    with torch.no_grad():
        torch.testing.assert_close(again(ids, mask).logits, teacher(ids, mask).logits)
        five = Teacher.load(saved, num_labels=5).eval()
        out = five(ids, mask)
        torch.testing.assert_close(out.hidden_states[-1], teacher(ids, mask).hidden_states[-1])
    assert out.logits.shape == (1, 5) and five.num_labels == 5


def test_minilm_loads_offline_as_teacher() -> None:
    path = minilm_path()
    teacher = Teacher.load(path, num_labels=3).eval()
    assert teacher.input_form == "default" and teacher.shape == ModelShape(6, 384)
    rows = teacher.encode(
        [Example(0, "def add(a, b): return a + b", 0), Example(1, "int x;", 1, "x = 2")], 64
    )
    ids, mask = _batch(rows, teacher.pad_id)
    with torch.no_grad():
        out = teacher(ids, mask)
        encoder = AutoModel.from_pretrained(path).eval()
        ref = encoder(input_ids=ids, attention_mask=mask, output_hidden_states=True)
    assert out.logits.shape == (2, 3)
    # The pretrained encoder weights were loaded, not re-initialised with the new head.
    torch.testing.assert_close(out.hidden_states[-1], ref.hidden_states[-1])


def test_modernbert_teacher_hidden_states_start_with_embeddings(tmp_path: Path) -> None:
    folder = create_random_teacher(tmp_path / "modernbert", arch="modernbert", num_layers=3, num_labels=4)
    teacher = Teacher.load(folder, num_labels=4).eval()
    assert type(teacher.model).__name__ == "ModernBertForSequenceClassification"
    ids, mask = _batch(
        teacher.encode([Example(0, "def f(): pass", 0), Example(1, "x", 0)], 32), teacher.pad_id
    )
    with torch.no_grad():
        out = teacher(ids, mask)
        embedded = teacher.model.model.embeddings(input_ids=ids)
    assert len(out.hidden_states) == 4 and out.logits.shape == (2, 4)
    torch.testing.assert_close(out.hidden_states[0], embedded)


def test_missing_hub_id_fails_fast_and_clearly() -> None:
    missing = "kdstudy-no-such-org/no-such-teacher-model"
    start = time.monotonic()
    with pytest.raises(ModelNotAvailableError) as err:
        Teacher.load(missing, num_labels=2)
    assert time.monotonic() - start < 10
    message = str(err.value)
    assert missing in message and f"`hf download {missing}`" in message and "folder" in message
    assert "huggingface-cli" not in message  # huggingface_hub 2.x ships only `hf`
    with pytest.raises(ModelNotAvailableError, match="does not exist"):
        Teacher.load("/no/such/teacher/folder", num_labels=2)


def test_trust_remote_code_is_off_by_default(tmp_path: Path, unixcoder_dir: Path) -> None:
    assert inspect.signature(Teacher.load).parameters["trust_remote_code"].default is False
    folder = tmp_path / "custom"
    folder.mkdir()
    for file in unixcoder_dir.glob("tokenizer*"):
        (folder / file.name).write_bytes(file.read_bytes())
    sentinel = tmp_path / "remote_code_ran"
    (folder / "config.json").write_text(
        json.dumps(
            {
                "model_type": "kdstudy-custom",
                "auto_map": {
                    "AutoConfig": "custom_code.CustomConfig",
                    "AutoModelForSequenceClassification": "custom_code.CustomModel",
                },
            }
        )
    )
    (folder / "custom_code.py").write_text(
        f"from pathlib import Path\nPath({str(sentinel)!r}).write_text('ran')\n"
    )
    with pytest.raises(ValueError, match="trust_remote_code"):
        Teacher.load(folder, num_labels=2)
    assert not sentinel.exists()


def test_teacher_encode_never_exceeds_its_position_embeddings(tmp_path):
    """A student's longer max length must not index past a smaller teacher's positions."""
    from models.teacher import Teacher, create_random_teacher
    from tasks.base import Example

    folder = create_random_teacher(
        tmp_path / "t",
        arch="roberta",
        num_layers=1,
        hidden_size=16,
        num_heads=2,
        intermediate_size=32,
        tokenizer_texts=["def f(x): return x + 1"] * 50,
        vocab_size=300,
        max_length=20,
    )
    teacher = Teacher.load(str(folder), 2)
    assert teacher.max_tokens == 20
    ids = teacher.encode([Example(0, "def f(x): return x + 1 " * 40, 0)], max_length=64)
    assert len(ids[0]) == 20
    out = teacher(torch.tensor(ids), torch.ones(1, 20, dtype=torch.long))
    assert out.logits.shape == (1, 2)


def test_a_students_registry_shape_is_the_shape_of_the_built_model():
    """The planner reads ``StudentSpec.model_shape()`` without building the model; it must be what a built one
    reports (BiGRU: 2 x hidden wide, the embedding width apart when it differs)."""
    from models import STUDENTS, build_student

    for name, spec in STUDENTS.items():
        with torch.device("meta"):
            built = build_student(name, 3).shape
        assert spec.model_shape() == built, name
    assert STUDENTS["bigru-7m"].model_shape().embedding_width == 320  # E = H, as the authors embed
