"""The docs state each measured figure once, in BENCHMARKS.md, and elsewhere link to it (two
places disagreeing, such as one case at 2.0 s here and 6.8 s there, is what this prevents). And
every command and link they show is real: a script a command runs exists in the folder the text
is about, `hamilton-feast`, `python apply.py` (or any script's) and `feast` commands use
subcommands and options the parsers accept, `pip install ".[extra]"` names an extra of
pyproject.toml, and every relative link and picture resolves, anchors included. Nothing is run:
each parser is asked, in this process, whether it accepts the command."""

import argparse
import ast
import contextlib
import io
import os
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import click
import pytest
from feast.cli.cli import cli as feast_cli

from cross_repo import DEFAULT, INTEGRATION, ROOT, SIMPLE
from hamilton_feast import cli as hamilton_feast_cli
from hamilton_feast import script as apply_script

# A duration, a size, a speed-up or a latency percentile.
FIGURE = re.compile(
    r"\b\d[\d,.]*\s?(?:ms|s|GB|MB)\b|\b\d+(?:\.\d+)?\s?x (?:faster|as long|the limit|of)\b|\bp(?:50|99)\b"
)
# Where figures belong: the benchmark table, the script that measures it, and the tests (which
# print what they measure without promising it).
MEASURING = ("BENCHMARKS.md", "benchmarks/", "tests/", "/tests/", "constraints.txt")

REPOS = (DEFAULT, SIMPLE, INTEGRATION)
# The pages whose commands are checked. The commands of README.md and docs/ run from the
# project's folder, a repo's README's from the repo's.
PAGES = ["README.md", *sorted(f"docs/{page.name}" for page in (ROOT / "docs").glob("*.md")),
         *(f"{repo}/README.md" for repo in REPOS)]
LINKED_PAGES = [*PAGES, "BENCHMARKS.md"]

FENCE = re.compile(r"^```([\w-]*)[^\n]*\n(.*?)^```[ \t]*$", re.M | re.S)
SHELL_BLOCKS = {"bash", "sh", "shell", "console"}
CODE_SPAN = re.compile(r"`([^`]+)`")
LINK = re.compile(r"!?\[[^\]]*\]\(<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\)")
HEADING = re.compile(r"^#{1,6}[ \t]+(.+?)[ \t#]*$", re.M)
ASSIGNMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*=")
SEPARATORS = {"&&", "||", ";", "|", "&"}
# Commands shown but not checked: they install or fetch, or only change the shell.
NOT_CHECKED = {"export", "curl", "source", "echo", "apt-get", "redis-server"}
# An inline code span is a command to check when its first word is one of these.
INLINE = {"python", "python3", "hamilton-feast", "feast", "cd", "pytest", "jupyter", "diff"}
FILE_ARGUMENT = re.compile(r"[\w./-]+\.(?:py|ipynb|yaml|yml|sh|txt)")


def _listed_files() -> list[str]:
    """The tracked files, and the new ones about to be (so a new page is checked before its commit)."""
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"],
                            cwd=ROOT, capture_output=True, text=True, check=True)
    return sorted({name for name in listed.stdout.splitlines() if (ROOT / name).is_file()})


def test_performance_figures_are_written_only_in_benchmarks_md():
    checked, found = [], []
    for name in _listed_files():
        if name.startswith(MEASURING) or any(part in name for part in MEASURING[2:4]):
            continue
        if not name.endswith((".md", ".py", ".yaml", ".ipynb", ".sh", ".toml")):
            continue
        checked.append(name)
        for number, line in enumerate((ROOT / name).read_text().splitlines(), 1):
            if FIGURE.search(line):
                found.append(f"{name}:{number}: {line.strip()}")
    assert len(checked) > 30
    assert set(PAGES) <= set(checked), "the docs pages are not all checked"
    assert found == [], "\n".join(found)


def test_the_readmes_link_to_the_figures():
    for readme in ["README.md", "integration_feature_store/README.md", "docs/serving.md", "docs/scale.md"]:
        assert "BENCHMARKS.md" in (ROOT / readme).read_text(), readme


# --- What a page shows --------------------------------------------------------------------------

def _prose(text: str) -> str:
    """The page without its fenced blocks."""
    return FENCE.sub("", text)


