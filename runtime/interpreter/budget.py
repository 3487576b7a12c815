"""What a program instance may still spend, shared with the work it starts
(LANGUAGE.md section 11).

Each row of a run — a program instance, one of its samples, a beam branch — runs under
a :class:`Budget`: its steps, its deadline (``limits.timeout`` from the instance's start),
the nested-query depth it starts at. The rows of one instance share one
:class:`MemoryPool`: ``limits.memory`` bounds what all of them hold together, so
``sample(n=12)`` holds what one instance may, not twelve times that.

**Nested work.** A standard-library function or a tool may run lmq programs while the
calling program waits for it (``posix`` scores every variant, ``classify`` runs a query, a
``Query`` passed as a tool runs its program). That work spends the caller's budget: while
the interpreter calls host code it makes the calling row's budget the current one
(:meth:`Budget.hosting`, a context variable, so each thread and task sees its own), and
every budget made meanwhile (:meth:`Budget.start`, which every program instance and run
uses) is its child: the child's steps count toward the caller's too, its deadline is
no later than the caller's, its depth starts below the caller's, and its rows join the
caller's memory pool. Nothing is global: outside a host call there is no current budget.
"""

from __future__ import annotations

import contextlib
import time
import weakref
from collections.abc import Iterable, Iterator
from contextvars import ContextVar
from typing import Any, Protocol

from lmq.errors import LmqLimitError
from lmq.limits import Limits
from lmq.runtime.interpreter.sizes import measure


class MemoryHolder(Protocol):
    def memory_roots(self) -> Iterable[Any]:
        """The values this row holds (its variables, hole values, partial results)."""


