"""The one exception type for bad input files, and the JSON reading that raises it."""

import json
from pathlib import Path


class InputError(ValueError):
    """A user's input file is wrong; the message names the file, the row or node and the problem.

    Args:
        path: the offending file (or folder).
        problem: what is wrong, in words.
        line: 1-based line number in a text file (the header is line 1), if it applies.
        what: a short locator such as ``"node n3 of scan s1"``, if it applies.
    """

    def __init__(self, path, problem: str, *, line: int | None = None, what: str | None = None):
        where = str(path)
        if line is not None:
            where += f", line {line}"
        if what:
            where += f" ({what})"
        super().__init__(f"{where}: {problem}")
        self.path = str(path)
        self.line = line
        self.problem = problem
        self.what = what

    def __reduce__(self):
        # keyword-only arguments: rebuild explicitly so the error crosses process boundaries
        return _rebuild, (self.path, self.problem, self.line, self.what)


def _rebuild(path, problem, line, what) -> InputError:
    return InputError(path, problem, line=line, what=what)


def read_json(path: Path):
    """The JSON document of ``path``.

    Raises:
        InputError: the file is missing, not text, or not valid JSON (with its line).
    """
    if not path.is_file():
        raise InputError(path, "file not found")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise InputError(path, f"not valid JSON ({exc.msg})", line=exc.lineno) from None
    except UnicodeDecodeError as exc:
        raise InputError(path, f"not a text file ({exc})") from None
