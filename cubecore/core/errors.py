"""The one error type for bad input: a message the user can act on."""


class CubecoreError(Exception):
    """A problem the user can fix: bad params, a missing file, malformed data."""


def yaml_error(path, exc) -> CubecoreError:
    """A YAML parse error as ``<path>:<line>: not valid YAML (<problem>; <context> at line <n>)``,
    lines 1-based."""
    problem, context = getattr(exc, "problem_mark", None), getattr(exc, "context_mark", None)
    mark = problem or context
    if mark is None:
        return CubecoreError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})")
    what = getattr(exc, "problem", None) or exc.context
    if problem and context and exc.context and context.line != problem.line:
        what += f"; {exc.context} at line {context.line + 1}"
    return CubecoreError(f"{path}:{mark.line + 1}: not valid YAML ({what})")
