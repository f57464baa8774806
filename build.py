#!/usr/bin/env python3
"""Build dist/claw-cage.pyz: one Python source file carrying the program as a packed payload.

    python3 build.py [--repo OWNER/REPO] [--ref REF] [--out PATH]
    python3 build.py --write-script     regenerate deploy/iptables-rules.sh from the rule table

Why this shape (see docs/design.md): `curl ... | python3 -` compiles stdin as source, so a
plain zipapp (binary) cannot be piped. The output is a single parenthesised expression that
exec()s the readable launcher (bootstrap/launcher.py) and hands it the program: the sources of
bootstrap/claw_cage as one bz2 stream, as 7-bit text (see pack()). A download cut at any byte
leaves the parenthesis open: a SyntaxError before anything runs.

Reproducible: the modules go in sorted order; nothing depends on the clock, file modification
times, the umask, the locale or the Python version (3.8 to the newest:
tests/pyz/test_reproducible.py). bzip2's encoder has given the same bytes since libbzip2 1.0
(unlike deflate, where zlib-ng and zlib differ). Standard library only.

Release naming: a build names itself "release vX" only when HEAD carries the tag
"v" + __version__ and none of the files it reads differs from that commit (or is untracked);
a build from a tree with changes says "+dirty" and never names a release.

Size: CPython reads a piped script at about 1 ms per KiB, so every byte costs start-up time;
the budget is 100 KiB (tests/pyz/test_size.py). The modules travel without their comments and
docstrings (strip_source: token-exact, proven by tests/pyz/test_build.py comparing syntax
trees), compressed as one stream (bz2 beat per-file deflate in a zip by 19%, lzma by 2%), in
an encoding that costs 18% where base85 cost 25%. The readable source is the repository at the
commit --version names.
"""

import argparse
import ast
import hashlib
import io
import os
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
   # on the program, bz2-compressed as 7-bit text. Readable source: the commit above.
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


def render_buildinfo(repo, ref, hashes, bridge, subnet, suffix="", release=""):
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
    lines += ["}", "BRIDGE = %r" % bridge, "SUBNET = %r" % str(subnet), ""]
    return "\n".join(lines)


def strip_source(text):
    """Python source without its comments and docstrings, and without the lines that leaves
    blank. A docstring (any statement that is a lone string) becomes "", so a body that held
    only a docstring stays valid; every other token, strings spanning lines included, is kept
    as it was, and the indentation shrinks to one space per level. Works on tokens, never on
    lines, so a '#' inside a string is safe."""
    lines = text.splitlines(keepends=True)
    starts = [0]
    for line in lines:
        starts.append(starts[-1] + len(line))

    def offset(row_col):
        return starts[row_col[0] - 1] + row_col[1]
    tokens = list(tokenize.generate_tokens(io.StringIO(text).readline))
    skip = (tokenize.NL, tokenize.COMMENT)
    cuts, kept_lines, before = [], set(), tokenize.NEWLINE
    depth, depths = 0, {}   # the block depth of each line that starts a statement
    for i, tok in enumerate(tokens):
        depth += {tokenize.INDENT: 1, tokenize.DEDENT: -1}.get(tok.type, 0)
        if before in (tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT) and tok.type not in \
                skip + (tokenize.INDENT, tokenize.DEDENT):
            depths.setdefault(tok.start[0], depth)
        if tok.end[0] > tok.start[0] and tok.type not in skip + (tokenize.STRING,):
            kept_lines.update(range(tok.start[0] + 1, tok.end[0] + 1))   # 3.12's f-strings
        if tok.type == tokenize.COMMENT:
            cuts.append((offset(tok.start), offset(tok.end), ""))
        elif tok.type == tokenize.STRING:
            after = next((t.type for t in tokens[i + 1:] if t.type not in skip), None)
            if (before in (tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT)
                    and after in (tokenize.NEWLINE, tokenize.ENDMARKER)):
                # as many newlines as it spanned: later lines keep their numbers
                cuts.append((offset(tok.start), offset(tok.end),
                             '""' + "\n" * (tok.end[0] - tok.start[0])))
            else:  # a string that spans lines keeps every line, blank ones included
                kept_lines.update(range(tok.start[0] + 1, tok.end[0] + 1))
        if tok.type not in skip:
            before = tok.type
    for start, end, replacement in sorted(cuts, reverse=True):
        text = text[:start] + replacement + text[end:]
    out = []   # a block indented by one space per level, a continued line by one space
    for number, line in enumerate(text.splitlines(keepends=True), 1):
        if number in kept_lines:
            out.append(line)
        elif line.strip():
            out.append(" " * depths.get(number, 1) + line.strip() + "\n")
    return "".join(out)