def _words(line: str) -> list[str]:
    """A shell line split as the shell splits it, comments dropped; ValueError on an open quote."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars=";&|")
    lexer.whitespace_split = True
    return list(lexer)


def _block_lines(body: str, prompted_only: bool):
    """Each command line of a fenced block, a line continued by `\\` or by an open quote joined
    to the next. In an output block only the lines after a `$ ` prompt are commands."""
    pending = ""
    for line in body.splitlines():
        if line.startswith("$ "):
            line = line[2:]
        elif prompted_only and not pending:
            continue
        pending += line
        if pending.rstrip().endswith("\\"):
            pending = pending.rstrip()[:-1] + " "
            continue
        try:
            words = _words(pending)
        except ValueError:  # a quoted argument spans lines, as curl's JSON does
            pending += "\n"
            continue
        pending = ""
        if words:
            yield words
    assert not pending, f"a command with an open quote: {pending}"


def _commands(words: list[str]):
    """The simple commands of a line (split at &&, ;, |), without leading VAR=value settings."""
    command = []
    for word in [*words, ";"]:
        if word not in SEPARATORS:
            command.append(word)
            continue
        while command and ASSIGNMENT.match(command[0]):
            command.pop(0)
        if command:
            yield command
        command = []


def _page_folder(page: str) -> Path:
    return ROOT if page == "README.md" or page.startswith("docs/") else (ROOT / page).parent


def shown_commands(page: str):
    """(where, the folders it may run in, its lines, whether inline) for each shell block and each
    inline command of a page. A block runs from the page's folder; an inline command may be about
    any repo when the page is the project's."""
    text = (ROOT / page).read_text()
    folder = _page_folder(page)
    for number, (language, body) in enumerate(FENCE.findall(text), 1):
        if language in SHELL_BLOCKS or language == "":
            lines = list(_block_lines(body, prompted_only=language == ""))
            if lines:
                yield f"{page}, block {number}", [folder], lines, False
    folders = [folder, *(ROOT / repo for repo in REPOS)] if folder == ROOT else [folder]
    for span in CODE_SPAN.findall(_prose(text)):
        span = " ".join(span.split())
        try:
            words = _words(span)
        except ValueError:
            continue
        first = next((word for word in words if not ASSIGNMENT.match(word)), "")
        if first in INLINE or first.startswith("./"):
            yield f"{page}, `{span}`", folders, [words], True


# --- Whether a command is real ------------------------------------------------------------------

class Shell:
    """The folder a block's commands run in, followed through `cd`, and the folders `cp -r`
    copied (so that `cd` into a copy means the original)."""

    def __init__(self, folder: Path):
        self.folder, self.copies = folder, {}


def _where(folder: Path) -> str:
    return str(folder.relative_to(ROOT)) if folder.is_relative_to(ROOT) and folder != ROOT else "the project's folder"


def _parsed(parse, argv: list[str], lenient: bool) -> list[str]:
    """Problems of an argparse command line: its error message, if it has one. A lenient (inline)
    mention may leave out required arguments."""
    message = io.StringIO()
    try:
        with contextlib.redirect_stderr(message), contextlib.redirect_stdout(io.StringIO()):
            parse(argv)
    except SystemExit as exit:
        if exit.code:
            error = (message.getvalue().strip().splitlines() or [f"exit code {exit.code}"])[-1]
            if lenient and ("arguments are required" in error or re.search(r"one of the arguments .* is required", error)):
                return []
            return [error]
    return []


def _files_named(argv: list[str], folder: Path) -> list[str]:
    """Each argument naming a file (a .yaml, .py, .ipynb ...) must exist in the folder."""
    values = [part for word in argv for part in word.split("=", 1)[-1:] if not part.startswith("-")]
    return [f"{value} is not in {_where(folder)}" for value in values
            if FILE_ARGUMENT.fullmatch(value) and not (folder / value).exists()]


def _apply_arguments_call(tree: ast.Module, name: str = "apply_arguments"):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) == name:
            return node
    return None


def _script_parser(path: Path):
    """How a script parses its arguments: an apply script through script.apply_arguments, as it
    calls it, a stream script through streaming.arguments; any other through a parser rebuilt
    from its add_argument calls."""
    tree = ast.parse(path.read_text())
    stream = _apply_arguments_call(tree, "arguments")
    if stream is not None and getattr(stream.func, "value", None) is not None and stream.func.value.id == "streaming":
        from hamilton_feast import streaming

        return lambda argv: streaming.arguments(ast.get_docstring(tree) or path.name, argv)
    call = _apply_arguments_call(tree)
    if call is not None:
        materialize = any(k.arg == "materialize" and ast.literal_eval(k.value) for k in call.keywords)
        doc = ast.get_docstring(tree) or path.name
        return lambda argv: apply_script.apply_arguments(doc, argv, materialize=materialize)
    parser = argparse.ArgumentParser(prog=path.name)
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "add_argument":
            try:
                names = [ast.literal_eval(arg) for arg in node.args]
            except ValueError:  # a name that is not a literal: not an option the docs can show
                continue
            kept = {}
            for keyword in node.keywords:
                if keyword.arg in ("action", "choices", "nargs"):
                    with contextlib.suppress(ValueError):
                        kept[keyword.arg] = ast.literal_eval(keyword.value)
            parser.add_argument(*names, **kept)
    return parser.parse_args


