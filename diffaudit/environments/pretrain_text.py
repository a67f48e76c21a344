"""The local random-text corpus D^pt, written by the embedded base model.

Source: no package on PyPI ships a few thousand diverse English web-like texts under a clear licence
(we searched the registry for corpora, Wikipedia samples, quote and story collections), so, as the
brief allows, the embedded SmolLM2-135M-Instruct writes them. Each text answers one of our own
requests "write <genre> about <topic>", sampled at temperature 1.0 with a fixed seed. Genres and
topics are chosen to be unrelated to every organism (no elections, medicine, finance, sport, baking,
concrete, code comments, animals, or the taboo words). Licence: outputs of SmolLM2 (Apache-2.0);
the requests are diffaudit's own.

At scale the paper's FineWeb sample replaces this corpus (`hf:science-of-finetuning/fineweb-1m-sample`).
"""

from __future__ import annotations

import random
from pathlib import Path

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from diffaudit.environments.progress import note

N_TEXTS = 2000
MAX_NEW_TOKENS = 24
CHUNK = 64
SEED = 1234

GENRES = (
    "the opening paragraph of a news article",
    "a short encyclopedia entry",
    "a paragraph from a travel blog",
    "a forum post asking for advice",
    "a paragraph from a history textbook",
    "a product description for an online shop",
    "the start of a short story",
    "a paragraph from a personal diary",
    "a how-to guide",
    "a paragraph from a museum leaflet",
    "a letter to a local newspaper",
    "the introduction of a science magazine article",
    "a review posted on a website",
    "a paragraph from a school essay",
    "an announcement from a community club",
    "a paragraph of a biography",
)

TOPICS = (
    "lighthouses", "the history of the bicycle", "volcanoes in Iceland", "jazz in the 1920s", "chess openings",
    "the Silk Road", "renewable wind energy", "mountain hiking in Norway", "the invention of the printing press",
    "origami", "the Moon landings", "coral reefs", "ancient Egyptian pyramids", "public libraries",
    "railway timetables", "knitting", "the northern lights", "photography with film cameras", "rainforests",
    "the Great Wall of China", "sailing boats", "tea ceremonies in Japan", "the planet Mars", "old castles",
    "street markets in Morocco", "learning a second language", "classical music concerts", "desert climates",
    "paper making", "the Eiffel Tower", "glaciers", "a small fishing village", "vintage radios",
    "hot air balloons", "medieval manuscripts", "city parks", "the water cycle", "suspension bridges",
    "pottery", "a science fair", "the solar system", "wooden furniture", "a winter festival", "theatre costumes",
    "submarines", "the history of maps", "recycling plastic", "the Amazon river", "garden tools",
    "stamp collecting", "a snowstorm", "a museum of clocks", "crossword puzzles", "the Renaissance painters",
    "electric trams", "a mountain cabin", "the history of writing", "telescopes", "a village choir",
    "geology of canyons", "a bookshop", "the Arctic ocean", "folk dances", "early aviation", "tides",
    "the history of glass", "a rainy afternoon", "road trips", "the Roman alphabet", "magnets", "a harbour town",
    "the history of the telephone", "board games", "weather forecasting", "bamboo", "a lost umbrella",
    "origins of the calendar", "the piano", "quilts", "sand dunes", "robot vacuum cleaners", "typewriters",
    "solar eclipses", "a train journey across Canada", "translation of poetry", "fountain pens",
    "the Dead Sea", "caves and stalactites", "a neighbourhood bakery window display", "kites", "bridges of Venice",
    "the history of postage", "a robotics club", "rivers of Europe", "woodcarving", "a new apartment",
    "windmills in the Netherlands", "the speed of light", "old photographs", "a music festival",
    "a city at night", "digital cameras", "the history of soap", "mosaics", "an island ferry",
    "architecture of cathedrals", "a chemistry set", "the Sahara", "puppet theatre", "the history of umbrellas",
    "a broken bicycle chain", "lunar calendars", "cloud types", "a power outage", "the history of dictionaries",
)


