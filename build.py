#!/usr/bin/env python3
"""Build dist/claw-cage.pyz: one Python source file carrying the program as a packed payload.

    python3 build.py [--repo OWNER/REPO] [--ref REF] [--out PATH]
    python3 build.py --write-script     regenerate deploy/iptables-rules.sh from the rule table

Why this shape (see docs/design.md): `curl ... | python3 -` compiles stdin as source, so a
plain zipapp (binary) cannot be piped. The output is a single parenthesised expression that
exec()s the readable launcher (bootstrap/launcher.py) and hands it the program: the sources of
bootstrap/claw_cage as one bz2 stream, 14 bits per two bytes (see pack()). A download cut at any byte
leaves the parenthesis open: a SyntaxError before anything runs.

Reproducible: the modules go in sorted order; nothing depends on the clock, file modification
times, the umask, the locale or the Python version (3.8 to the newest:
tests/pyz/test_reproducible.py). bzip2's encoder has given the same bytes since libbzip2 1.0
(unlike deflate, where zlib-ng and zlib differ). Standard library only.

Release naming: a build names itself "release vX" only when HEAD carries the tag
"v" + __version__ and none of the files it reads differs from that commit (or is untracked);
a build from a tree with changes says "+dirty" and never names a release.

Size: CPython reads a piped script at about 1 ms per KiB, so every byte costs start-up time;
the budget is 100 KiB (tests/pyz/test_size.py). The modules travel without their comments,
docstrings and the spaces Python does not need (strip_source: token-exact, proven by
tests/pyz/test_build.py comparing syntax trees), the names no other scope sees respelled in
one or two letters (rename_locals, private_plan: checked against symtable), compressed as one stream (bz2 beat per-file
deflate in a zip by 19%, lzma by 2%), in an encoding that costs 8/7 = 14.3% (see pack()) where
the 7-bit text with escapes cost 18% and base85 25%. The readable source is the repository at
the commit --version names.
"""

import argparse
import ast
import hashlib
import io
import os
import re
import string
import sys
import tokenize
import bz2

ROOT = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.join(ROOT, "bootstrap")
PKG = os.path.join(SRC, "claw_cage")
DEPLOY = os.path.join(ROOT, "deploy")
sys.path.insert(0, SRC)

from claw_cage import __version__, cli, composefile, runner  # noqa: E402

DEFAULT_REPO = "VelocityPulse/claw-cage"
SCRIPT_NAME = "iptables-rules.sh"

HEAD_TEMPLATE = '''\
(  # claw-cage @VERSION@ (@NAME@@REPO@@@REF@): installs OpenClaw in Docker behind a cage.
   # Python source for `curl -fsSL URL | python3 -`: ONE expression from this "(" to the
   # last byte, so a cut download is a SyntaxError. It runs the launcher (bootstrap/launcher.py)
   # on the program, bz2-compressed, 14 bits per 2 bytes. Readable source: the commit above.
  (lambda launcher, payload: exec(compile(launcher, "claw-cage.pyz/launcher.py", "exec"),
                                  {"__name__": "__main__", "LAUNCHER": launcher,
                                   "PAYLOAD": payload})
  )(r\'\'\''''
MID = "''', r\"\"\""  # raw: a plain string literal this long takes 5x longer to compile
TAIL = '"""))'  # the call's ")", then the first "(": a cut between lambda and call fails too


