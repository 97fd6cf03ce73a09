"""YAML for configuration: safe loading only, bounded before anything is built.

``yaml.safe_load`` refuses tags that build objects, but not a document that is small on disk
and huge once its aliases are expanded (ten lines of ``&a [*b, *b, ...]`` make billions of
nodes), nor deep nesting (libyaml's composer recurses in C and crashes the process on it).
One pass over the parser's events (flat, nothing built) measures both first.
"""

from __future__ import annotations

import re

import yaml
from yaml.events import AliasEvent, CollectionEndEvent, CollectionStartEvent, ScalarEvent

# libyaml's loader is ~17 times faster than the pure-Python one; both are the safe loaders.
SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_INT, _FLOAT = "tag:yaml.org,2002:int", "tag:yaml.org,2002:float"
_BOOL = "tag:yaml.org,2002:bool"


class ConfigLoader(SAFE_LOADER):
    """The safe loader, with numbers read as people write them (YAML 1.2's core schema):
    ``1e-4`` is a number (YAML 1.1 wants ``1.0e-4`` and read ``1e-4`` as text, which a
    setting then refused as "not a number"), ``010`` is ten (not octal eight) and ``1:30``
    is text (not ninety), and digits may be grouped (``1_000``); booleans are ``true`` and
    ``false`` only (``no``, ``on`` are text); and a key given twice in one mapping is an
    error (the last one silently won: a second ``model:`` section dropped the first)."""

    def construct_mapping(self, node, deep=False):
        seen = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # (<<: merges may override: that is what they are for)
            key = self.construct_object(key_node, deep=deep)
            try:
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        "while reading a mapping", node.start_mark,
                        f"{key!r} is given twice (first on line {seen[key].line + 1})",
                        key_node.start_mark)
                seen[key] = key_node.start_mark
            except TypeError:  # an unhashable key: the base class says so
                pass
        return super().construct_mapping(node, deep=deep)

    def construct_yaml_int(self, node):
        text = self.construct_scalar(node).replace("_", "").lower()
        sign = -1 if text.startswith("-") else 1
        text = text.lstrip("+-")
        base = 16 if text.startswith("0x") else 8 if text.startswith("0o") else 10
        return sign * int(text[2:] if base != 10 else text, base)


ConfigLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag not in (_INT, _FLOAT, _BOOL)]
    for first, resolvers in SAFE_LOADER.yaml_implicit_resolvers.items()}
# Booleans as YAML 1.2 has them: true and false only (1.1's yes, no, on and off are text, so a
# column named "no" or "on" can be input.key: it was read as False, and refused as no name).
ConfigLoader.add_implicit_resolver(
    _BOOL, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))
ConfigLoader.add_implicit_resolver(
    _INT, re.compile(r"^(?:[-+]?[0-9][0-9_]*|0o[0-7]+|0x[0-9a-fA-F]+)$"), list("-+0123456789"))
ConfigLoader.add_implicit_resolver(
    _FLOAT, re.compile(r"^(?:[-+]?(?:\.[0-9]+|[0-9][0-9_]*(?:\.[0-9_]*)?)(?:[eE][-+]?[0-9]+)?"
                       r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"), list("-+.0123456789"))
ConfigLoader.add_constructor(_INT, ConfigLoader.construct_yaml_int)
MAX_BYTES = 4 << 20  # a configuration is a few kB; a page of means_init is still far below
MAX_NODES = 1_000_000  # scalars and collections, aliases expanded
MAX_DEPTH = 64


class ConfigDumper(yaml.SafeDumper):
    """The safe dumper, quoting text that :class:`ConfigLoader` would read as a number: the
    configuration ``--check-config`` prints then loads back as it was (``path: 1e3``,
    unquoted by YAML 1.1's rules, came back as the number 1000.0)."""


ConfigDumper.yaml_implicit_resolvers = {
    first: list(resolvers) for first, resolvers in ConfigLoader.yaml_implicit_resolvers.items()}


def dump(value, **settings) -> str:
    """``value`` as YAML that :func:`load` reads back equal (``yaml.safe_dump``'s settings).

    >>> dump({"path": "1e3", "n": 1e3}, sort_keys=False, default_flow_style=True).strip()
    "{path: '1e3', n: 1000.0}"
    """
    return yaml.dump(value, Dumper=ConfigDumper, **settings)


class YAMLRefused(ValueError):
    """Not valid, or too big or deep to load; the message is one line."""


def load(text: str, name: str = "<string>"):
    """The document in ``text`` as plain data (dicts, lists, strings, numbers, ...)."""
    if len(text) > MAX_BYTES:
        raise YAMLRefused(f"{name}: {len(text)} characters, more than a configuration holds "
                          f"({MAX_BYTES})")
    try:
        _check_size(yaml.parse(text, Loader=SAFE_LOADER), name)
        return yaml.load(text, Loader=ConfigLoader)  # a SafeLoader: yaml.safe_load, faster
    except yaml.YAMLError as exc:
        raise YAMLRefused(f"{name}: not valid YAML: {one_line(exc)}") from None
    except YAMLRefused:
        raise
    except (ValueError, TypeError, KeyError, IndexError, AttributeError, OverflowError) as exc:
        # An explicit tag on a value it cannot build (``!!int 1e3``, ``!!bool maybe``,
        # ``!!timestamp 2020-13-45``): PyYAML's constructors raise Python's own errors.
        raise YAMLRefused(f"{name}: not valid YAML: a tagged value that cannot be read "
                          f"({type(exc).__name__}: {' '.join(str(exc).split())[:80]})") from None


def one_line(exc: yaml.YAMLError) -> str:
    """A YAML error as one line: where, and what."""
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    problem = getattr(exc, "problem", None)
    if problem is None:
        return " ".join(str(exc).split())
    context = getattr(exc, "context", None)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    what = f"{context}: {problem}" if context else problem
    if problem.startswith("could not determine a constructor for the tag"):
        tag = problem.rsplit(" ", 1)[-1].strip("'").replace("tag:yaml.org,2002:", "!!")
        what = f"the tag {tag} is not allowed (plain values only)"
    return " ".join(f"{where}{what}".split())


def _check_size(events, name: str) -> None:
    """Refuse more than MAX_NODES nodes (aliases counted as what they stand for) or nesting
    deeper than MAX_DEPTH, before the composer sees the document."""
    sizes = {}  # anchor -> nodes it stands for
    stack = [[None, 0]]  # open collections: [anchor, nodes so far]; the first is the stream
    for event in events:
        if isinstance(event, CollectionStartEvent):
            if len(stack) > MAX_DEPTH:
                raise YAMLRefused(f"{name}: nested deeper than {MAX_DEPTH} levels")
            stack.append([event.anchor, 1])
            continue
        if isinstance(event, CollectionEndEvent):
            anchor, n = stack.pop()
        elif isinstance(event, AliasEvent):
            anchor, n = None, sizes.get(event.anchor)
            if n is None:  # an alias inside its own anchor, or an undefined one
                raise YAMLRefused(f"{name}: the alias *{event.anchor} refers to itself or to "
                                  "nothing")
        elif isinstance(event, ScalarEvent):
            anchor, n = event.anchor, 1
        else:
            continue
        if anchor is not None:
            sizes[anchor] = n
        stack[-1][1] += n
        if stack[-1][1] > MAX_NODES:
            raise YAMLRefused(f"{name}: more than {MAX_NODES:,} values once its aliases are "
                              "expanded")
