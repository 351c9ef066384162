"""Where a user source's files may be: inside the project, not through a symlink that leads out."""

from __future__ import annotations

import os
from pathlib import Path

from components.errors import DataError


def user_path(path: str | None, source: str, *, follow_symlinks: bool = False) -> Path:
    """A user source's ``path``, relative to the working directory (the project root, where stages run).

    It must stay inside the project: no absolute path elsewhere, no ``..`` climbing out, and, unless
    ``follow_symlinks``, no symlink on the way that resolves outside. Returns the path as given (messages name
    it as the user wrote it)."""
    if not path:
        raise DataError(f"{source}: expected a 'path' in the dataset's params, got none")
    project = Path.cwd().resolve()
    given = Path(path).expanduser()
    lexical = Path(os.path.normpath(project / given))  # '..' applied, symlinks not followed
    if not within(lexical, project):
        raise DataError(
            f"{source}: path {path} resolves to {lexical}, outside the project {project}; put the data under "
            "data/raw/ and give its path relative to the project root"
        )
    real = lexical.resolve()
    if not follow_symlinks and not within(real, project):
        raise DataError(
            f"{source}: path {path} resolves to {real} (through a symlink), outside the project {project}; move "
            "the data under data/raw/, or set follow_symlinks: true for this dataset if you trust the link"
        )
    return given


def within(path: Path, root: Path) -> bool:
    """``path`` is ``root`` or below it (both absolute, already resolved as the caller wants)."""
    return path == root or root in path.parents