def sha256_file(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def deploy_hashes():
    """sha256 of every file in deploy/, by name: the installer refuses anything else."""
    return {name: sha256_file(os.path.join(DEPLOY, name))
            for name in sorted(os.listdir(DEPLOY))
            if os.path.isfile(os.path.join(DEPLOY, name))}


def git(*args):
    """One git command in this checkout; None when git or the checkout is missing."""
    try:
        result = runner.run(["git", "-C", ROOT] + list(args), check=False)
    except runner.CommandError:
        return None
    return result.stdout if result.ok else None


def git_ref():
    """The commit being built: the default download URL pins exactly this commit, so the
    files fetched are the ones whose hashes are embedded."""
    ref = (git("rev-parse", "HEAD") or "").strip()
    if len(ref) != 40:
        sys.exit("build.py: not a git checkout with a commit; pass --ref REF")
    return ref


def build_inputs():
    """Every file the build reads, relative to ROOT: the program, the launcher, deploy/ and
    this script."""
    names = ["build.py", "bootstrap/launcher.py", "bootstrap/claw_cage/buildinfo.py"]
    names += ["bootstrap/" + name for name, _ in package_files()]
    names += ["deploy/" + name for name in deploy_hashes()]
    return sorted(names)


def tree_changes():
    """The build's input files that differ from HEAD or are not committed at all (untracked,
    ignored); None when git cannot tell."""
    out = git("status", "--porcelain=v1", "--untracked-files=all", "--ignored", "--",
              *build_inputs())
    if out is None:
        return None
    return [line[3:] for line in out.splitlines() if line.strip()]


def release_tag(ref):
    """The release this build is: "v" + __version__ when HEAD (== ref) carries that tag, else
    "". Any other v* tag at HEAD is named in a warning, never claimed."""
    wanted = "v" + __version__
    tags = (git("tag", "--points-at", "HEAD") or "").split()
    if wanted in tags and (git("rev-parse", "HEAD") or "").strip() == ref:
        return wanted
    others = [t for t in tags if t.startswith("v")]
    if others:
        sys.stderr.write("build.py: warning: HEAD is tagged %s but __version__ is %s: this "
                         "build is not named a release\n" % (", ".join(others), __version__))
    return ""


def describe(ref_arg):
    """(ref, suffix, release) of this build. A tree with changes is "+dirty" and no release;
    --ref never makes a release either (the tree was not checked against it)."""
    ref = ref_arg or git_ref()
    changes = tree_changes()
    if changes:
        sys.stderr.write("build.py: warning: uncommitted changes (%s%s): version %s+dirty, "
                         "not a release\n" % (", ".join(changes[:3]),
                                               ", ..." if len(changes) > 3 else "",
                                               __version__))
        return ref, "+dirty", ""
    if ref_arg or changes is None:
        return ref, "", ""
    return ref, "", release_tag(ref)


def render_buildinfo(repo, ref, hashes, bridge, subnet, suffix="", release="", head=None):
    lines = [
        '"""Generated by build.py. Do not edit: rebuild instead."""',
        "",
        "VERSION_SUFFIX = %r" % suffix,
        "RELEASE = %r" % release,
        "GIT_REF = %r" % ref,
        "REPO = %r" % repo,
        "DEPLOY_SHA256 = {",
    ]
    lines += ["    %r: %r," % (name, digest) for name, digest in sorted(hashes.items())]
    lines += ["}", "BRIDGE = %r" % bridge, "SUBNET = %r" % str(subnet)]
    # the built file's first lines, which the launcher needs for its own text (SELF_SOURCE):
    # they travel compressed here rather than a second time in the launcher
    lines += ["HEAD = %r" % head, ""]
    return "\n".join(lines)


# The operators of Python 3.8 to 3.13: two tokens written together must not read as one.
OPERATORS = ("!= % %= & &= ( ) * ** **= *= + += , - -= -> . ... / // //= /= : := ; < << <<= <= "
             "= == > >= >> >>= @ @= [ ] ^ ^= { | |= } ~").split()


def _word(char):
    return char.isalnum() or char == "_" or ord(char) > 127


def _needs_space(before, after):
    """Whether the token `after` must be kept apart from `before`: two words or numbers
    (`def f`, `1 if`, `return .5`), a number and a dot (`1 .real`), or two operators
    that would read as a longer one (`* *`, `= =`)."""
    number = after[0].isdigit() or after[:1] == "." and after[1:2].isdigit()
    if _word(before[-1]) and (_word(after[0]) or number):
        return True
    if before[0].isdigit() and after[0] == ".":
        return True
    if before in OPERATORS and after in OPERATORS:
        return any(op.startswith(before + after[0]) for op in OPERATORS)
    return False


def strip_source(text):
    """Python source without its comments and docstrings, written token by token: a
    docstring (any statement that is a lone string) becomes "", so a body that held only a
    docstring stays valid; every other token, strings spanning lines included, is kept as it
    was; a logical line is one line (brackets and backslash continuations joined), indented
    by one space per level, with a space between two tokens only where Python needs one.
    Works on tokens, never on lines, so a '#' inside a string is safe. The same output on the
    tokenizers of Python 3.8 to 3.13 (3.12's f-strings are taken whole)."""
    lines = text.splitlines(keepends=True)
    starts = [0]
    for line in lines:
        starts.append(starts[-1] + len(line))

    def offset(row_col):
        return starts[row_col[0] - 1] + row_col[1]
    tokens = list(tokenize.generate_tokens(io.StringIO(text).readline))
    fstring = (getattr(tokenize, "FSTRING_START", None), getattr(tokenize, "FSTRING_END", None))
    units, i = [], 0   # (type, text), an f-string as one STRING as before 3.12
    while i < len(tokens):
        first = i
        level = 1 if tokens[i].type == fstring[0] else 0
        while level:
            i += 1
            level += {fstring[0]: 1, fstring[1]: -1}.get(tokens[i].type, 0)
        if i > first:
            units.append((tokenize.STRING,
                          text[offset(tokens[first].start):offset(tokens[i].end)]))
        elif tokens[i].type not in (tokenize.NL, tokenize.COMMENT):
            units.append((tokens[i].type, tokens[i].string))
        i += 1
    out, line, depth = [], [], 0
    for i, (kind, string) in enumerate(units):
        if kind == tokenize.INDENT:
            depth += 1
        elif kind == tokenize.DEDENT:
            depth -= 1
        elif kind in (tokenize.NEWLINE, tokenize.ENDMARKER):
            if line:
                out.append(" " * depth + "".join(line) + "\n")
            line = []
        else:
            if kind == tokenize.STRING and not line and units[i + 1][0] in (
                    tokenize.NEWLINE, tokenize.ENDMARKER):
                string = '""'   # a docstring
            if line and _needs_space(line[-1], string):
                line.append(" ")
            line.append(string)
    return "".join(out)


# A function's local variable travels under a one- or two-letter name (rename_locals): about
# 3.5% of the compressed payload. Only what no other scope can see is renamed, so nothing but
# spelling changes: tests/pyz/test_build.py checks each renaming against the compiler's own
# symbol tables (symtable) and the syntax tree.
NESTED = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef, ast.ListComp,
          ast.SetComp, ast.DictComp, ast.GeneratorExp)
