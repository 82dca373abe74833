"""The Python API's own examples call it as it is: every `fed.`, `model.`, `Federation(...)` and `Party(...)` call in
vfl.api's docstring and in the README's notebook example binds to the signature it names (the docstring once showed
`fed.fit(task="binary", epochs=5)`, a TypeError), and every attribute it reads exists."""
from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path

import pytest

import vfl.api as api

ROOT = Path(__file__).resolve().parents[1]
RECEIVERS = {"fed": api.Federation, "model": api.TrainedModel, "client": api.Client}
CONSTRUCTORS = {"Federation": api.Federation, "Party": api.Party, "Client": api.Client}


def docstring_code() -> str:
    lines = [line[4:] for line in api.__doc__.splitlines() if line.startswith("    ")]
    return "\n".join(line for line in lines if not line.lstrip().startswith("`"))


def readme_python_blocks() -> str:
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    return "\n".join(b for b in blocks if "fed." in b or "client." in b)


def calls(code: str) -> list[tuple[str, object, ast.Call | None]]:
    """(what, the class or function it names, the call node or None for an attribute read)."""
    out = []
    for line in code.splitlines():
        source = line.split("#")[0].strip().rstrip(":")
        if not source:
            continue
        source = re.sub(r"\{\.\.\.\}", "{}", source)
        if source.startswith("with "):
            source = source[len("with "):].split(" as ")[0]
        try:
            tree = ast.parse(source)
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in CONSTRUCTORS:
                out.append((node.func.id, CONSTRUCTORS[node.func.id], node))
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in RECEIVERS:
                cls = RECEIVERS[node.value.id]
                member = getattr(cls, node.attr, None)
                if member is None and node.attr in {f.name for f in getattr(cls, "__dataclass_fields__", {}).values()}:
                    member = "field"
                out.append((f"{node.value.id}.{node.attr}", member, None))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                    and isinstance(node.func.value, ast.Name) and node.func.value.id in RECEIVERS:
                member = getattr(RECEIVERS[node.func.value.id], node.func.attr, None)
                out.append((f"{node.func.value.id}.{node.func.attr}(...)", member, node))
    return out


def check(code: str) -> list[str]:
    problems = []
    for what, target, node in calls(code):
        if target is None:
            problems.append(f"{what}: no such attribute")
            continue
        if node is None or target == "field":
            continue
        signature = inspect.signature(target)
        params = list(signature.parameters)
        if params and params[0] == "self":
            signature = signature.replace(parameters=list(signature.parameters.values())[1:])
        try:
            signature.bind(*[None] * len(node.args), **{k.arg: None for k in node.keywords if k.arg})
        except TypeError as exc:
            problems.append(f"{what}: {exc}")
    return problems


@pytest.mark.parametrize("source", ["vfl.api docstring", "README"])
def test_api_examples_bind_to_the_api(source):
    code = docstring_code() if source == "vfl.api docstring" else readme_python_blocks()
    assert len(calls(code)) >= 6, code          # the examples were found
    assert check(code) == []


def test_the_checker_catches_a_wrong_keyword():
    assert check('model = fed.fit(task="binary", epochs=5)') == \
        ["fed.fit(...): got an unexpected keyword argument 'epochs'"]
    assert check("fed.history_of_everything") == ["fed.history_of_everything: no such attribute"]