class MemoryPool:
    """``limit`` bytes shared by the rows that joined it. The values made are charged as
    they are made; once the charges pass a quarter of the limit (at most 128 MB), what
    every member still holds is measured together (a value two rows share counts once).
    So the rows hold at most the limit plus that slack."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.slack = max(min(limit // 4, 128 << 20), 1 << 20)
        self.members: weakref.WeakSet[Any] = weakref.WeakSet()
        self.charged = 0

    def join(self, member: MemoryHolder) -> None:
        self.members.add(member)

    def charge(self, size: int, *extra: Any) -> None:
        """Account for ``size`` new bytes (``extra``: values just made that no member
        holds yet)."""
        self.charged += size
        if self.charged > self.slack:
            self.check(*extra)

    def check(self, *extra: Any) -> None:
        """Measure what the members hold; raise past the limit."""
        self.charged = 0
        roots: list[Any] = list(extra)
        for member in list(self.members):
            roots.extend(member.memory_roots())
        if measure(roots, self.limit) > self.limit:
            raise LmqLimitError(f"the program's values take more than {self.limit:,} bytes "
                                "(limits.memory)")


_current: ContextVar[Budget | None] = ContextVar("lmq_budget", default=None)


class Budget:
    """One row's bounds: ``limits`` (its own; a child is also held to its caller's),
    ``steps`` spent, ``deadline`` (monotonic seconds, None without a timeout: its own
    ``limits.timeout`` from its start, or a caller's that ends first), ``base_depth``
    (the nested-query depth of the caller's host call, 0 at the top) and the shared
    ``pool``."""

    def __init__(self, limits: Limits, pool: MemoryPool, parent: Budget | None = None) -> None:
        self.limits = limits
        self.pool = pool
        self.parent = parent
        self.deadline: float | None = None
        self.timeout: float | None = None  # the seconds that deadline stands for
        self.base_depth = 0
        self.steps = 0
        self.depth = 0  # the nested-query depth the row is at (its interpreter keeps it)

    @classmethod
    def start(cls, limits: Limits, pool: MemoryPool | None = None) -> Budget:
        """The budget of a new row: a child of the current budget when host code started
        it (nested work), else the top of its own. ``pool`` is its instance's pool (None:
        :meth:`pool_for`)."""
        parent = _current.get()
        budget = cls(limits, pool or Budget.pool_for(limits), parent)
        if limits.timeout:
            budget.deadline, budget.timeout = time.monotonic() + limits.timeout, limits.timeout
        if parent is not None:
            budget.base_depth = parent.base_depth + parent.depth + 1
            if parent.deadline is not None and (budget.deadline is None
                                                or parent.deadline < budget.deadline):
                budget.deadline, budget.timeout = parent.deadline, parent.timeout
            budget.enter_query(0)  # a program run by host code is a level of nesting
        return budget

    @staticmethod
    def pool_for(limits: Limits) -> MemoryPool:
        """The pool of a new instance: the caller's in nested work, else a new one."""
        parent = _current.get()
        return parent.pool if parent is not None else MemoryPool(limits.memory)

    @staticmethod
    def spend_current(steps: int, what: str) -> None:
        """Host work of ``steps`` steps (``what``: for the message) on behalf of the
        program whose host call is running; outside one, at most ``limits.steps`` of the
        defaults."""
        parent = _current.get()
        if parent is not None:
            parent.spend(steps, what)
        elif steps > Limits().steps:
            raise LmqLimitError(f"{what} would take {steps:,} steps; the limit is "
                                f"{Limits().steps:,} (limits.steps)")

    @staticmethod
    def check_time() -> None:
        """Raise if the program whose host call is running is past its deadline (long
        host work checks this between its steps; a no-op outside a host call)."""
        parent = _current.get()
        if parent is not None:
            parent.check_deadline()

    @staticmethod
    def current_limits() -> Limits:
        """The limits of the program whose host call is in progress (the defaults
        outside one): what a standard-library function bounds its work by."""
        parent = _current.get()
        return parent.limits if parent is not None else Limits()

    def fork(self) -> Budget:
        """A beam branch's budget: the same steps so far, deadline, parent and pool."""
        twin = Budget(self.limits, self.pool, self.parent)
        twin.deadline, twin.timeout = self.deadline, self.timeout
        twin.base_depth, twin.steps, twin.depth = self.base_depth, self.steps, self.depth
        return twin

    @contextlib.contextmanager
    def hosting(self) -> Iterator[None]:
        """Host code runs on this row's behalf: work it starts is this budget's child."""
        token = _current.set(self)
        try:
            yield
        finally:
            _current.reset(token)

    # ------------------------------------------------------------ spending

    def tick(self) -> None:
        """One statement or loop iteration (the interpreter's hot path)."""
        if self.parent is None and self.steps < self.limits.steps:
            self.steps += 1  # the common case, without a call
        else:
            self.spend(1)
        if self.deadline is not None and time.monotonic() > self.deadline:
            self.check_deadline()

    def spend(self, steps: int, what: str | None = None) -> None:
        """``steps`` steps of work (``what``: host work, for the message), here and for
        every caller."""
        budget: Budget | None = self
        while budget is not None:
            budget.steps += steps
            if budget.steps > budget.limits.steps:
                whose = "" if budget is self else ", counting the nested work it started"
                work = f": {what} takes {steps:,}" if what else ""
                raise LmqLimitError(f"the program ran more than {budget.limits.steps:,} "
                                    f"steps{whose} (limits.steps){work}")
            budget = budget.parent

    def check_deadline(self) -> None:
        if self.deadline is not None and time.monotonic() > self.deadline:
            raise LmqLimitError(f"the run took longer than its timeout of {self.timeout} s "
                                "(limits.timeout)")

    def enter_query(self, depth: int) -> None:
        """The row starts a nested query at ``depth``; a caller's host call counts as one
        level, so ``limits.depth`` bounds nested work too."""
        total = self.base_depth + depth
        budget: Budget | None = self
        while budget is not None:
            if total > budget.limits.depth:
                raise LmqLimitError(f"nested queries are deeper than {budget.limits.depth} "
                                    "(limits.depth)")
            budget = budget.parent
        self.depth = depth