SHORT = [a + b for b in [""] + list(string.ascii_letters) for a in string.ascii_letters
         if a + b not in ("as", "if", "in", "is", "or", "id")]


def _scope_names(node):
    """Every name a scope mentions: read, written, a parameter, declared global/nonlocal, and
    the names bound without a Name node (except ... as, import, def, class)."""
    names = set()
    for n in ast.walk(node):
        if isinstance(n, ast.Name):
            names.add(n.id)
        elif isinstance(n, ast.arg):
            names.add(n.arg)
        elif isinstance(n, (ast.Global, ast.Nonlocal)):
            names.update(n.names)
    return names | _bound_otherwise(ast.walk(node))


def _bound_otherwise(nodes):
    """The names these nodes bind without a Name node: `except E as x`, `import a.b as x`,
    `def x`, `class x`. A renaming would miss those sites, so such names keep their spelling."""
    names = set()
    for n in nodes:
        if isinstance(n, ast.ExceptHandler) and n.name:
            names.add(n.name)
        elif isinstance(n, (ast.Import, ast.ImportFrom)):
            names.update((a.asname or a.name).split(".")[0] for a in n.names)
        elif isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(n.name)
    return names


def rename_plan(fn, named=frozenset()):
    """{old: new} for a function's locals that may travel under a short name, and the Name
    nodes of its own scope. A local qualifies when the function's own body assigns it and no
    nested scope (a def, lambda, class or comprehension inside, their defaults included)
    mentions it at all; global/nonlocal names never. A parameter qualifies too, unless its
    name is in `named` (every name the program passes as a keyword or holds as a string: a
    caller could name it), it is self or cls, or the function is a dunder method (Python
    calls those)."""
    own, todo = [], list(fn.body)
    nested = set()
    while todo:
        node = todo.pop()
        if isinstance(node, NESTED):
            nested |= _scope_names(node)   # a def or class inside binds its name here too
            continue
        own.append(node)
        todo.extend(ast.iter_child_nodes(node))
    args = fn.args
    params = {a.arg for a in args.posonlyargs + args.args + args.kwonlyargs
              + [a for a in (args.vararg, args.kwarg) if a]} \
        if hasattr(args, "posonlyargs") else {a.arg for a in ast.walk(args)
                                               if isinstance(a, ast.arg)}
    declared = {name for n in own if isinstance(n, (ast.Global, ast.Nonlocal))
                for name in n.names}
    counts = {}
    for n in own:
        if isinstance(n, ast.Name):
            counts[n.id] = counts.get(n.id, 0) + 1
    stored = {n.id for n in own if isinstance(n, ast.Name) and not isinstance(n.ctx, ast.Load)}
    stored -= params
    taken = _scope_names(fn)
    free = (s for s in SHORT if s not in taken)
    plan = {}
    if not (fn.name.startswith("__") and fn.name.endswith("__")):
        stored |= params - set(named) - {"self", "cls"}
    for old in sorted(stored - declared - nested - _bound_otherwise(own),
                      key=lambda x: (-counts.get(x, 0), x)):
        new = next(free, None)
        if new is None:
            break
        if len(new) < len(old):
            plan[old] = new
    return plan, own


