"""Every relative link and #anchor in README.md and docs/*.md resolves: the file exists in the
tree, and the anchor is a heading of that file as GitHub names it. A section moved or renamed
without its links fails here; a broken link planted in a copy shows the check can fail."""

import os
import re
import shutil

from conftest import ROOT

FENCE = re.compile(r"^(```|~~~).*?^\1[ \t]*$", re.S | re.M)
CODE = re.compile(r"`[^`\n]*`")
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HEADING = re.compile(r"^#{1,6}[ \t]+(.+?)[ \t]*#*[ \t]*$", re.M)
# What GitHub drops from a heading's text to make its anchor: ASCII punctuation but - and _.
PUNCT = re.compile(r"[!-,./:-@\[-^`{-~]")


def doc_files(root):
    docs = os.path.join(root, "docs")
    names = sorted(n for n in os.listdir(docs) if n.endswith(".md")) if os.path.isdir(docs) else []
    return [os.path.join(root, "README.md")] + [os.path.join(docs, n) for n in names]


def _prose(text):
    """The text outside fenced code blocks (kept line for line)."""
    return FENCE.sub(lambda m: "\n" * m.group(0).count("\n"), text)


def anchors(text):
    """The anchors GitHub gives the headings of a markdown text, duplicates numbered."""
    seen, found = {}, set()
    for m in HEADING.finditer(_prose(text)):
        title = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", m.group(1))   # a link: its text
        slug = PUNCT.sub("", title.replace("`", "").strip().lower()).replace(" ", "-")
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        found.add(slug if n == 0 else "%s-%d" % (slug, n))
    return found


def broken_links(root):
    """(file, target, reason) for every relative link of the docs that does not resolve."""
    problems = []
    for path in doc_files(root):
        text = open(path, encoding="utf-8").read()
        for m in LINK.finditer(CODE.sub("", _prose(text))):
            target = m.group(1)
            if re.match(r"[a-z][a-z0-9+.-]*:", target, re.I):
                continue   # http:, https:, mailto: are not files of this tree
            ref, _, anchor = target.partition("#")
            dest = os.path.normpath(os.path.join(os.path.dirname(path), ref)) if ref else path
            rel = os.path.relpath(path, root)
            if not dest.startswith(os.path.abspath(root) + os.sep):
                problems.append((rel, target, "points outside the repository"))
            elif not os.path.exists(dest):
                problems.append((rel, target, "no such file"))
            elif anchor and (not dest.endswith(".md") or anchor not in
                             anchors(open(dest, encoding="utf-8").read())):
                problems.append((rel, target, "no such heading"))
    return problems


def test_every_relative_link_and_anchor_resolves():
    files = doc_files(ROOT)
    assert len(files) > 1, "docs/ holds no markdown file"
    links = sum(len(LINK.findall(open(f, encoding="utf-8").read())) for f in files)
    assert links > 10, "too few links found (%d): is the pattern still right?" % links
    assert broken_links(ROOT) == []


def test_the_readme_links_every_page_of_docs():
    readme = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    for path in doc_files(ROOT)[1:]:
        assert "(docs/%s" % os.path.basename(path) in readme, path


def test_anchors_are_named_as_github_names_them():
    text = ("# Docker daemon hardening (`--harden-docker`)\n"
            "## Names under `--profile local-only`\n"
            "## DNS\n## DNS\n```\n# not a heading\n```\n## Many hosts (Ansible, cloud-init)\n")
    assert anchors(text) == {"docker-daemon-hardening---harden-docker",
                             "names-under---profile-local-only", "dns", "dns-1",
                             "many-hosts-ansible-cloud-init"}


def test_a_planted_broken_link_fails(tmp_path):
    for name in ("README.md", "CHANGELOG.md", "LICENSE"):   # what the pages link to
        shutil.copy(os.path.join(ROOT, name), str(tmp_path / name))
    shutil.copytree(os.path.join(ROOT, "docs"), str(tmp_path / "docs"))
    assert broken_links(str(tmp_path)) == []
    with open(str(tmp_path / "docs" / "usage.md"), "a", encoding="utf-8") as f:
        f.write("\nSee [gone](firewall.md#no-such-section), [lost](nowhere.md), "
                "[here](#nor-here) and [up](../../outside.md).\n")
    assert sorted(t for _, t, _ in broken_links(str(tmp_path))) == [
        "#nor-here", "../../outside.md", "firewall.md#no-such-section", "nowhere.md"]
