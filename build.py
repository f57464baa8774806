#!/usr/bin/env python3
"""Build dist/claw-cage.pyz: one Python source file carrying the program as a zip payload.

    python3 build.py [--repo OWNER/REPO] [--ref REF] [--out PATH]
    python3 build.py --write-script     regenerate deploy/iptables-rules.sh from the rule table

Why this shape (see docs/design.md): `curl ... | python3 -` compiles stdin as source, so a
plain zipapp (binary) cannot be piped. The output is a single parenthesised expression that
exec()s the readable launcher (bootstrap/launcher.py) and hands it the program, a zip of
bootstrap/claw_cage, as base85 text. A download cut at any byte leaves the parenthesis open:
a SyntaxError before anything runs.

Reproducible: zip entries carry a fixed date and mode, in sorted order; nothing depends on
the clock, file modification times, the umask, the locale or the Python version (3.8 to the
newest: tests/pyz/test_reproducible.py). The one outside input is the deflate implementation:
genuine zlib 1.2.13 and 1.3.1 give the same bytes, zlib-ng does not; the build prints which
zlib it used, and the release notes record it. Standard library only.

Release naming: a build names itself "release vX" only when HEAD carries the tag
"v" + __version__ and none of the files it reads differs from that commit (or is untracked);
a build from a tree with changes says "+dirty" and never names a release.

Size: the modules travel without their comments and docstrings (strip_source: token-exact,
proven by tests/pyz/test_build.py comparing syntax trees), which keeps the file under its 112 KiB budget as
features grow; indentation travels as one tab per four spaces. The readable source is the
repository at the commit --version names.
"""

import argparse
import ast
import base64
import hashlib
import io
import os
import sys
import tokenize
import zipfile
import zlib

ROOT = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.join(ROOT, "bootstrap")
PKG = os.path.join(SRC, "claw_cage")
DEPLOY = os.path.join(ROOT, "deploy")
sys.path.insert(0, SRC)

from claw_cage import __version__, cli, composefile, runner  # noqa: E402

DEFAULT_REPO = "VelocityPulse/claw-cage"
ZIP_DATE = (1980, 1, 1, 0, 0, 0)  # the earliest date a zip can hold; fixed for reproducibility
SCRIPT_NAME = "iptables-rules.sh"

HEAD_TEMPLATE = '''\
(  # claw-cage @VERSION@ (@NAME@@REPO@@@REF@): installs OpenClaw in Docker behind a cage.
   #
   # This file is Python source, not a zip, so that `curl -fsSL URL | python3 -` works:
   # Python compiles all of stdin before running it. The whole file is ONE expression, from
   # the "(" that opens this line to the ")" that is its very last byte, so a download cut
   # anywhere is a SyntaxError and nothing runs. It exec()s the launcher below (readable
   # source: bootstrap/launcher.py) and hands it the program: a zip archive of
   # bootstrap/claw_cage, zlib-compressed, as base85 text at the end. Built by build.py.
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
    as it was. Works on tokens, never on lines, so a '#' inside a string is safe."""
    lines = text.splitlines(keepends=True)
    starts = [0]
    for line in lines:
        starts.append(starts[-1] + len(line))

    def offset(row_col):
        return starts[row_col[0] - 1] + row_col[1]
    tokens = list(tokenize.generate_tokens(io.StringIO(text).readline))
    skip = (tokenize.NL, tokenize.COMMENT)
    cuts, kept_lines, before = [], set(), tokenize.NEWLINE
    for i, tok in enumerate(tokens):
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
    out = []
    for number, line in enumerate(text.splitlines(keepends=True), 1):
        if number in kept_lines:
            out.append(line)
        elif line.strip():   # one tab per four spaces of indentation: about 2% smaller
            body = line.lstrip(" ")
            lead = len(line) - len(body)
            out.append("\t" * (lead // 4) + " " * (lead % 4) + body.rstrip() + "\n")
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


def build_zip(files):
    """A zipapp of the program with STORED entries; the whole archive is then compressed
    at once (see pack()), which shrinks it far more than compressing file by file."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in sorted(files):
            info = zipfile.ZipInfo(name, date_time=ZIP_DATE)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_STORED
            info.create_system = 3  # unix, whatever machine builds it
            zf.writestr(info, data)
    return buf.getvalue()


def pack(archive):
    """zlib (always present: zipimport itself needs it), then base85 text in lines of 1024:
    each newline costs a byte of the size budget, and nobody reads these lines (76 cost 1.3%).
    base85 has no quote or backslash, so it sits safely inside r\"\"\"...\"\"\"."""
    text = base64.b85encode(zlib.compress(archive, 9)).decode("ascii")
    return "\n".join(text[i:i + 1024] for i in range(0, len(text), 1024))


def render_launcher(head, version_line):
    with open(os.path.join(SRC, "launcher.py"), encoding="utf-8") as f:
        text = f.read()
    for marker, value in (("HEAD", head), ("MID", MID), ("TAIL", TAIL),
                          ("VERSION_LINE", version_line)):
        old = "%s = None  # @%s: replaced by build.py" % (marker, marker)
        if text.count(old) != 1:
            sys.exit("build.py: launcher.py must hold the line %r exactly once" % old)
        text = text.replace(old, "%s = %r" % (marker, value))
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
    files.append(("__main__.py", b"import sys\nfrom claw_cage.cli import main\n"
                                 b"sys.exit(main())\n"))
    payload = pack(build_zip(files))
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
    # The build facts a rebuild needs besides the commit: the bytes depend on the deflate
    # implementation (zlib-ng gives others than zlib), never on the Python version.
    print("  %s; Python %d.%d.%d, zlib %s" % (version_line_of(text),
                                             *sys.version_info[:3], zlib.ZLIB_RUNTIME_VERSION))
    return 0


if __name__ == "__main__":
    sys.exit(main())