def rename_locals(text, named=frozenset()):
    """The module's source with each function's qualifying locals and parameters
    (rename_plan) renamed, every line where it was: tracebacks keep their line numbers."""
    edits = []
    for fn in ast.walk(ast.parse(text)):
        if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            plan, own = rename_plan(fn, named)
            edits += [(n.lineno, n.col_offset, n.id, plan[n.id]) for n in own
                      if isinstance(n, ast.Name) and n.id in plan]
            edits += [(a.lineno, a.col_offset, a.arg, plan[a.arg]) for a in ast.walk(fn.args)
                      if isinstance(a, ast.arg) and a.arg in plan]
    return _respell(text, edits)


def named_anywhere(sources):
    """Every name the program passes as a keyword argument or holds as a whole string (a
    dict's key for **keywords, getattr): a parameter of that name keeps it."""
    named = set()
    for text in sources:
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.keyword) and node.arg:
                named.add(node.arg)
            elif isinstance(node, ast.Constant) and isinstance(node.value, str) \
                    and node.value.isidentifier():
                named.add(node.value)
    return frozenset(named)


def private_plan(text, elsewhere):
    """{old: new} for the module's top-level functions and variables that the module's code
    alone mentions: no other module nor the launcher (elsewhere: the words they hold), no
    scope of its own assigns or declares them again, and every occurrence in the text is one
    of the Name nodes or the def statement the plan renames (an attribute or a string of the
    same spelling keeps the name as it is). Never a class (an error's class name is printed)
    nor a function given as argparse's type= (its name can appear in a usage error)."""
    tree = ast.parse(text)
    top = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            top.add(node.name)
        elif isinstance(node, ast.Assign):
            top |= {t.id for t in node.targets if isinstance(t, ast.Name)}
    top -= {k.value.id for k in ast.walk(tree) if isinstance(k, ast.keyword)
            and k.arg == "type" and isinstance(k.value, ast.Name)}
    inner = set()   # every name a scope below the module binds: those stay
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)):
            inner |= {n.id for n in ast.walk(node) if isinstance(n, ast.Name)
                      and not isinstance(n.ctx, ast.Load)}
            inner |= {a.arg for a in ast.walk(node) if isinstance(a, ast.arg)}
        if isinstance(node, (ast.Global, ast.Nonlocal)):
            inner.update(node.names)
        if isinstance(node, ast.ClassDef) or (isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node not in tree.body):
            inner.add(node.name)
    words = set(re.findall(r"[A-Za-z_]\w*", text))
    free = (s for s in SHORT if s not in words)
    sites = private_sites(tree, top)
    plan = {}
    for old in sorted(top - inner - elsewhere):
        if old.startswith("__"):
            continue
        if len(re.findall(r"(?<![\w.])%s(?!\w)" % re.escape(old), text)) != len(sites[old]) \
                or len(re.findall(r"\b%s\b" % re.escape(old), text)) != len(sites[old]):
            continue
        new = next(free, None)
        if new is not None and len(new) < len(old):
            plan[old] = new
    return plan


