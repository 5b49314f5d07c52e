"""README, docs/ and the DAGs' documentation point only at files in the repository (issue 14: DAG
``doc_md`` and the README referred to a mapping document that users never get)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), *sorted((ROOT / "dags").glob("*.py"))]

#: Places outside the repository that leaked into documentation before.
OUTSIDE = [
    (re.compile(r"shared/spec|shared/style|/seeds/"), "the workspace's spec folder"),
    (re.compile(r"(?<![\w{}])\.\./"), "a path leaving its folder"),
    (re.compile(r"(?<![\w.])/(?:work|root|tmp|Users)/|(?<![\w.])/home/\w+/|file://"), "an absolute local path"),
]
MARKDOWN_LINK = re.compile(r"\]\(([^)\s]+)\)")
REPO_PATH = re.compile(r"`((?:docs|config|dags|plugins|scripts|tests|bench)/[\w./-]+)`")


def _text(path: Path) -> str:
    return path.read_text(encoding="utf-8")


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_link_or_path_leaves_the_repository(document: Path):
    text = _text(document)
    problems = []
    for pattern, what in OUTSIDE:
        for match in pattern.finditer(text):
            if what == "a path leaving its folder" and text[max(0, match.start() - 13):match.start()] == "{config_dir}/":
                continue  # config/../.demo: the config folder's sibling, inside the repository
            line = text.count("\n", 0, match.start()) + 1
            problems.append(f"line {line}: {what}: {text.splitlines()[line - 1].strip()}")
    assert problems == []


@pytest.mark.parametrize("document", [d for d in DOCUMENTS if d.suffix == ".md"], ids=lambda p: str(p.relative_to(ROOT)))
def test_markdown_links_resolve_to_files_in_the_repository(document: Path):
    broken = []
    for target in MARKDOWN_LINK.findall(_text(document)):
        if re.match(r"(https?|mailto):", target) or target.startswith("#"):
            continue
        resolved = (document.parent / target.split("#", 1)[0]).resolve()
        if ROOT not in resolved.parents or not resolved.exists():
            broken.append(target)
    assert broken == []


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_repository_paths_mentioned_exist(document: Path):
    """A `docs/x.md` or `plugins/…` in backticks names a file that is there."""
    missing = []
    for path in REPO_PATH.findall(_text(document)):
        if any(ch in path for ch in "<>*{") or path.endswith("/"):
            continue
        if not (ROOT / path).exists():
            missing.append(path)
    assert missing == []


def test_every_dag_doc_links_the_docs_and_documents_every_param():
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(str(ROOT / "dags"))
    assert not bag.import_errors, bag.import_errors
    assert len(bag.dags) == 4
    for dag in bag.dags.values():
        doc = dag.doc_md or ""
        assert "docs/mapping.md" in doc and "docs/state-tables.md" in doc, dag.dag_id
        assert "Manual run" in doc and "Backfill" in doc and "Clear" in doc, dag.dag_id
        for name in dag.params:
            assert f"`{name}`" in doc, f"{dag.dag_id}: Param {name} is not documented"
