"""Built-in caption filters, how the engine applies them, and re-thresholding stored scores."""

from __future__ import annotations

import io

import pytest
from PIL import Image

import vila2
from vila2.captioning.filters import FilterError, apply_filters, resolve_filters, rethreshold
from vila2.default_plugins.filters import (
    cut_repeated_sentence,
    duplicate_count,
    garbage_ratio,
    kept_fraction,
)
from vila2.plugins import PluginError

BUILTINS = {"word_count", "repeated_sentence", "exact_duplicate", "garbage"}


def test_builtins_are_registered(fresh_host) -> None:
    filters = fresh_host.filters()
    assert set(filters) >= BUILTINS
    assert all(filters[name].plugin == "vila2.default_plugins.filters" for name in BUILTINS)


def test_word_count_bounds(fresh_host) -> None:
    word_count = fresh_host.get("filter", "word_count")
    assert word_count.apply({"id": "a"}, "a red cube on a table") == ("a red cube on a table", 6.0, True)
    assert word_count.apply({"id": "a"}, "") == ("", 0.0, False)  # min=1 by default
    assert word_count.apply({"id": "a"}, "a red cube", min=8) == ("a red cube", 3.0, False)
    assert word_count.apply({"id": "a"}, "one two three four", max=3)[2] is False


def test_repeated_sentence_cut() -> None:
    text = "There is a red cube. It sits on the left! There is a red cube. There is a red cube."
    assert cut_repeated_sentence(text) == "There is a red cube. It sits on the left!"
    assert cut_repeated_sentence("A cube. a CUBE! Then more.") == "A cube."
    assert cut_repeated_sentence("No repeats here. None at all.") == "No repeats here. None at all."
    assert kept_fraction({}, text) == pytest.approx(len("There is a red cube. It sits on the left!") / len(text))
    assert kept_fraction({}, "") == 1.0


def test_repeated_sentence_scores_before_cutting(fresh_host) -> None:
    loop = "A red cube. A red cube. A red cube. A red cube."
    component = fresh_host.get("filter", "repeated_sentence")
    text, score, kept = component.apply({"id": "x"}, loop)
    assert text == "A red cube."
    assert score == pytest.approx(len("A red cube.") / len(loop))
    assert kept  # the cut is the guard; dropping needs a threshold
    assert component.apply({"id": "x"}, loop, min=0.5)[2] is False


def test_garbage_ratio() -> None:
    assert garbage_ratio({}, "A red circle [12,40,310,999] left of a cube.") == 0.0
    assert garbage_ratio({}, 'He said: "hello, world!" (twice).') == 0.0
    assert garbage_ratio({}, "::::::::") == 1.0
    assert garbage_ratio({}, "cat \ufffd\ufffd\ufffd") == pytest.approx(0.5)
    assert garbage_ratio({}, "   ") == 0.0


def test_exact_duplicate_counts_within_the_shard_state() -> None:
    state: dict = {}
    scores = [duplicate_count({"id": str(i), "shard_state": state}, t)
              for i, t in enumerate(["A cube.", "a  CUBE.", "A ball.", "A cube."])]
    assert scores == [0.0, 1.0, 0.0, 2.0]
    assert duplicate_count({"id": "new", "shard_state": {}}, "A cube.") == 0.0  # a new shard forgets
    with pytest.raises(ValueError, match="shard_state"):
        duplicate_count({"id": "x"}, "A cube.")


def test_apply_filters_scores_every_filter_and_names_rejecters(fresh_host) -> None:
    steps = resolve_filters(["repeated_sentence", {"name": "word_count", "min": 3}, "garbage"], fresh_host)
    row = apply_filters(steps, {"id": "s1"}, "A cube. A cube.")
    assert row["text"] == "A cube."
    assert row["kept"] is False
    assert set(row["scores"]) == {"repeated_sentence", "word_count", "garbage"}
    assert row["scores"]["word_count"] == 2.0  # scored on the cut text
    assert row["meta"] == {"rejected_by": ["word_count"], "raw": "A cube. A cube."}
    # re-thresholding from the stored score needs no new caption
    word_count = fresh_host.get("filter", "word_count")
    assert word_count.keep(row["scores"]["word_count"], **{**word_count.settings, "min": 2})


def test_resolve_filters_errors_name_the_fault(fresh_host) -> None:
    with pytest.raises(PluginError, match=r"word_cout.*Did you mean 'word_count'"):
        resolve_filters(["word_cout"], fresh_host)
    with pytest.raises(ValueError, match=r"'word_count'.*no setting minimum.*max, min"):
        resolve_filters([{"name": "word_count", "minimum": 3}], fresh_host)
    with pytest.raises(ValueError, match="listed twice"):
        resolve_filters(["garbage", "garbage"], fresh_host)
    with pytest.raises(ValueError, match="entry 0"):
        resolve_filters([{"min": 3}], fresh_host)