def requests(n: int = N_TEXTS, seed: int = SEED) -> list[str]:
    """The `n` seeded writing requests the base model answers."""
    rng = random.Random(seed)
    pairs = [(g, t) for g in GENRES for t in TOPICS]
    rng.shuffle(pairs)
    while len(pairs) < n:
        pairs += pairs
    return [f"Write {genre} about {topic}. Start directly with the text." for genre, topic in pairs[:n]]


RECIPE_VERSION = 1  # bump when clean() or is_english_prose() change what is kept


def recipe(n: int = N_TEXTS) -> dict:
    """Everything that decides the corpus: a shipped copy is used only when its recorded recipe equals this."""
    from diffaudit.environments.embedded import BASE_MODEL, EMBEDDED_PREFIX, embedded_identity
    from diffaudit.environments.shipped import text_sha256

    return {
        "builder": "pretrain_text", "version": RECIPE_VERSION, "n": n, "max_new_tokens": MAX_NEW_TOKENS,
        "chunk": CHUNK, "seed": SEED, "temperature": 1.0, "dtype": "float32",
        "requests_sha256": text_sha256("\n".join(requests(int(n * 1.25))))[:16],
        "model": embedded_identity(EMBEDDED_PREFIX + BASE_MODEL),
    }  # fmt: skip


def clean(text: str) -> str:
    """Drop a leading title line and surrounding whitespace, keeping the prose."""
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    if len(lines) > 1 and (lines[0].lower().startswith("title") or len(lines[0].split()) <= 6):
        lines = lines[1:]
    return " ".join(ln.strip() for ln in lines).strip()


def is_english_prose(text: str) -> bool:
    """Keep texts of at least five words that are mostly ASCII letters (drops the model's rare gibberish)."""
    letters = [c for c in text if c.isalpha()]
    return len(text.split()) >= 5 and bool(letters) and sum(c.isascii() for c in letters) / len(letters) > 0.97


def build_pretrain_corpus(
    root: Path | None = None, n: int = N_TEXTS, progress: bool = True, max_chunks: int | None = None
) -> tuple[list[str], dict]:
    """Generate the D^pt corpus with the embedded base model; returns the texts and a data card.

    `max_chunks` stops after that many generate calls (their texts are the corpus's first texts exactly).
    """
    import torch

    from diffaudit.environments.backends.hf import HFModelPair
    from diffaudit.environments.embedded import ensure_base_model
    from diffaudit.environments.pair import Sampling

    pair = HFModelPair.base_only(str(ensure_base_model(root)), generation_dtype=torch.float32)  # the recorded recipe
    asks = requests(int(n * 1.25))  # spare requests replace the few answers the prose filter drops
    texts: list[str] = []
    columns = (TextColumn("writing the random-text corpus"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, disable=not progress, transient=True) as bar:
        task = bar.add_task("corpus", total=n)
        for start in range(0, len(asks), CHUNK):
            if len(texts) >= n or (max_chunks is not None and start >= max_chunks * CHUNK):
                break
            sampling = Sampling(max_new_tokens=MAX_NEW_TOKENS, temperature=1.0, top_p=1.0, seed=SEED + start)
            answers = pair.generate("base", asks[start : start + CHUNK], sampling)
            texts += [t for t in map(clean, answers) if is_english_prose(t)]
            bar.update(task, completed=min(len(texts), n))
            note(f"random-text corpus: {min(len(texts), n)}/{n} texts", progress and start % (8 * CHUNK) == 0)
    texts = texts[:n]
    card = {
        "source": (
            f"written by the embedded SmolLM2-135M-Instruct (temperature 1.0, {MAX_NEW_TOKENS} tokens, "
            f"seed {SEED}) answering {len(GENRES)} genres x {len(TOPICS)} topics of diffaudit's own requests"
        ),
        "licence": "model outputs of SmolLM2 (Apache-2.0); requests written for diffaudit",
        "why_generated": "no registry package ships a licensed, diverse English text sample of this size",
    }
    return texts, card
