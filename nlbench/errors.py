"""The one error type the command line turns into a one-line message and exit code 2."""


class UserError(Exception):
    """Bad input from the user: unknown name, bad value, missing data. Exit code 2."""

    exit_code = 2


def require(cond: bool, message: str) -> None:
    """For a strategy's ``check``: a one-line UserError when a hyperparameter is out of range."""
    if not cond:
        raise UserError(message)


class Diverged(Exception):
    """The loss became NaN or infinite; the runner records the run as diverged."""