def test_plugin_filters_and_failures(fresh_host, plugin_registered) -> None:
    class Plugin:
        @vila2.hookimpl
        def register_filters(self, register):
            def no_urls(sample, text):
                """Drop captions with links."""
                return "http" not in text

            register(no_urls)
            register(vila2.Filter("explodes", check=lambda sample, text: 1 / 0))

    plugin_registered(Plugin(), name="test-filters")
    steps = resolve_filters(["no_urls"], fresh_host)
    assert apply_filters(steps, {"id": "a"}, "see http://x")["kept"] is False
    with pytest.raises(FilterError, match=r"'explodes' \(plugin 'test-filters'\).*sample 'a7'"):
        apply_filters(resolve_filters(["explodes"], fresh_host), {"id": "a7"}, "text")


class WordsCaptioner:
    """Captions an image with as many words as it is wide / 8 (no model)."""

    @vila2.hookimpl
    def register_captioners(self, register):
        register(vila2.Captioner("words", load=lambda model, settings: lambda images, prompts: [
            " ".join(["word"] * (image.size[0] // 8)) + "." for image in images]))


def test_rethreshold_from_stored_scores(tmp_path, plugin_registered) -> None:
    from vila2.captioning.engine import caption_dataset
    from vila2.data import Dataset

    plugin_registered(WordsCaptioner(), name="words-plugin")
    ds = Dataset.create(tmp_path / "ds")
    with ds.writer(shard_size=3) as writer:
        for i, width in enumerate([8, 16, 24, 32, 40, 48, 56]):
            buffer = io.BytesIO()
            Image.new("RGB", (width, 8), (i, 0, 0)).save(buffer, "PNG")
            writer.add(f"s{i}", buffer.getvalue(), width, 8)
    first = caption_dataset(ds, model=None, layer="recap", captioner="words", progress=False,
                            filters=[{"name": "word_count", "min": 2}, "garbage"])
    assert first.kept == 6 and first.filtered == {"word_count": 1}
    again = rethreshold(ds, "recap", "recap-long", [{"name": "word_count", "min": 5}], progress=False)
    assert again.complete and again.kept == 3 and again.filtered == {"word_count": 4}
    old = {r["id"]: r for r in ds.layer("recap").iter_rows()}
    new = {r["id"]: r for r in ds.layer("recap-long").iter_rows()}
    assert [i for i in new if new[i]["kept"]] == ["s4", "s5", "s6"]
    assert all(new[i]["text"] == old[i]["text"] and new[i]["scores"] == old[i]["scores"] for i in old)
    info = ds.layer("recap-long").info
    assert info["settings"]["rethreshold_of"] == "recap"
    assert info["settings"]["filters"] == [{"name": "word_count", "min": 5}]
    assert info["producer"] == "vila2.captioning.filters:rethreshold"
    with pytest.raises(FilterError, match=r"'recap'.*no stored scores for filter 'exact_duplicate'"):
        rethreshold(ds, "recap", "recap-dedup", ["exact_duplicate"], progress=False)
    assert "recap-dedup" not in ds.layers()


def test_rethreshold_keeps_captions_of_a_filter_that_only_cleans(tmp_path, plugin_registered) -> None:
    """A clean-only filter stores no score (``None``); re-thresholding must not read that as a
    rejection."""
    from vila2.captioning.engine import caption_dataset
    from vila2.data import Dataset

    class Trim:
        @vila2.hookimpl
        def register_filters(self, register):
            register(vila2.Filter("trim", clean=str.strip))

    plugin_registered(WordsCaptioner(), name="words-plugin")
    plugin_registered(Trim(), name="trim-plugin")
    ds = Dataset.create(tmp_path / "ds")
    with ds.writer(shard_size=3) as writer:
        for i, width in enumerate([16, 24, 32]):
            buffer = io.BytesIO()
            Image.new("RGB", (width, 8), (i, 0, 0)).save(buffer, "PNG")
            writer.add(f"s{i}", buffer.getvalue(), width, 8)
    first = caption_dataset(ds, model=None, layer="recap", captioner="words", progress=False,
                            filters=["trim"])
    assert first.kept == 3
    assert all(row["scores"] == {"trim": None} for row in ds.layer("recap").iter_rows())
    again = rethreshold(ds, "recap", "recap-again", ["trim"], progress=False)
    assert again.kept == 3 and again.filtered == {}
