"""The documentation a newcomer reads: the mkdocs site (mkdocs.yml, docs/) builds strictly, so a broken link or
anchor and a page left out of the nav fail `make test`; the README's links resolve and its map names every page."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]


def build_site(root: Path, site: Path) -> subprocess.CompletedProcess:
    """`make docs`'s build of the mkdocs.yml in root, into site."""
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}  # material's end-of-life notice, printed on every build
    return subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)], cwd=root,
                          env=env, capture_output=True, text=True, timeout=120)


def nav_pages(nav) -> list[str]:
    """The doc files mkdocs.yml's nav lists, however deeply nested."""
    if isinstance(nav, str):
        return [nav]
    if isinstance(nav, dict):
        return [page for value in nav.values() for page in nav_pages(value)]
    return [page for entry in nav for page in nav_pages(entry)]


def site_copy(tmp_path: Path) -> Path:
    """mkdocs.yml and docs/ copied (symlinked pages as their files), to break without touching the repo."""
    root = tmp_path / "repo"
    shutil.copytree(REPO / "docs", root / "docs")
    shutil.copy(REPO / "mkdocs.yml", root / "mkdocs.yml")
    return root


def test_the_site_builds_strictly_with_every_page_of_the_nav(tmp_path):
    result = build_site(REPO, tmp_path / "site")
    assert result.returncode == 0, result.stderr[-3000:]
    pages = nav_pages(yaml.safe_load((REPO / "mkdocs.yml").read_text())["nav"])
    assert len(pages) >= 10 and "index.md" in pages
    for page in pages:
        html = tmp_path / "site" / ("index.html" if page == "index.md" else page.removesuffix(".md") + "/index.html")
        assert html.is_file(), f"{page} was not rendered"


def test_a_broken_link_an_unknown_anchor_or_a_page_outside_the_nav_fails_the_build(tmp_path):
    """The strict settings really bite: each breakage alone stops the build with a line naming it."""
    breakages = {
        "a link to a missing page": ("configs.md", "[gone](no_such_page.md)", "no_such_page.md"),
        "an anchor the page lacks": ("configs.md", "[gone](speed.md#no-such-section)", "no-such-section"),
        "a link out of docs/": ("configs.md", "[bench](../bench/throughput.py)", "../bench/throughput.py"),
        "a page missing from the nav": ("orphan.md", "# Orphan", "orphan.md"),
    }
    for name, (page, text, named) in breakages.items():
        root = site_copy(tmp_path / name.replace(" ", "_"))
        path = root / "docs" / page
        path.write_text((path.read_text() if path.exists() else "") + f"\n{text}\n")
        result = build_site(root, root / "site")
        assert result.returncode != 0, f"{name}: the build passed"
        assert named in result.stderr, f"{name}: {result.stderr[-2000:]}"


def test_the_readme_links_resolve_and_its_map_names_every_page_of_the_site():
    readme = (REPO / "README.md").read_text()
    targets = [t for t in re.findall(r"\]\(([^)\s]+)\)", readme) if not re.match(r"[a-z]+://", t)]
    for target in targets:
        assert (REPO / target.split("#")[0]).exists(), f"README links to {target}, which does not exist"
    linked = {t.split("#")[0] for t in targets}
    for page in nav_pages(yaml.safe_load((REPO / "mkdocs.yml").read_text())["nav"]):
        source = (REPO / "docs" / page).resolve().relative_to(REPO).as_posix()  # benchmarks.md is bench/README.md
        assert source in linked or page == "index.md", f"the README's map does not link docs/{page} ({source})"
