"""The sandboxed interpreter: :mod:`.program` runs one program instance (frames in
:mod:`.frames`), :mod:`.evaluate` and :mod:`.operations` its expressions, under the rules of
:mod:`.sandbox` and the size checks of :mod:`.sizes`. It implements the decoding loop's
:class:`~lmq.runtime.decoding.instance.ProgramInstance` and never sees a model."""
