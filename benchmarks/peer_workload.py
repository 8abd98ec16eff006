"""A synthetic personal-and-project memory workload: memories, one paraphrased question each, several users.

Every memory carries a detail that only it has (a full name, a project or a ticket code) and its question names
that detail in other words, so a server finds the memory by meaning plus that detail, as a person would ask.
Deterministic for a seed; no external data.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass


def _words(text: str, separator: str | None = None) -> list[str]:
    return text.split(separator)


FIRST = _words(
    "Anna Bruno Chloe Dmitri Elena Farid Greta Hugo Ines Jonas Keiko Liam Mira Nadia Oskar Paula Quentin Rosa "
    "Samir Tess Umar Vera Wim Xenia Yusuf Zoe Aino Bastien Carmen Dario Elif Filip Gosia Hamid Ilse Jakub Kira "
    "Lorenzo Maya Nils Olga Pavel Rania Sven Tomas Ulla Viktor Wanda Yara Zeno"
)
LAST = _words(
    "Abbott Baker Castro Duarte Eriksen Ferreira Gallo Hayes Ibsen Jensen Kowalski Laine Moreau Novak Okafor "
    "Petrov Quinn Rossi Santos Tanaka Ueda Varga Weber Xu Yilmaz Zimmer Almeida Brandt Cruz Dahl Engel Fischer "
    "Gruber Horvat Ivanova Janssen Keller Lindqvist Marsh Nakamura Olsen Perez Rahman Schulz Torres Vogel Wolff"
)
RELATIONS = _words("sister brother cousin neighbour colleague friend aunt uncle mentor landlord")
CITIES = _words(
    "Lisbon Porto Madrid Valencia Lyon Marseille Munich Hamburg Vienna Prague Krakow Oslo Bergen Helsinki Tallinn "
    "Riga Dublin Cork Leeds Glasgow Turin Naples Athens Sofia Zagreb Ljubljana Utrecht Ghent Basel Geneva"
)
DRINKS = _words("espresso green-tea oat-latte cocoa chai matcha rooibos americano cortado kombucha")
JOBS = _words("nurse architect welder pharmacist translator plumber geologist pilot baker librarian")
COMPANIES = _words("Acme Globex Initech Umbrella Hooli Vandelay Stark Wayne Wonka Tyrell")
ADJECTIVES = _words("amber brisk cobalt dusty eager frosty golden hollow ivory jade keen lunar misty noble")
ANIMALS = _words("otter falcon badger heron lynx marten osprey puffin raven stoat tapir walrus yak zebu")
DATABASES = _words("PostgreSQL SQLite MySQL Redis Cassandra DuckDB MongoDB ClickHouse CockroachDB Neo4j")
HOSTS = _words("Hetzner Fly.io Render Heroku Vercel Netlify DigitalOcean Linode Scaleway OVH")
BOOKS = _words(
    "Middlemarch Dune Beloved Ulysses Rebecca Emma Persuasion Solaris Neuromancer Kindred Frankenstein Dracula"
)
PETS = _words("Biscuit Pepper Mochi Waffles Juniper Pickles Noodle Clover Ziggy Maple")
TOPICS = _words("budget hiring roadmap offsite migration audit onboarding pricing")
DAYS = _words("Monday Tuesday Wednesday Thursday Friday")
BUGS = _words("a memory leak|a race condition|a broken login page|slow search|a crash on start-up|wrong totals", "|")


@dataclass(frozen=True)
class Item:
    """One memory of one user, with the question that should find it."""

    user: str
    content: str
    question: str


Template = Callable[[random.Random, str], tuple[str, str]]


def _relative(r: random.Random, who: str) -> tuple[str, str]:
    rel, city = r.choice(RELATIONS), r.choice(CITIES)
    return f"My {rel} {who} lives in {city} now.", f"In which city is {who}, my {rel}, based these days?"


def _drink(r: random.Random, who: str) -> tuple[str, str]:
    drink = r.choice(DRINKS)
    return f"{who} always orders a {drink} in the morning.", f"What does {who} like to have at breakfast?"


def _job(r: random.Random, who: str) -> tuple[str, str]:
    job, company = r.choice(JOBS), r.choice(COMPANIES)
    return f"{who} works as a {job} at {company}.", f"What is {who}'s occupation?"


def _book(r: random.Random, who: str) -> tuple[str, str]:
    book = r.choice(BOOKS)
    return f"{who} recommended that I read {book}.", f"Which novel did {who} suggest to me?"


def _pet(r: random.Random, who: str) -> tuple[str, str]:
    pet = r.choice(PETS)
    return f"{who}'s dog is called {pet}.", f"What's the name of {who}'s puppy?"


def _meeting(r: random.Random, who: str) -> tuple[str, str]:
    topic, day, hour = r.choice(TOPICS), r.choice(DAYS), r.randint(8, 17)
    return (
        f"Meeting with {who} about the {topic} on {day} at {hour}:00.",
        f"When am I seeing {who} to discuss the {topic}?",
    )


PERSON_TEMPLATES: tuple[Template, ...] = (_relative, _drink, _job, _book, _pet, _meeting)


def _project_db(r: random.Random, project: str) -> tuple[str, str]:
    db = r.choice(DATABASES)
    return f"The {project} project stores its data in {db}.", f"Which database does {project} rely on?"


def _project_host(r: random.Random, project: str) -> tuple[str, str]:
    host = r.choice(HOSTS)
    return f"We deploy {project} to {host} every Friday.", f"Where does the {project} service get shipped to?"


def _ticket(r: random.Random, code: str) -> tuple[str, str]:
    bug = r.choice(BUGS)
    return f"Ticket {code} is about {bug} in the billing module.", f"What problem does ticket {code} describe?"


def _unique(r: random.Random, seen: set[str], make: Callable[[], str]) -> str:
    """A value this user has not had yet; past 50 collisions a middle initial or number keeps it unique."""
    for attempt in range(10_000):
        value = make()
        if attempt >= 50:
            first, _, rest = value.partition(" ")
            mark = f"{chr(65 + r.randrange(26))}." if rest else str(attempt)
            value = f"{first} {mark} {rest}".strip() if rest else f"{value}-{mark}"
        if value not in seen:
            seen.add(value)
            return value
    raise ValueError("the workload ran out of unique details; use fewer memories per user")


def workload(n: int, users: int, seed: int = 7) -> list[Item]:
    """`n` memories spread round-robin over `users` users, each with a question that names its unique detail."""
    r = random.Random(seed)
    items: list[Item] = []
    seen: dict[str, set[str]] = {}
    for i in range(n):
        user = f"user{i % users}"
        taken = seen.setdefault(user, set())
        kind = r.random()
        if kind < 0.7:
            who = _unique(r, taken, lambda: f"{r.choice(FIRST)} {r.choice(LAST)}")
            content, question = r.choice(PERSON_TEMPLATES)(r, who)
        elif kind < 0.9:
            project = _unique(r, taken, lambda: f"{r.choice(ADJECTIVES)}-{r.choice(ANIMALS)}-{r.randint(1, 99)}")
            content, question = r.choice((_project_db, _project_host))(r, project)
        else:
            code = _unique(r, taken, lambda: f"OPS-{r.randint(1000, 99999)}")
            content, question = _ticket(r, code)
        items.append(Item(user, content, question))
    return items


def sample(items: list[Item], count: int, seed: int = 11) -> Iterator[Item]:
    """A fixed random sample of the items to ask about."""
    chosen = list(items)
    random.Random(seed).shuffle(chosen)
    yield from chosen[:count]
