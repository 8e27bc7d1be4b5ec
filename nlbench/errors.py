"""The error types the command line and the runner handle: UserError becomes a one-line message and exit
code 2; Diverged and EndOfTaskStopped are how a run ends early."""


class UserError(Exception):
    """Bad input from the user: unknown name, bad value, missing data. Exit code 2."""

    exit_code = 2


def require(cond: bool, message: str) -> None:
    """For a strategy's ``check``: a one-line UserError when a hyperparameter is out of range."""
    if not cond:
        raise UserError(message)


class Diverged(Exception):
    """The loss became NaN or infinite; the runner records the run as diverged."""


class EndOfTaskStopped(Exception):
    """A strategy's end-of-task work gave up at a stop request (RunContext.check_stop). The run stops
    with the checkpoint it already has, from before this task's end, and redoes the work on resume."""
