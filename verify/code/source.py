"""`FILE.py:NAME` to the object it names. Importing FILE.py runs the user's program, which is what
checking it means (it is their code, not formula text). A file inside a package (folders with
`__init__.py`) is imported under its dotted name, with the package's root on the import path, so that
its own imports work and its classes are the ones the rest of the program uses; a lone file is imported
from its folder under a private name. NAME may be `Class`, `Class.attribute`, `forward,backward`, or
absent when the file defines `forward` and `backward`."""

from __future__ import annotations

import importlib
import importlib.util
import sys
import traceback
import types
from contextlib import contextmanager
from pathlib import Path

from .names import CodeError


def split(spec: str) -> tuple[Path, str]:
    """(file, NAME) of `FILE.py[:NAME]`."""
    path, sep, name = spec.rpartition(":")
    if not sep or not path.endswith(".py"):
        path, name = spec, ""
    return Path(path), name


def resolve(spec: str):
    """The object `FILE.py:NAME` names: a (forward, backward) pair for `A,B` or a file defining both."""
    path, name = split(spec)
    if path.suffix != ".py":
        raise CodeError(f"{spec}: expected FILE.py:NAME (a Python file, then the name of what to check)")
    if not path.is_file():
        raise CodeError(f"{path}: no such file")
    module = load_file(path)
    if not name:
        return module
    parts = [p.strip() for p in name.split(",")]
    found = [_attribute(module, part, path) for part in parts]
    if len(found) == 1:
        return found[0]
    if len(found) == 2:
        return tuple(found)
    raise CodeError(f"{spec}: NAME is one name, or two (forward,backward)")


def _attribute(module, dotted: str, path: Path):
    obj = module
    for part in dotted.split("."):
        if not part.isidentifier() or not hasattr(obj, part):
            defined = sorted(k for k in vars(module) if not k.startswith("_"))
            raise CodeError(
                f"{path}: no {dotted!r} in it (it defines: {', '.join(defined[:12]) or 'nothing'})"
            )
        obj = getattr(obj, part)
    if isinstance(obj, types.ModuleType):  # `FILE.py:np`: a library the file imports, not its layer
        raise CodeError(
            f"{path}:{dotted} is the module {obj.__name__}, not a layer: name a class, an object or a "
            "function (forward,backward) that the file defines"
        )
    return obj


def load_file(path: Path):
    """The module of a Python file (imported once per process); a CodeError naming the line when it
    does not import."""
    path = path.resolve()
    root, dotted = _package(path)
    try:
        if dotted is not None:
            with _importable(root):
                return importlib.import_module(dotted)
        name = f"_gradverify_code_{path.stem}_{abs(hash(str(path))):x}"  # one per file, however named
        if name in sys.modules:
            return sys.modules[name]
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            raise CodeError(f"{path}: Python cannot load it as a module")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        try:
            with _importable(path.parent):
                spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[name]
            raise
        return module
    except SyntaxError as e:
        raise CodeError(f"{e.filename}:{e.lineno}:{e.offset or 0}: {e.msg}") from None
    except Exception as e:
        raise CodeError(
            f"{path}: importing it raised {_where(e, path)}{type(e).__name__}: {_first(e)}"
        ) from None
    except SystemExit as e:
        raise CodeError(f"{path}: importing it called sys.exit({e.code})") from None


@contextmanager
def _importable(folder: Path):
    """The file's folder on sys.path while it is imported, so that it can import its neighbours; taken
    off again afterwards, so that a library call leaves its caller's import path as it found it."""
    entry = str(folder)
    added = entry not in sys.path
    if added:
        sys.path.insert(0, entry)
    try:
        yield
    finally:
        if added and entry in sys.path:
            sys.path.remove(entry)


def _package(path: Path) -> tuple[Path, str | None]:
    """(root, dotted name) of a file inside a package, or (its folder, None)."""
    parts = [path.stem]
    folder = path.parent
    while (folder / "__init__.py").is_file():
        parts.insert(0, folder.name)
        folder = folder.parent
    if len(parts) == 1:
        return path.parent, None
    return folder, ".".join(parts)


def _first(e: BaseException) -> str:
    return str(e).splitlines()[0] if str(e) else ""


def _where(e: BaseException, path: Path) -> str:
    """'line 12: ' for the deepest frame in the user's file, if any."""
    line = None
    for frame, lineno in traceback.walk_tb(e.__traceback__):
        if Path(frame.f_code.co_filename).resolve() == path:
            line = lineno
    return f"at line {line}: " if line else ""