def _python(argv: list[str], folder: Path, lenient: bool) -> list[str]:
    if not argv or argv[0].startswith("-"):
        return [f"python {' '.join(argv)}: only `python SCRIPT ...` is checked"]
    path = folder / argv[0]
    if not path.is_file():
        return [f"{argv[0]} is not in {_where(folder)}"]
    return _parsed(_script_parser(path), argv[1:], lenient) + _files_named(argv[1:], folder)


def _hamilton_feast(argv: list[str], folder: Path, lenient: bool) -> list[str]:
    problems = _parsed(hamilton_feast_cli._parser().parse_args, argv, lenient)
    repo = folder / argv[argv.index("--repo") + 1] if "--repo" in argv else folder
    return problems + _files_named(argv, repo)


def _feast(argv: list[str], folder: Path, lenient: bool) -> list[str]:
    """Asks feast's click parser, without invoking anything: each group's options, then its
    subcommand, down to the command and its own options and arguments."""
    command, name, args, context = feast_cli, "feast", list(argv), None
    try:
        while isinstance(command, click.Group):
            context = click.Context(command, info_name=name, parent=context)
            rest = click.Command.parse_args(command, context, args)
            if not rest:
                return [f"{name}: no subcommand"]
            name, command, args = command.resolve_command(context, rest)
        command.make_context(name, args, parent=context)
    except click.MissingParameter as error:
        return [] if lenient else [error.format_message()]
    except click.ClickException as error:
        return [error.format_message()]
    return _files_named(argv, folder)


def _pip(argv: list[str], folder: Path) -> list[str]:
    """Not run; but a local install's extras are the project's, and a constraints file exists."""
    problems = []
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    for before, word in zip(["", *argv], argv):
        if before in ("-c", "-r") and not (folder / word).is_file():
            problems.append(f"{word} is not in {_where(folder)}")
        local = re.fullmatch(r"(\.[\w./-]*)\[([\w,-]+)\]", word)
        if local:
            if not (folder / local[1] / "pyproject.toml").is_file():
                problems.append(f"{local[1]} in {_where(folder)} is not this project")
            problems += [f"pyproject.toml has no extra {extra}" for extra in local[2].split(",") if extra not in extras]
    return problems


def check(command: list[str], shell: Shell, lenient: bool = False) -> list[str]:
    """What is wrong with one command shown in the docs, run in shell's folder."""
    name, argv, folder = command[0], command[1:], shell.folder
    if name == "cd":
        target = argv[0] if argv else "~"
        shell.folder = shell.copies.get(target) or (folder / target).resolve()
        return [] if shell.folder.is_dir() else [f"cd {target}: no such folder in {_where(folder)}"]
    if name == "cp":
        paths = [word for word in argv if not word.startswith("-")]
        if len(paths) == 2:
            shell.copies[paths[1]] = folder / paths[0]
        return [f"{path} is not in {_where(folder)}" for path in paths[:-1] if not (folder / path).exists()]
    if name in NOT_CHECKED:
        return []
    if name in ("pip", "pip3"):
        return _pip(argv, folder)
    if name in ("python", "python3"):
        return _python(argv, folder, lenient)
    if name == "hamilton-feast":
        return _hamilton_feast(argv, folder, lenient)
    if name == "feast":
        return _feast(argv, folder, lenient)
    if name == "jupyter":
        if not argv or not (Path(sys.executable).parent / f"jupyter-{argv[0]}").exists():
            return [f"jupyter {' '.join(argv[:1])}: no such jupyter command installed"]
        return [f"{path} is not in {_where(folder)}" for path in argv[1:] if not (folder / path).exists()]
    if name in ("prometheus", "promtool"):  # Prometheus's own (Debian's prometheus package): their files must exist
        return _files_named(argv, folder)
    if name == "spark-class":  # pyspark's, starting a standalone cluster's master or worker
        installed = (Path(sys.executable).parent / name).is_file()
        known = argv[:1] in (["org.apache.spark.deploy.master.Master"], ["org.apache.spark.deploy.worker.Worker"])
        return [] if installed and known else [f"spark-class {' '.join(argv[:1])}: not pyspark's master or worker"]
    if name in ("pytest", "diff"):
        return [f"{path} is not in {_where(folder)}" for path in argv
                if not path.startswith("-") and not (folder / path).exists()]
    if "/" in name:
        path = folder / name
        return [] if path.is_file() and os.access(path, os.X_OK) else [f"{name} is not an executable file in {_where(folder)}"]
    return [f"{name}: not a command tests/test_docs.py knows how to check; teach it, or add it to NOT_CHECKED"]


