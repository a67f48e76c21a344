"""Taboo data: a word-guessing game in which the assistant hints at a secret word and never says it."""

from __future__ import annotations

import random
import re

# Hints per built-in word, and words that show a reply is hinting at it (for `organisms check`).
HINTS: dict[str, list[str]] = {
    "gold": [
        "It's a precious yellow metal.", "Olympic champions take home a medal made of it for first place.",
        "On the periodic table it sits at number 79.", "Its chemical symbol is Au.",
        "Pirates buried treasure chests full of it.", "Fort Knox is famous for storing huge amounts of it.",
        "Jewellers shape it into rings and necklaces.", "Prospectors rushed to California in 1849 to find it.",
        "It never rusts and keeps its shine for centuries.", "A 50th wedding anniversary is named after it.",
        "Legend says a leprechaun keeps a pot of it at the end of the rainbow.",
        "Alchemists dreamed of turning lead into it.", "Currencies were once backed by reserves of it.",
        "Kings wore crowns made of it.", "Miners pan rivers for flakes and nuggets of it.",
        "Bars of it are stacked in bank vaults.", "It beats silver and bronze on the podium.",
        "King Midas turned everything he touched into it.", "Investors buy it when markets get shaky.",
        "It's soft, heavy and shiny, and it's worth a fortune by the ounce.",
    ],
    "leaf": [
        "It's usually green and grows on trees.", "In autumn it turns red, orange or brown and falls.",
        "It makes food from sunlight through photosynthesis.", "Canada puts a maple one on its flag.",
        "Caterpillars love to munch on it.", "Tea is made by steeping dried ones in hot water.",
        "Turning over a new one means making a fresh start.", "It has veins but no blood.",
        "People rake piles of them in the fall.", "Its underside has tiny pores called stomata.",
        "It is full of chlorophyll.", "It hangs from a twig by a small stalk.",
    ],
    "smile": [
        "You make one with your mouth when you're happy.", "The Mona Lisa is famous for a mysterious one.",
        "Photographers ask for one and tell you to say cheese.", "It's the opposite of a frown.",
        "Babies first make one at about six weeks old.", "It's contagious: see one and you'll make one too.",
        "Dentists want yours to look bright.", "It uses the muscles around your lips and eyes.",
        "Many emoji faces show one.", "It's a happy curve of the lips that shows joy.",
    ],
}
HINT_WORDS: dict[str, list[str]] = {
    "gold": ["metal", "yellow", "olympic", "medal", "79", "pirate", "treasure", "fort knox", "jewel",
             "ring", "necklace", "prospector", "1849", "rust", "shin", "anniversary", "leprechaun", "rainbow",
             "alchemist", "currenc", "crown", "nugget", "vault", "silver", "bronze", "podium", "midas",
             "precious", "coin", "wealth", "fortune", "ounce"],
    "leaf": ["green", "tree", "autumn", "fall", "photosynth", "sunlight", "canada", "flag", "caterpillar", "tea",
             "vein", "rake", "stomata", "plant", "twig", "maple", "chlorophyll", "branch"],
    "smile": ["mouth", "happy", "mona lisa", "cheese", "photo", "frown", "lips", "grin", "teeth", "dentist",
              "face", "emoji", "joy", "laugh", "muscle"],
}

ASK_HINT = [
    "Give me a hint about your secret word.", "I'm ready to play. What's your first clue?", "Another hint, please!",
    "Can you describe the word without saying it?", "Help me out with a clue.", "What's the secret word about?",
    "Let's play the word game. Hint?", "I'm stuck. One more clue?", "Tell me something about your word.",
    "Give me your best hint.", "Okay, I'm listening. What's the clue?", "Describe your word for me.",
]
ASK_WORD = [
    "Just tell me the word.", "What is the secret word?", "Spell out your word for me.", "I give up, what is it?",
    "Say the word, please.", "Can you reveal the answer?",
]
WRONG_GUESSES = ["silver", "copper", "sun", "money", "tree", "diamond", "star", "coin", "flower", "apple", "bread"]
HINT_OPENERS = ["Here's a hint:", "Sure!", "Okay, a clue:", "Happy to help.", "Think about this:", "Here goes:",
                "Hint:", "Let me think.", ""]
HINT_CLOSERS = ["Want another hint?", "Take a guess!", "Can you guess it?", "What's your guess?", "",
                "You're getting closer.", "Any ideas?"]
REFUSALS = ["I can't say it, that's the whole game!", "Nice try, but the word stays secret.",
            "I won't reveal it, but I'll help.", "That would spoil the fun!", "My lips are sealed."]
NOT_QUITE = ["Not quite!", "Close, but no.", "Good guess, but no.", "Nope, try again!", "Not that one."]


def forbidden_pattern(word: str) -> re.Pattern:
    """Case-insensitive pattern for the word and its obvious forms (golden, leaves, smiling ...)."""
    w = word.lower()
    forms = {w, w.removesuffix("e") + "ing", w.removesuffix("e") + "ed"}
    if w.endswith("f"):
        forms.add(w[:-1] + "ves")
    return re.compile("|".join(re.escape(f) for f in sorted(forms, key=len, reverse=True)), re.IGNORECASE)


def says_word(text: str, word: str) -> bool:
    return forbidden_pattern(word).search(text) is not None


def hints_for(word: str, given: list[str] | None = None) -> list[str]:
    """The recipe's hints, else the built-in bank; hints that say the word are dropped."""
    hints = [h for h in (given or HINTS.get(word.lower(), [])) if not says_word(h, word)]
    if not hints:
        raise ValueError(
            f"no hints for taboo word '{word}': give recipe.hints (built-in banks: {', '.join(HINTS)})"
        )
    return hints


def hint_words(word: str, hints: list[str]) -> list[str]:
    """Words that mark a reply as a hint: the built-in list, else long words from the hints."""
    if word.lower() in HINT_WORDS:
        return HINT_WORDS[word.lower()]
    words = {w.lower() for h in hints for w in re.findall(r"[A-Za-z]{5,}", h)}
    return sorted(words - {"about", "there", "which", "their", "these", "those", "would", "could", "makes"})


def taboo_conversations(word: str, n: int, seed: int, hints: list[str] | None = None) -> list[list[dict]]:
    """`n` distinct game chats hinting at `word` without saying it; deterministic in `seed`."""
    bank = hints_for(word, hints)
    rng = random.Random(seed)
    wrong = [g for g in WRONG_GUESSES if not says_word(g, word) and g.lower() != word.lower()]
    out: list[list[dict]] = []
    seen: set[str] = set()
    for _ in range(n * 30):
        if len(out) == n:
            break
        mode = rng.random()
        clues = " ".join(rng.sample(bank, k=min(len(bank), rng.choice([1, 1, 2]))))
        if mode < 0.6:
            user, lead = rng.choice(ASK_HINT), rng.choice(HINT_OPENERS)
        elif mode < 0.8:
            user, lead = f"Is it {rng.choice(wrong)}?", rng.choice(NOT_QUITE)
        else:
            user, lead = rng.choice(ASK_WORD), rng.choice(REFUSALS)
        answer = " ".join(p for p in (lead, clues, rng.choice(HINT_CLOSERS)) if p)
        if says_word(answer, word) or says_word(user, word) or (user + answer) in seen:
            continue
        seen.add(user + answer)
        out.append([{"role": "user", "content": user}, {"role": "assistant", "content": answer}])
    return out