def private_sites(tree, names):
    """{name: [(line, byte column)]} of each Name node and each module-level def/class
    statement's name among names."""
    sites = {n: [] for n in names}
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and node.id in sites:
            sites[node.id].append((node.lineno, node.col_offset))
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) \
                and node.name in sites:
            word = {ast.ClassDef: "class ", ast.FunctionDef: "def "}.get(type(node), "async def ")
            sites[node.name].append((node.lineno, node.col_offset + len(word)))
    return sites


def rename_privates(text, elsewhere):
    """The (stripped) module with its own top-level names (private_plan) respelled."""
    plan = private_plan(text, elsewhere)
    sites = private_sites(ast.parse(text), plan)
    return _respell(text, [(row, col, old, new) for old, new in plan.items()
                           for row, col in sites[old]])


def _respell(text, edits):
    lines = text.splitlines(keepends=True)
    for row, col, old, new in sorted(edits, reverse=True):
        line = lines[row - 1].encode("utf-8")   # col_offset counts UTF-8 bytes
        if line[col:col + len(old)] != old.encode():
            sys.exit("build.py: a renaming lost its place at line %d (a bug)" % row)
        lines[row - 1] = (line[:col] + new.encode() + line[col + len(old):]).decode("utf-8")
    return "".join(lines)


def package_files():
    """(archive name, bytes) for every module of the program, in a fixed order."""
    files = []
    for folder, dirs, names in os.walk(PKG):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        rel = os.path.relpath(folder, SRC).replace(os.sep, "/")
        for name in sorted(names):
            if name.endswith(".py") and rel + "/" + name != "claw_cage/buildinfo.py":
                with open(os.path.join(folder, name), encoding="utf-8") as f:
                    files.append((rel + "/" + name, f.read()))
    with open(os.path.join(SRC, "launcher.py"), encoding="utf-8") as f:
        launcher = f.read()
    named = named_anywhere([launcher] + [text for _, text in files])
    _NAMED[:] = [named]
    files = [(name, strip_source(rename_locals(text, named))) for name, text in files]
    words = {name: set(re.findall(r"[A-Za-z_]\w*", text)) for name, text in files}
    shipped = []
    for name, text in files:
        elsewhere = set(re.findall(r"[A-Za-z_]\w*", launcher))
        for other, held in words.items():
            if other != name:
                elsewhere |= held
        shipped.append((name, rename_privates(text, elsewhere).encode("utf-8")))
    return sorted(shipped)


_FILES = {}
_NAMED = []   # package_files()'s named_anywhere, for the launcher's renaming


def package_named():
    """named_anywhere() of the program and the launcher, as package_files() computes it."""
    package_files()
    return _NAMED[0]


def package_files_map():
    """package_files() as {name: bytes}, made once."""
    if not _FILES:
        _FILES.update(package_files())
    return _FILES


