"""The finished run a command reports on."""
from ..errors import GenmemError
from ..results import read_result


def finished_run(file):
    """The complete run in results ``file``; a :class:`GenmemError` for a missing, foreign or unfinished one."""
    result = read_result(file)
    if not result.complete:
        raise GenmemError(f"{file} holds an unfinished run; finish it with the same 'genmem kfold' command first")
    return result
