"""The lmq interpreter: executes checked IR one program instance at a time.

A :class:`ProgramState` is an explicit stack machine (frames for blocks, loops, prompt
statements and nested-query activations), so the decoding loop can pause it at every hole,
run many instances in lockstep, and fork it cheaply for branching decoders (``fork`` copies
the frames and every mutable value the program holds, never the IR). The interpreter
never sees a model: it emits :class:`Segment` s of prompt text and :class:`HoleRequest` s,
and is given each hole's value back through :meth:`ProgramState.fill`. Parameters enter
and values leave through :mod:`lmq.runtime.interpreter.boundary`; the row's bounds are its
:class:`~lmq.runtime.interpreter.budget.Budget`.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import weakref
from collections.abc import Callable, Mapping
from typing import Any

from lmq import grammars, ir, regular
from lmq.api import Query
from lmq.constraints import constraints_for, hole_spec
from lmq.errors import LmqError, LmqLimitError, LmqRuntimeError, LmqSandboxError, Source
from lmq.limits import Limits
from lmq.runtime.decoding.instance import HoleRequest, Segment
from lmq.runtime.interpreter import boundary, definitions, modules, sandbox, sizes
from lmq.runtime.interpreter.budget import Budget
from lmq.runtime.interpreter.evaluate import Evaluator, Scope
from lmq.runtime.interpreter.frames import (
    LOOPS,
    Block,
    ForLoop,
    Frame,
    PromptRun,
    QueryCall,
    QueryFunction,
    WhileLoop,
    bind_arguments,
    host_query_definition,
)
from lmq.runtime.interpreter.functions import FunctionCall, UserFunction
from lmq.runtime.interpreter.operations import Callables, host_callback
from lmq.runtime.interpreter.records import RecordType

ROLES = ("system", "user", "assistant")
DEFAULT_LIMITS = Limits()


class _Unwind(Exception):
    pass


class ProgramState:
    """One running instance of a program (a batch row, a sample, or a beam branch)."""

    def __init__(self, program: ir.Program, params: Mapping[str, Any],
                 tools: Mapping[str, Any], limits: Limits = DEFAULT_LIMITS,
                 output: Callable[[str], None] | None = None,
                 budget: Budget | None = None) -> None:
        """``budget`` is the row's (:meth:`Budget.start` of ``limits`` without one); the
        parameters are admitted (copied, host objects made opaque)."""
        self.program = program
        self.budget = budget or Budget.start(limits)
        self.limits = limits = self.budget.limits
        self.budget.pool.join(self)
        output = output or (lambda text: print(text, end=""))
        builtins_table = sandbox.make_builtins(limits, output)
        names = {**builtins_table, "lmql": modules.module("lmql", limits, self.budget.tick),
                 **tools}
        self.names = self._own_names(names)
        self.evaluator = self._new_evaluator(Callables(builtins_table, tools.values()))
        self.globals = Scope({name: boundary.admit(value, limits, f"parameter '{name}'")
                              for name, value in params.items()}, None, self.names)
        self.frames: list[Frame] = [Block(program.body, self.globals)]
        self.context: list[Segment] = []
        self.prompt_parts: list[str] = []
        self.prompt_size = 0  # characters in prompt_parts (bounded by limits.string_size)
        self.role: str | None = None
        self.values: dict[str, list[Any]] = {}
        self.logprobs: dict[str, list[float]] = {}
        self.return_value: Any = None
        self.distribution: dict[str, dict[str, float]] = {}
        self.pending: HoleRequest | None = None
        self.record: RecordType | None = None  # the record type of the pending hole
        self.calls = 0  # functions running (bounded by limits.depth)
        self.finished = False

    # The instance's own names and evaluator refer back to it weakly: without cycles, a
    # finished or failed instance's values are freed at once, not at the next collection.

    def _own_names(self, names: dict[str, Any]) -> dict[str, Any]:
        """The fixed names with LMQL's ``context`` showing this instance's prompt."""
        me = weakref.ref(self)
        return {**names, "context": definitions.Context(lambda: me().prompt)}  # type: ignore[union-attr]

    def _new_evaluator(self, callables: Callables) -> Evaluator:
        evaluator = Evaluator(self.budget, callables)
        me = weakref.ref(self)
        evaluator.dispatch[ir.Lambda] = lambda expr, scope: me()._function(  # type: ignore[union-attr]
            "<lambda>", expr.params, (ir.Return(expr.body, span=expr.body.span),), scope,
            expr.span)
        return evaluator

    # ------------------------------------------------------------ public surface

    @property
    def prompt(self) -> str:
        return "".join(self.prompt_parts)

    @property
    def source(self) -> Source:
        return self.program.source

    @property
    def variables(self) -> dict[str, Any]:
        """Each hole's last value, as the host gets it (:func:`boundary.hand_out`)."""
        return {name: boundary.hand_out(values[-1]) for name, values in self.values.items()}

    def run(self) -> HoleRequest | None:
        """Execute until a hole needs the model (returned) or the program ends (None)."""
        try:
            while self.frames:
                request = self._step(self.frames[-1])
                if request is not None:
                    return request
        except LmqError as error:
            if error.span is None:  # a limit checked between statements: point at one
                error.span = self._current_span()
            error.with_source(self.program.source)
            raise
        except RecursionError:
            raise LmqRuntimeError("the program is nested too deeply", self._current_span(),
                                  self.program.source) from None
        except Exception as error:  # a host object's method raised (in `if x:`, ...)
            raise LmqRuntimeError(f"{type(error).__name__}: {error}", self._current_span(),
                                  self.program.source) from None
        self.finished = True
        return None

    def _current_span(self) -> Any:
        """The span of the statement (or nested-query hole) the program is at, if any."""
        if not self.frames:
            return None
        frame = self.frames[-1]
        if isinstance(frame, Block):
            return frame.stmts[max(frame.pc - 1, 0)].span if frame.stmts else None
        if isinstance(frame, QueryCall):
            return frame.hole.span
        if isinstance(frame, FunctionCall):
            return frame.function.span
        return frame.stmt.span

    def fill(self, text: str, *, tokens: tuple[int, ...] | None = None, model: Any = None,
             logprobs: list[float] | None = None) -> None:
        """Give the pending hole its generated ``text``; the program continues on the next
        :meth:`run`. The variable gets the converted, decorated value; the prompt keeps
        ``text``."""
        frame, request = self.frames[-1], self.pending
        assert isinstance(frame, PromptRun) and request is not None, "no pending hole"
        self.pending = None
        try:
            self._emit(text, frame, hole=request.hole.name, tokens=tokens, model=model)
            value = self._postprocess(request, text, frame.scope)
            self.record = None
            self._bind(request.hole, value, frame.scope, logprobs or [])
        except LmqError as error:
            if error.span is None:
                error.span = request.hole.span
            raise error.with_source(self.program.source) from None
        frame.index += 1

    def record_distribution(self, hole: str, probabilities: dict[str, float]) -> None:
        """Keep the probabilities of a distribution hole's values for the result."""
        self.distribution[hole] = probabilities

    def fork(self) -> ProgramState:
        """An independent copy: same position, shared IR, and its own copy of every
        mutable value the program holds, wherever it is held (variables of every scope,
        the items of running loops, hole values; one copy of a value held in several
        places). Objects the program holds opaque are shared."""
        twin = copy.copy(self)
        twin.budget = self.budget.fork()  # the same memory pool: branches share it
        twin.budget.pool.join(twin)
        twin.evaluator = twin._new_evaluator(self.evaluator.callables.copy())
        twin.evaluator.collisions = self.evaluator.collisions.copy()
        twin.names = twin._own_names(self.names)
        walk = boundary.state_copier()
        scopes: dict[int, Scope] = {}

        def copy_scope(scope: Scope) -> Scope:
            if id(scope) not in scopes:
                parent = copy_scope(scope.parent) if scope.parent else None
                variables = walk(scope.variables)
                for name, value in variables.items():  # the twin runs its own functions
                    if isinstance(value, UserFunction) and value.machine is self:
                        variables[name] = value.bound_to(twin)
                scopes[id(scope)] = Scope(variables, parent, twin.names)
            return scopes[id(scope)]

        twin.globals = copy_scope(self.globals)
        twin.frames = [copy.copy(frame) for frame in self.frames]
        for frame in twin.frames:
            frame.scope = copy_scope(frame.scope)
            if isinstance(frame, ForLoop):
                frame.items = walk(frame.items)
        twin.context = list(self.context)
        twin.prompt_parts = list(self.prompt_parts)
        twin.values = walk(self.values)
        twin.logprobs = dict(self.logprobs)
        twin.distribution = dict(self.distribution)
        twin.return_value = walk(self.return_value)
        return twin

    # ------------------------------------------------------------ machine

    def check_deadline(self) -> None:
        """Raise if the run is past ``limits.timeout`` (the decoding loop calls this
        between steps: a long hole runs no statements)."""
        try:
            self.budget.check_deadline()
        except LmqError as error:
            error.span = self._current_span()
            raise error.with_source(self.program.source) from None

    def memory_roots(self) -> list[Any]:
        """What the program holds (for ``limits.memory``): every scope's variables, the
        items of running ``for`` loops, the hole values, the partial results of the
        expression being evaluated and the keys kept against hash collisions."""
        evaluator = self.evaluator
        roots: list[Any] = [self.values, evaluator.held, evaluator.collisions.keys]
        seen: set[int] = set()
        for frame in self.frames:
            scope: Scope | None = frame.scope
            while scope is not None and id(scope) not in seen:
                seen.add(id(scope))
                roots.append(scope.variables)
                scope = scope.parent
            if isinstance(frame, ForLoop):
                roots.append(frame.items)
        roots.append(self.globals.variables)
        return roots

    def _step(self, frame: Frame) -> HoleRequest | None:
        if isinstance(frame, Block):
            if frame.pc >= len(frame.stmts):
                self.frames.pop()
                return None
            stmt = frame.stmts[frame.pc]
            frame.pc += 1
            self.budget.tick()
            try:
                return self._execute(stmt, frame.scope)
            except _Unwind:
                return None
        if isinstance(frame, ForLoop):
            if frame.index >= len(frame.items):
                self.frames.pop()
                return None
            self.budget.tick()
            item = frame.items[frame.index]
            frame.index += 1
            self.evaluator.assign(frame.stmt.target, item, frame.scope)
            self.frames.append(Block(frame.stmt.body, frame.scope))
            return None
        if isinstance(frame, WhileLoop):
            self.budget.tick()
            if self.evaluator.evaluate(frame.stmt.test, frame.scope):
                self.frames.append(Block(frame.stmt.body, frame.scope))
            else:
                self.frames.pop()
            return None
        if isinstance(frame, PromptRun):
            return self._prompt_step(frame)
        self.frames.pop()
        if isinstance(frame, QueryCall):
            # A QueryCall frame on top means its body ran to the end without `return`:
            # a macro, whose text stays and is the hole's value.
            self._finish_query(frame, None, returned=False)
        return None

    def _execute(self, stmt: ir.Stmt, scope: Scope) -> HoleRequest | None:
        evaluate = self.evaluator.evaluate
        if isinstance(stmt, ir.Prompt):
            self.frames.append(PromptRun(stmt, scope))
        elif isinstance(stmt, ir.Assign):
            value = evaluate(stmt.value, scope)
            for target in stmt.targets:
                self.evaluator.assign(target, value, scope)
        elif isinstance(stmt, ir.AugAssign):
            current = evaluate(stmt.target, scope)  # type: ignore[arg-type]
            operand = evaluate(stmt.value, scope)
            result = self.evaluator.augment(stmt.op, current, operand, stmt)
            self.evaluator.assign(stmt.target, result, scope)
        elif isinstance(stmt, ir.ExprStmt):
            evaluate(stmt.value, scope)
        elif isinstance(stmt, ir.If):
            branch = stmt.body if evaluate(stmt.test, scope) else stmt.orelse
            self.frames.append(Block(branch, scope))
        elif isinstance(stmt, ir.For):
            items = evaluate(stmt.iter, scope)
            if not isinstance(items, (list, tuple, range, str)):
                items = list(self.evaluator.iterate(items, stmt.iter))
            self.frames.append(ForLoop(stmt, scope, items))
        elif isinstance(stmt, ir.While):
            self.frames.append(WhileLoop(stmt, scope))
        elif isinstance(stmt, (ir.Break, ir.Continue)):
            self._unwind_loop(isinstance(stmt, ir.Break))
        elif isinstance(stmt, ir.Return):
            value = None if stmt.value is None else evaluate(stmt.value, scope)
            self._return(value)
        elif isinstance(stmt, ir.QueryDef):
            scope.variables[stmt.name] = QueryFunction(stmt)
        elif isinstance(stmt, ir.FunctionDef):
            scope.variables[stmt.name] = self._function(stmt.name, stmt.params, stmt.body,
                                                        scope, stmt.span)
        elif isinstance(stmt, ir.RecordDef):
            scope.variables[stmt.name] = definitions.record(stmt, scope, self.evaluator)
        elif isinstance(stmt, ir.Assert):
            definitions.check_assert(stmt, scope, self.evaluator, self.program.source)
        elif isinstance(stmt, ir.Import):
            definitions.bind_imports(stmt, scope, self.limits, self.budget.tick,
                                     self.evaluator.callables)
        return None

    # ------------------------------------------------------------ functions

    def _function(self, name: str, params: tuple[ir.Param, ...], body: tuple[ir.Stmt, ...],
                  scope: Scope, span: Any) -> UserFunction:
        closure = None if scope is self.globals else scope
        return UserFunction(name, params, body,
                            definitions.defaults(params, scope, self.evaluator), closure,
                            self, span)

    def invoke(self, function: UserFunction, args: tuple, kwargs: dict) -> Any:
        """Run a call of ``function`` to its end on this stack machine and return its
        value (a function body has no holes: nothing here waits for the model)."""
        if self.calls >= self.limits.depth:
            raise LmqLimitError(f"function calls are nested deeper than {self.limits.depth} "
                                "(limits.depth)")
        scope = Scope(function.bind(args, kwargs), function.closure or self.globals,
                      self.names)
        mark = len(self.frames)
        call = FunctionCall(scope, function)
        self.frames += [call, Block(function.body, scope)]
        self.calls += 1
        try:
            while len(self.frames) > mark:
                if self._step(self.frames[-1]) is not None:
                    raise LmqRuntimeError("a function cannot fill holes", function.span)
        finally:
            self.calls -= 1
            del self.frames[mark:]
        return call.result

    def _unwind_loop(self, is_break: bool) -> None:
        while not isinstance(self.frames[-1], LOOPS):
            if isinstance(self.frames[-1], (QueryCall, FunctionCall)) or len(self.frames) == 1:
                raise LmqRuntimeError("'break' or 'continue' outside a loop")
            self.frames.pop()
        if is_break:
            self.frames.pop()
        raise _Unwind

    def _return(self, value: Any) -> None:
        calls = (QueryCall, FunctionCall)
        if not any(isinstance(frame, calls) for frame in self.frames):
            sizes.check_extent(value, self.limits, "the return value")
            sizes.check_unicode(value, "the return value")
        while self.frames and not isinstance(self.frames[-1], calls):
            self.frames.pop()
        if self.frames and isinstance(self.frames[-1], FunctionCall):
            self.frames.pop().result = value  # type: ignore[union-attr]
            raise _Unwind
        if not self.frames:
            self.return_value = value
            raise _Unwind
        self._finish_query(self.frames.pop(), value, returned=True)  # type: ignore[arg-type]
        raise _Unwind

    # ------------------------------------------------------------ prompt statements

    def _prompt_step(self, frame: PromptRun) -> HoleRequest | None:
        parts = frame.stmt.parts
        while frame.index < len(parts):
            part = parts[frame.index]
            if isinstance(part, ir.Hole):
                return self._hole(frame, part)
            if isinstance(part, ir.Text):
                self._emit(part.text, frame)
            elif isinstance(part, ir.Interp):
                value = self.evaluator.evaluate(part.value, frame.scope)
                self._emit(sizes.format_value(value, part.spec, self.limits), frame)
            elif part.name in ROLES:  # a role tag also ends a knowledge section
                self.role, frame.knowledge = part.name, None
            else:
                frame.knowledge = part.name
            frame.index += 1
        self.frames.pop()
        return None

    def _hole(self, frame: PromptRun, hole: ir.Hole) -> HoleRequest | None:
        record = None
        if isinstance(hole.query, ir.Name):  # [P: Person] names a record type
            record = frame.scope.lookup(hole.query.id)
            record = record if isinstance(record, RecordType) else None
        if hole.query is not None and record is None:
            self._call_query(frame, hole)
            return None
        program = self.program
        top_level = not any(isinstance(f, QueryCall) for f in self.frames)
        global_where = program.where if top_level else None
        text = program.source.text
        items = constraints_for(hole.name, frame.stmt.where, global_where)
        if record is not None:
            items.append(ir.Atom("json", hole.name, args=(ir.Const(record.schema),),
                                 span=hole.span))
        spec = hole_spec(hole, items, lambda expr: self.evaluator.evaluate(expr, frame.scope),
                         lambda node: text[node.span.start:node.span.end])
        model = None
        if frame.stmt.model is not None:  # the resolver accepts names and lmq's objects only
            model = boundary.hand_out(self.evaluator.evaluate(frame.stmt.model, frame.scope))
        distribution = None
        clause = frame.stmt.distribution or (program.distribution if top_level else None)
        if clause is not None and clause.hole == hole.name:
            values = self.evaluator.evaluate(clause.values, frame.scope)
            if not isinstance(values, (list, tuple)) or not values or not all(
                    isinstance(v, str) for v in values):
                raise LmqRuntimeError("distribution values must be a non-empty list of "
                                      "strings", clause.span)
            distribution = tuple(values)
        for predicate in spec.predicates:
            if not self.evaluator.is_callable(predicate.function):
                raise LmqSandboxError(f"'{predicate.name}' is not callable in lmq programs "
                                      "(only builtins, imported stdlib names and tools can be "
                                      "predicates)", hole.span)
        if spec.predicates:  # the loop calls them through the sandbox, as the program would
            spec = dataclasses.replace(spec, predicates=tuple(dataclasses.replace(
                p, function=host_callback(p.function, self.evaluator, p.name, hole.span))
                for p in spec.predicates))
        prefer = frame.stmt.prefer or (program.prefer if top_level else None)
        options = {} if prefer is None else {
            kw.name: self.evaluator.evaluate(kw.value, frame.scope) for kw in prefer.options}
        self.pending = HoleRequest(hole, spec, model, distribution, prefer, options)
        self.record = record
        return self.pending

    def _call_query(self, frame: PromptRun, hole: ir.Hole) -> None:
        call = hole.query
        assert call is not None
        func_expr = call.func if isinstance(call, ir.Call) else call
        target = self.evaluator.evaluate(func_expr, frame.scope)
        # A query block of the program, or a host query (an ``lmq.Query`` passed as a
        # tool), which runs its program body as a nested query in its own scope: its
        # parameters, its own tools, the builtins and the tools of this run. Types are
        # checked by ``type()``: nothing of another object is read.
        host = issubclass(type(target), Query)
        if not host and type(target) is not QueryFunction:
            raise LmqRuntimeError(f"'{hole.name}' is filled by something that is not a query",
                                  hole.span)
        args = [self.evaluator.evaluate(a, frame.scope) for a in getattr(call, "args", ())]
        kwargs = {k.name: self.evaluator.evaluate(k.value, frame.scope)
                  for k in getattr(call, "keywords", ())}
        if host:
            checked = target.checked
            name = func_expr.id if isinstance(func_expr, ir.Name) else "query"
            definition = host_query_definition(target, checked, name)
            order = [p for p in target.signature if p in checked.params]
            if len(order) == len(checked.params):  # a decorated function's parameter order
                definition = ir.QueryDef(definition.name, tuple(order), definition.body,
                                         span=definition.span)
            covered = {*definition.params[:len(args)], *kwargs}
            kwargs.update({name: boundary.admit(value, self.limits, f"parameter '{name}'")
                           for name, value in target.defaults.items()
                           if name in definition.params and name not in covered})
            names = {**self.names, **target.tools}
            self.evaluator.callables.add(target.tools.values())
            parent: Scope | None = None
        else:
            definition, names, parent = target.definition, self.names, self.globals
            covered = {*definition.params[:len(args)], *kwargs}
            kwargs.update({default.name: self.evaluator.evaluate(default.value, self.globals)
                           for default in definition.defaults if default.name not in covered})
        bound = bind_arguments(definition, args, kwargs, hole)
        depth = 1 + sum(isinstance(f, QueryCall) for f in self.frames)
        try:
            self.budget.enter_query(depth)
        except LmqError as error:
            error.span = hole.span
            raise
        scope = Scope(bound, parent, names)
        self.frames.append(QueryCall(scope, hole, len(self.context), len(self.prompt_parts),
                                     depth))
        self.frames.append(Block(definition.body, scope))

    def _finish_query(self, call: QueryCall, value: Any, returned: bool) -> None:
        frame = self.frames[-1]
        assert isinstance(frame, PromptRun)
        self.budget.depth = call.depth - 1
        if returned:
            del self.context[call.context_mark:]
            del self.prompt_parts[call.prompt_mark:]
            self.prompt_size = sum(map(len, self.prompt_parts))
            self._emit(sizes.to_text(value, self.limits, f"the value of query "
                                       f"'{call.hole.name}'"), frame, hole=call.hole.name)
        else:
            value = "".join(self.prompt_parts[call.prompt_mark:])
        text = "".join(self.prompt_parts[call.prompt_mark:])
        for decorator in call.hole.decorators:
            value = self._decorate(decorator, value, text, frame.scope)
        self._bind(call.hole, value, frame.scope, [])
        frame.index += 1

    def _emit(self, text: str, frame: PromptRun, hole: str | None = None,
              tokens: tuple[int, ...] | None = None, model: Any = None) -> None:
        if not text:
            return
        self.prompt_size += len(text)
        if self.prompt_size > self.limits.string_size:
            raise LmqLimitError(f"the prompt would grow past {self.limits.string_size:,} "
                                "characters (limits.string_size)")
        sizes.check_unicode(text, "the prompt text")
        self.prompt_parts.append(text)
        self.context.append(Segment(text, self.role, frame.knowledge, hole, tokens, model))

    def _postprocess(self, request: HoleRequest, text: str, scope: Scope) -> Any:
        value: Any = text
        kind = request.spec.convert
        try:
            if kind == "int":
                value = int(text)
            elif kind == "float":
                value = float(text)
            elif kind == "bool":
                value = text == "true"
            elif kind == "labels":
                value = regular.labels_of(request.spec.regular).parse(text)
            elif kind == "json":
                value = json.loads(text)
                if self.record is not None:
                    value = self.record.from_json(value)
            elif kind == "tree":
                value = grammars.parse_tree(regular.grammar_of(request.spec.regular).text, text)
        except (ValueError, RecursionError):
            raise LmqRuntimeError(f"hole '{request.hole.name}' produced {text!r}, which is "
                                  f"not a valid {kind}", request.hole.span) from None
        for decorator in request.hole.decorators:
            value = self._decorate(decorator, value, text, scope)
        return value

    def _decorate(self, decorator: ir.Expr, value: Any, text: str, scope: Scope) -> Any:
        """``decorator(value)``; a ``def`` of two or three parameters gets LMQL's
        ``(value, prompt_value, context)`` and may return ``(value, prompt_value)`` (the
        prompt keeps the generated text either way)."""
        function = self.evaluator.evaluate(decorator, scope)
        wide = isinstance(function, UserFunction) and len(function.params) >= 2
        names = ("_value", "_text", "_context")[:min(len(function.params), 3) if wide else 1]
        callee = decorator.id if isinstance(decorator, ir.Name) else "_decorator"  # messages
        inner = Scope({callee: function, "_value": value, "_text": text,
                       "_context": self.names["context"]}, scope, scope.names)
        call = ir.Call(ir.Name(callee, span=decorator.span),
                       tuple(ir.Name(name, span=decorator.span) for name in names),
                       span=decorator.span)
        result = self.evaluator.evaluate(call, inner)
        return result[0] if wide and isinstance(result, tuple) and len(result) == 2 else result

    def _bind(self, hole: ir.Hole, value: Any, scope: Scope, logprobs: list[float]) -> None:
        sizes.check_extent(value, self.limits, f"the value of hole '{hole.name}'")
        sizes.check_unicode(value, f"the value of hole '{hole.name}'")
        scope.variables[hole.name] = value
        if scope is self.globals:
            self.values.setdefault(hole.name, []).append(value)
            self.logprobs[hole.name] = list(logprobs)
