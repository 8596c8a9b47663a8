"""The command line's words, one by one, before Hydra reads them: each must be `key=value`.

Hydra's own parse errors ("missing EQUAL at '<EOF>'", "LexerNoViableAltException") name its
grammar, not the mistake, and end with exit status 1. Here every override is parsed alone, so
the message can name the word, say what is wrong with it and show how to write it. Torch-free.
"""

from __future__ import annotations

from dlexp.cli.overrides import fail

GRAMMAR = "https://hydra.cc/docs/advanced/override_grammar/basic/"


def check_grammar(overrides: list[str], multirun: bool) -> None:
    """Exit with one message for the first word Hydra could not read, or for several values
    given to one key without -m (Hydra would call that ambiguous and stop)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    parser = OverridesParser.create()
    for i, word in enumerate(overrides):
        try:
            (parsed,) = parser.parse_overrides([word])
        except HydraException as exc:
            fail(explain(word, overrides[i + 1] if i + 1 < len(overrides) else None, exc))
        else:
            if not parsed.key_or_group:
                fail(f"'{word}': a value without a key; write key=value, e.g. trainer.epochs=5")
            if parsed.is_sweep_override() and not multirun:
                fail(
                    f"{word}: several values make a sweep, which needs -m: dlexp -m {word} ... "
                    f"runs one job per value. If the comma belongs to one value, quote it: "
                    f"{quoted(word)}"
                )


def explain(word: str, following: str | None, exc: Exception) -> str:
    """Why `word` is not an override, and how to write it."""
    key, eq, value = word.partition("=")
    if not eq and not word.startswith("~"):
        if following is not None and "=" not in following:
            return (
                f"'{word} {following}': a value is joined to its key with '=', without spaces: "
                f"write {word}={following}"
            )
        return f"'{word}': expected key=value (e.g. {word}=...); `dlexp --help` lists the keys"
    odd = sorted({c for c in value if not c.isascii()})  # letters Hydra reads only quoted
    what = f"the character{'s' if len(odd) > 1 else ''} {' '.join(odd)}" if odd else "its syntax"
    first = str(exc).splitlines()[-2 if "See https" in str(exc) else -1].strip()
    if odd or "LexerNoViableAlt" in str(exc):
        return (
            f"{word}: Hydra cannot read {what} in a value without quotes. Quote the value "
            f"(the outer single quotes keep the shell from removing the inner ones): "
            f"{quoted(word)}"
        )
    return (
        f"{word}: not a valid key=value ({first}). Values with spaces, commas, brackets or "
        f"quotes need quoting, e.g. {quoted(word)}; lists are written [a,b], see {GRAMMAR}"
    )


def quoted(word: str) -> str:
    """`key=value` as a shell argument whose value Hydra reads as one string."""
    key, _, value = word.partition("=")
    inner = f'"{value}"' if '"' not in value else f"'{value}'"
    outer = "'" if "'" not in inner else '"'
    return f"{outer}{key}={inner}{outer}"