# pack() writes the bz2 stream 14 bits per two bytes of UTF-8 (Python reads stdin as UTF-8):
# every 14-bit digit either as two of the 125 ASCII characters a raw """-string holds as
# itself (all but NUL, refused in source; CR, read as LF; and ", which could close the string;
# a backslash is harmless in a raw string except before the closing quotes, so a newline
# follows the last digit), 125 * 125 = 15625 digits, or as one character U+00C0-U+02B6 (lead
# byte C3-CA, continuation 80-BF) for the other 759. That is 8/7 = 1.143x with no escapes.
# Base 17481 (all 29 * 64 two-byte characters of lead C3-DF) would reach 1.137x, but its
# decoding multiplies big numbers: 1.3 ms more at every start that unpacks, for 0.5% of size.
# The launcher reads every digit back from its two bytes and packs the 14-bit digits with
# SPREAD's mask steps (C speed, no loop over characters): (field width in bytes, shift).
ALPHABET = bytes(c for c in range(128) if c not in b"\0\r\"")
PAIRS = len(ALPHABET) ** 2
LEAD = 0xC3
SPREAD = ((4, 2), (8, 4))


def masks(width, size):
    """The low half of each `width`-byte field, as a number of `size` bytes: 14, 28 bits."""
    bits = width * 4 - width // 2
    return int.from_bytes(((1 << bits) - 1).to_bytes(width, "big") * (size // width), "big")


def pack(files):
    """The payload text: "name\0source\0" for every module, bz2-compressed in one stream,
    then 14 bits per two bytes (see ALPHABET). The stream is padded to whole groups of 7 bytes
    (4 digits); bz2 ignores what follows its end."""
    data = bz2.compress(b"".join(name.encode() + b"\0" + body + b"\0" for name, body in files), 9)
    data += b"\0" * (-len(data) % 7)
    text = []
    for start in range(0, len(data), 7):
        n = int.from_bytes(data[start:start + 7], "big")
        for shift in (42, 28, 14, 0):
            digit = n >> shift & 0x3FFF
            if digit < PAIRS:
                text.append(chr(ALPHABET[digit // len(ALPHABET)])
                            + chr(ALPHABET[digit % len(ALPHABET)]))
            else:  # the code point whose UTF-8 is LEAD + d // 64, 0x80 + d % 64
                text.append(chr(((LEAD & 0x1F) << 6) + digit - PAIRS))
    return "".join(text)


def unpack(text):
    """pack()'s inverse, as the launcher does it; the build checks the round trip with it."""
    data = text.encode("utf-8")
    table = bytearray(256)   # a byte's value in its place: ASCII digit, lead or continuation
    for value, byte in enumerate(ALPHABET):
        table[byte] = value
    for value in range(64):
        table[0x80 + value] = value
    for value in range(0xE0 - LEAD):
        table[LEAD + value] = value
    size = len(data)
    ones = int.from_bytes(b"\0\1" * (size // 2), "big")
    n = int.from_bytes(data.translate(table), "big")
    high, low = n >> 8 & ones * 255, n & ones * 255
    two_bytes = (int.from_bytes(data, "big") >> 15 & ones) * 0xFFFF   # digits written as U+xxxx
    n = (high * len(ALPHABET) + low) & ~two_bytes | (high * 64 + low + ones * PAIRS) & two_bytes
    for width, shift in SPREAD:
        low = masks(width, size)
        n = n & low | (n & low << width * 4) >> shift
    data = bytearray(n.to_bytes(size, "big"))
    del data[::8]   # the zero byte heading every 8
    parts = bz2.BZ2Decompressor().decompress(bytes(data)).decode("utf-8").split("\0")
    return dict(zip(parts[::2], parts[1::2]))


def render_launcher(version_line):
    with open(os.path.join(SRC, "launcher.py"), encoding="utf-8") as f:
        text = f.read()
    for marker, value in (("MID", MID), ("TAIL", TAIL),
                          ("VERSION_LINE", version_line)):
        old = "%s = None  # @%s: replaced by build.py" % (marker, marker)
        if text.count(old) != 1:
            sys.exit("build.py: launcher.py must hold the line %r exactly once" % old)
        text = text.replace(old, "%s = %r" % (marker, value))
    # shipped like the modules, without comments and docstrings: the readable launcher is
    # bootstrap/launcher.py at the commit the head names, and every byte costs start-up time
    text = strip_source(rename_locals(text, _NAMED[0] if _NAMED else package_named()))
    if "'''" in text or text.endswith("\\"):
        sys.exit("build.py: launcher.py must not contain ''' (it is embedded in r''' ''')")
    return text


def build(repo, ref, suffix="", release=""):
    with open(os.path.join(DEPLOY, "docker-compose.yml"), encoding="utf-8") as f:
        bridge, subnet = composefile.read_network(f.read(), "deploy/docker-compose.yml")
    head = (HEAD_TEMPLATE.replace("@VERSION@", __version__ + suffix)
            .replace("@NAME@", "release %s, " % release if release else "")
            .replace("@REPO@", repo).replace("@REF@", ref[:12]))
    files = package_files()
    files.append(("claw_cage/buildinfo.py",
                  render_buildinfo(repo, ref, deploy_hashes(), bridge, subnet, suffix,
                                   release, head).encode()))
    payload = pack(sorted(files))
    if unpack(payload) != {name: body.decode("utf-8") for name, body in files}:
        sys.exit("build.py: the packed payload does not unpack to the modules (a bug)")
    version_line = cli.version_line(__version__, repo, ref, suffix, release)
    return head + render_launcher(version_line) + MID + "\n" + payload + "\n" + TAIL


def version_line_of(text):
    """The --version answer embedded in a built file."""
    marker = "VERSION_LINE="
    line = text[text.index(marker) + len(marker):].split("\n", 1)[0]
    return ast.literal_eval(line)


def check_script(write):
    """deploy/iptables-rules.sh is generated from the rule table; a stale copy fails the build."""
    from claw_cage.firewall import script
    render = script.render
    path = os.path.join(DEPLOY, SCRIPT_NAME)
    wanted = render()
    current = open(path, encoding="utf-8").read() if os.path.exists(path) else None
    if write:
        if current != wanted:
            with open(path, "w", encoding="utf-8") as f:
                f.write(wanted)
            # the script is meant to be run (sudo bash it); only its owner can write it
            os.chmod(path, 0o755)  # nosec B103
            print("wrote deploy/%s" % SCRIPT_NAME)
        return
    if current != wanted:
        sys.exit("build.py: deploy/%s is stale; run: python3 build.py --write-script"
                 % SCRIPT_NAME)


def main(argv=None):
    p = argparse.ArgumentParser(description="Build dist/claw-cage.pyz.")
    p.add_argument("--repo", default=os.environ.get("CLAW_CAGE_REPO", DEFAULT_REPO),
                   help="GitHub owner/repo the installer downloads from (default: %(default)s)")
    p.add_argument("--ref", help="git ref to download from (default: the current commit)")
    p.add_argument("--out", default=os.path.join(ROOT, "dist", "claw-cage.pyz"))
    p.add_argument("--write-script", action="store_true",
                   help="regenerate deploy/%s from the rule table and exit" % SCRIPT_NAME)
    args = p.parse_args(argv)
    check_script(args.write_script)
    if args.write_script:
        return 0
    if args.repo.count("/") != 1 or not all(args.repo.split("/")):
        p.error("--repo must look like owner/name")
    ref, suffix, release = describe(args.ref)
    text = build(args.repo, ref, suffix, release)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    tmp = args.out + ".tmp"
    with open(tmp, "w", encoding="utf-8", newline="\n") as f:
        f.write(text)
    os.replace(tmp, args.out)
    data = text.encode("utf-8")
    print("built %s: %d bytes, sha256 %s" % (os.path.relpath(args.out),
                                             len(data), hashlib.sha256(data).hexdigest()))
    print("  %s; Python %d.%d.%d" % (version_line_of(text), *sys.version_info[:3]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