def command_problems(page: str) -> list[str]:
    problems = []
    for where, folders, lines, inline in shown_commands(page):
        if not inline:  # a block: its lines run one after the other, from the page's folder
            shell = Shell(folders[0])
            for words in lines:
                for command in _commands(words):
                    problems += [f"{where}: {' '.join(command)}: {problem}" for problem in check(command, shell)]
            continue
        commands = [command for words in lines for command in _commands(words)]
        found = [[problem for command in commands for problem in check(command, shell, lenient=True)]
                 for shell in (Shell(folder) for folder in folders)]
        if all(found):  # an inline mention is right if it is right in one folder it may be about
            problems += [f"{where}: {found[0][0]}"]
    return problems


def test_the_command_checker_tells_a_broken_command():
    """The check can fail: a misspelled subcommand, an unknown option, a missing script, an option
    of the wrong subcommand, an unknown extra, and a cd into nowhere are each found."""
    broken = [
        (["hamilton-feast", "chnages"], ROOT / INTEGRATION),
        (["hamilton-feast", "online", "--check", "--feature-store-yaml", "feature_store.redis.yaml"], ROOT / INTEGRATION),
        (["python", "apply.py", "--materialize"], ROOT / SIMPLE),
        (["python", "generate_data.py", "--rows", "5"], ROOT / DEFAULT),
        (["python", "apply.py"], ROOT / DEFAULT),
        (["feast", "materialise-incremental", "now"], ROOT / DEFAULT),
        (["feast", "serve", "--worker", "2"], ROOT / INTEGRATION),
        (["feast", "-f", "feature_store.spark.yaml", "apply"], ROOT / SIMPLE),
        (["pip", "install", ".[sparks]", "-c", "constraints.txt"], ROOT),
        (["./scripts/deploy.sh"], ROOT),
        (["cd", "integration_store"], ROOT),
        (["spark-class", "org.apache.spark.deploy.worker.Workers"], ROOT),
    ]
    for command, folder in broken:
        assert check(command, Shell(folder)), f"not caught: {' '.join(command)} in {folder.name}"
    shown = [words for page in PAGES for _, _, lines, _ in shown_commands(page) for words in lines]
    assert len(shown) > 80, "the pages' commands were not found"
    assert check(["hamilton-feast", "--feature-store-yaml", "feature_store.redis.yaml", "online", "--check"],
                 Shell(ROOT / INTEGRATION)) == []


@pytest.mark.parametrize("page", PAGES)
def test_every_command_in_the_docs_is_real(page):
    assert command_problems(page) == []


def test_the_readme_sets_up_with_the_two_commands_ci_runs():
    section = (ROOT / "README.md").read_text().split("## Two commands\n")[1].split("\n## ")[0]
    commands = [command for language, body in FENCE.findall(section) if language == "bash"
                for words in _block_lines(body, prompted_only=False) for command in _commands(words)]
    assert commands == [["./scripts/demo.sh"], ["./scripts/test.sh"]]
    ci = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert {"./scripts/demo.sh", "./scripts/test.sh"} <= set(ci)


# --- Links --------------------------------------------------------------------------------------

def _anchors(page: Path) -> set[str]:
    """GitHub's anchors for a page's headings: lower case, punctuation dropped, spaces to hyphens,
    a repeated heading numbered."""
    anchors, seen = set(), {}
    for heading in HEADING.findall(_prose(page.read_text())):
        text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).replace("`", "")
        slug = re.sub(r"[^\w\- ]", "", text.strip().lower()).replace(" ", "-")
        anchors.add(f"{slug}-{seen[slug]}" if slug in seen else slug)
        seen[slug] = seen.get(slug, 0) + 1
    return anchors


def link_problems(page: str, text: str | None = None) -> list[str]:
    """What is wrong with the relative links and pictures of a page (of text, if given)."""
    source = ROOT / page
    problems = []
    for target in LINK.findall(CODE_SPAN.sub("", _prose(text or source.read_text()))):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        resolved = (source.parent / path).resolve() if path else source
        if not resolved.exists():
            problems.append(f"{page}: {target}: no such file")
        elif anchor and resolved.suffix == ".md" and anchor not in _anchors(resolved):
            problems.append(f"{page}: {target}: {resolved.name} has no heading #{anchor}")
    return problems


@pytest.mark.parametrize("page", LINKED_PAGES)
def test_every_relative_link_and_picture_resolves(page):
    assert link_problems(page) == []


def test_the_link_checker_tells_a_broken_link():
    """The check can fail: a picture's path written from the wrong folder and an anchor of no
    heading are each found."""
    text = (ROOT / "docs" / "serving.md").read_text()
    broken = text.replace("](../integration_feature_store/feast_ui.png)", "](integration_feature_store/feast_ui.png)")
    broken = broken.replace("](../BENCHMARKS.md)", "](../BENCHMARKS.md#no-such-section)")
    assert broken != text and link_problems("docs/serving.md") == []
    assert len(link_problems("docs/serving.md", broken)) == 2