def package_files():
    """(archive name, bytes) for every module of the program, in a fixed order."""
    files = []
    for folder, dirs, names in os.walk(PKG):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        rel = os.path.relpath(folder, SRC).replace(os.sep, "/")
        for name in sorted(names):
            if name.endswith(".py") and rel + "/" + name != "claw_cage/buildinfo.py":
                with open(os.path.join(folder, name), encoding="utf-8") as f:
                    files.append((rel + "/" + name, strip_source(f.read()).encode("utf-8")))
    return sorted(files)


# pack() spreads every 7 bytes over 8 characters of 7 bits, as big-number mask steps (the
# launcher undoes them in reverse, at C speed): (field width in bytes, shift) per step.
SPREAD = ((8, 4), (4, 2), (2, 1))
# The four 7-bit values a raw """-string cannot hold as themselves (NUL is refused in source,
# CR becomes LF when read, " could close the string, \ escapes): each travels as U+0080-U+0083
# (two bytes in UTF-8; 4 in 128 characters, so the encoding costs 8/7 * 1.03 = 1.18x).
ESCAPED = b"\0\r\"\\"


def masks(width, size):
    """The low and high halves of each `width`-byte field, as numbers of `size` bytes."""
    bits = width * 4 - (width // 2)  # the data bits each half holds: 28, 14, 7
    low = ((1 << bits) - 1).to_bytes(width, "big")
    high = (((1 << bits) - 1) << (width * 4)).to_bytes(width, "big")
    return (int.from_bytes(low * (size // width), "big"),
            int.from_bytes(high * (size // width), "big"))


def pack(files):
    """The payload text: "name\0source\0" for every module, bz2-compressed in one stream,
    then 7 bits per character. The stream is padded to whole groups of 7 bytes; bz2 ignores
    what follows its end."""
    data = bz2.compress(b"".join(name.encode() + b"\0" + body + b"\0" for name, body in files), 9)
    data += b"\0" * (-len(data) % 7)
    wide = bytearray(len(data) // 7 * 8)
    for i in range(8):  # a zero byte heads every group of 8: the high bits of 64-bit fields
        if i:
            wide[i::8] = data[i - 1::7]
    size = len(wide)
    n = int.from_bytes(wide, "big")
    for width, shift in SPREAD:
        low, high = masks(width, size)
        n = (n & low) | ((n & (high >> shift)) << shift)
    text = n.to_bytes(size, "big").decode("ascii")
    return text.translate({c: 0x80 + i for i, c in enumerate(ESCAPED)})


def unpack(text):
    """pack()'s inverse, as the launcher does it; the build checks the round trip with it."""
    data = text.encode("latin-1").translate(
        bytes.maketrans(bytes(range(0x80, 0x84)), ESCAPED))
    size = len(data)
    n = int.from_bytes(data, "big")
    for width, shift in reversed(SPREAD):
        low, high = masks(width, size)
        n = (n & low) | ((n & high) >> shift)
    wide = bytearray(n.to_bytes(size, "big"))
    del wide[::8]
    parts = bz2.BZ2Decompressor().decompress(bytes(wide)).decode("utf-8").split("\0")
    return dict(zip(parts[::2], parts[1::2]))


def render_launcher(head, version_line):
    with open(os.path.join(SRC, "launcher.py"), encoding="utf-8") as f:
        text = f.read()
    for marker, value in (("HEAD", head), ("MID", MID), ("TAIL", TAIL),
                          ("VERSION_LINE", version_line)):
        old = "%s = None  # @%s: replaced by build.py" % (marker, marker)
        if text.count(old) != 1:
            sys.exit("build.py: launcher.py must hold the line %r exactly once" % old)
        text = text.replace(old, "%s = %r" % (marker, value))
    # shipped like the modules, without comments and docstrings: the readable launcher is
    # bootstrap/launcher.py at the commit the head names, and every byte costs start-up time
    text = strip_source(text)
    if "'''" in text or text.endswith("\\"):
        sys.exit("build.py: launcher.py must not contain ''' (it is embedded in r''' ''')")
    return text


def build(repo, ref, suffix="", release=""):
    with open(os.path.join(DEPLOY, "docker-compose.yml"), encoding="utf-8") as f:
        bridge, subnet = composefile.read_network(f.read(), "deploy/docker-compose.yml")
    files = package_files()
    files.append(("claw_cage/buildinfo.py",
                  render_buildinfo(repo, ref, deploy_hashes(), bridge, subnet, suffix,
                                   release).encode()))
    payload = pack(sorted(files))
    if unpack(payload) != {name: body.decode("utf-8") for name, body in files}:
        sys.exit("build.py: the packed payload does not unpack to the modules (a bug)")
    head = (HEAD_TEMPLATE.replace("@VERSION@", __version__ + suffix)
            .replace("@NAME@", "release %s, " % release if release else "")
            .replace("@REPO@", repo).replace("@REF@", ref[:12]))
    version_line = cli.version_line(__version__, repo, ref, suffix, release)
    return head + render_launcher(head, version_line) + MID + "\n" + payload + TAIL


def version_line_of(text):
    """The --version answer embedded in a built file."""
    marker = "VERSION_LINE = "
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
