"""cliplab's tokenizer gives open_clip's SimpleTokenizer ids on 10,000+ varied strings."""

from __future__ import annotations

import csv
import random
from pathlib import Path

import open_clip
import pytest
import torch

import cliplab
from cliplab.tokenizer import Tokenizer, clean_text

WORDS = (
    "a the dog dogs cat man woman child children running jumps over red blue green yellow black white small large "
    "grass beach snow water ball frisbee street bike riding standing sitting two three people group of in on at with "
    "near beside through wearing shirt hat camera mountain climbing surfer wave building city night photo picture"
).split()
SCRIPTS = [
    "北京的一只小狗在雪地里奔跑",
    "東京タワーの夜景",
    "서울의 거리에서 자전거를 타는 사람",
    "Москва — столица России",
    "Η γάτα κάθεται στο παράθυρο",
    "القطة تجلس على النافذة",
    "कुत्ता घास पर दौड़ रहा है",
    "แมวนั่งอยู่บนหน้าต่าง",
    "עברית עם ניקוד",
    "Ελληνικά ΚΕΦΑΛΑΙΑ",
    "Tiếng Việt có dấu",
    "ქართული",
    "Ärger über Öl und Übermut",
    "ﬁne ﬂour",
    "ＦＵＬＬＷＩＤＴＨ　ｔｅｘｔ１２３",
    "e\u0301le\u0300ve combining",
    "İstanbul ışık",
]
EMOJI = ["😀", "👍🏽", "👨‍👩‍👧‍👦", "🇫🇷", "❤️", "🐕‍🦺", "☃", "✨🎉", "🏳️‍🌈"]
ENTITIES = [
    "&amp;",
    "&lt;b&gt;",
    "&quot;hi&quot;",
    "&#39;",
    "&nbsp;",
    "&eacute;",
    "&amp;amp;",
    "&#x1F600;",
    "&copy;",
    "& co",
    "&bogus;",
]
ODD = [
    "\x00",
    "\x07",
    "\t",
    "\n",
    "\r\n",
    "\x0b",
    "\x1b[31m",
    "\x7f",
    "\x85",
    "\u200b",
    "\ufeff",
    "\u00a0",
    "\u2028",
    "\u3000",
    "“curly”",
    "‘single’",
    "cafÃ©",
    "naÃ¯ve",
    "â€œmojibakeâ€\x9d",
    "\x80\x9f",
    "--",
    "...",
    "!!!",
    "?!",
]
PUNCT = list("!\"#$%'()*+,-./:;=?@[\\]^_`{|}~") + ["'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "n't", "I'M", "O'Neil"]
SPECIAL_LITERALS = ("<|startoftext|>", "<|endoftext|>", "<start_of_text>", "<end_of_text>")


def varied_strings(count: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    pools = [WORDS] * 6 + [SCRIPTS, EMOJI, ENTITIES, ODD, PUNCT, [str(rng.randint(0, 10**9)) for _ in range(50)]]
    strings = []
    for i in range(count):
        kind = i % 10
        if kind == 0:  # a very long text that needs truncation
            strings.append(" ".join(rng.choice(WORDS) for _ in range(rng.randint(60, 300))))
        elif kind == 1:  # random code points, surrogates excluded
            strings.append(
                "".join(
                    chr(
                        rng.choice(
                            [
                                rng.randint(0x20, 0x7F),
                                rng.randint(0xA0, 0x2FFF),
                                rng.randint(0x3000, 0xD7FF),
                                rng.randint(0xE000, 0xFFFD),
                                rng.randint(0x1F300, 0x1FAFF),
                            ]
                        )
                    )
                    for _ in range(rng.randint(1, 40))
                )
            )
        elif kind == 2:  # captions with odd casing and spacing
            words = [
                rng.choice(WORDS).upper() if rng.random() < 0.2 else rng.choice(WORDS)
                for _ in range(rng.randint(3, 20))
            ]
            strings.append(rng.choice(["", "  ", "\t"]).join([" ".join(words), rng.choice([".", "!", "", " ."])]))
        else:  # captions mixing every pool
            pieces = [rng.choice(rng.choice(pools)) for _ in range(rng.randint(1, 25))]
            strings.append(rng.choice(["", " "]).join(pieces))
    strings += ["", " ", "\n\n", "a", "A.", "x" * 1000, "😀" * 100, "1" * 200, "&amp;" * 40]
    return [s for s in strings if not any(lit in s for lit in SPECIAL_LITERALS)]


def real_captions(limit: int = 3000) -> list[str]:
    """Flickr8k captions when ../shared is present beside the repository (extra coverage, not required)."""
    table = Path(__file__).resolve().parents[2] / "shared" / "data" / "flickr8k" / "captions.tsv"
    if not table.is_file():
        return []
    with open(table, newline="") as f:
        return [row["caption"] for _, row in zip(range(limit), csv.DictReader(f, delimiter="\t"))]


@pytest.fixture(scope="module")
def reference():
    return open_clip.SimpleTokenizer()


def test_ids_match_openclip_on_10k_varied_strings(reference):
    texts = varied_strings(10_500) + real_captions()
    assert len(texts) >= 10_000
    ours = Tokenizer()(texts, truncate=True)
    theirs = reference(texts, context_length=77)
    mismatched = [texts[i] for i in torch.nonzero((ours != theirs).any(dim=1)).flatten().tolist()]
    assert not mismatched, f"{len(mismatched)} strings differ, e.g. {mismatched[:3]!r}"
    # The corpus really exercises truncation, non-ASCII and the cleaning steps.
    assert (ours[:, -1] == 49407).sum() > 1000
    assert sum(not t.isascii() for t in texts) > 3000


def test_ascii_fast_path_equals_full_cleaning():
    """Skipping ftfy and HTML unescaping for printable ASCII without '&' changes nothing."""
    import html

    import ftfy

    for text in varied_strings(3000, seed=1):
        if text.isascii() and text.isprintable() and "&" not in text:
            full = " ".join(html.unescape(html.unescape(ftfy.fix_text(text))).strip().split()).lower()
            assert clean_text(text) == full


def test_layout_special_tokens_and_padding():
    ids = cliplab.tokenize(["a photo of a cat.", ""])
    assert ids.shape == (2, 77) and ids.dtype == torch.long
    assert ids[0, 0] == 49406 and ids[1, :2].tolist() == [49406, 49407]
    end = ids[0].argmax()
    assert ids[0, end] == 49407 and (ids[0, end + 1 :] == 0).all()
    assert Tokenizer().vocab_size == 49408
    # OpenAI's tokenizer reads its own special-token text as the special token.
    assert cliplab.tokenize("<|endoftext|>")[0, :3].tolist() == [49406, 49407, 49407]


def test_too_long_raises_unless_truncated():
    long_text = "dog " * 100
    with pytest.raises(ValueError, match="context length of 77 tokens.*truncate=True"):
        cliplab.tokenize(long_text)
    ids = cliplab.tokenize(long_text, truncate=True)
    assert ids[0, -1] == 49407 and (ids[0] != 0).all()
    assert cliplab.tokenize("a dog", context_length=5).shape == (1, 5)
    with pytest.raises(ValueError):
        cliplab.tokenize("a big dog", context_length=4)


def test_decode_round_trip():
    tok = Tokenizer()
    # Decoding gives the cleaned text, with a space after each word-final piece.
    assert tok.decode(tok("A photo of a Café, 2 dogs & 1 cat!")[0]) == "a photo of a café , 2 dogs & 1 cat !"
    assert tok.decode(tok.encode("hello world")) == "hello world"
