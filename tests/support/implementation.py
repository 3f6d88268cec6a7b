"""The one door through which tests reach the code under test.

Tests never ``import transformer``; they take the ``impl`` fixture and write
``impl.attention.MultiHeadAttention(...)``. Two transports stand behind that door:

* **in-process** (``make check``, ``make test``): the ``transformer`` package under test is
  imported into the test process. Tracebacks point into the student's file; pdb works.
* **sandboxed** (``python -m grader grade``): every call runs in a separate worker process;
  the test process only ever holds handles and plain tensors (see ``grader/sandbox``).

So that one test suite works with both, tests follow these rules:

1. Reach student code only as ``impl.<module>.<name>`` (modules: attention, feed_forward,
   normalization, embedding, masks, layers, model, decoding, training).
2. Pass only tensors, Python numbers/strings/bools/None, ``torch.dtype`` and ``torch.device``
   values, tuples/lists/dicts of those,
   objects that came from ``impl``, ``nn.Dropout``, and these trusted ``torch.nn`` modules
   (with their weights): ``Linear``, ``Identity``, ``ReLU``, ``Tanh``, ``Sequential`` of them,
   and the toy models in ``grader.runtime.toys``. No lambdas or other callables.
3. On a module from ``impl`` use only: calling it, its methods (``encode``, ``decode``, …),
   attribute reads (values come back as tensors/numbers or as further handles), indexing
   and ``len`` of ``ModuleList``s, ``train()``, ``eval()``, ``double()``, ``float()``,
   ``to(dtype)``, ``state_dict()``, ``load_state_dict(...)``, ``named_parameters()`` and
   ``named_buffers()`` (copies of the tensors), ``parameters()``.
4. Tensors that come back are copies: ``.backward()`` on them cannot reach the student's
   parameters. Use ``impl.gradients(fn, args, upstream)`` (see ``grader.runtime.gradients``).
5. Randomness inside student code (dropout) is not reproducible across transports: compare
   only statistics or train/eval behaviour, never exact values under active dropout.
   Choose module weights yourself (``load_state_dict`` with tensors from your own seeded
   ``torch.Generator``) so that expected values never depend on the order in which student
   code consumes the random generator.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from grader.contract import MODULES
from grader.runtime.gradients import gradients as _gradients


class ImplementationError(ImportError):
    """The package under test could not be found or one of its modules failed to import."""


class InProcessImplementation:
    """The ``transformer`` package found under ``root``, imported into this process.

    Modules are imported lazily, on first use, so that a syntax error in ``model.py``
    fails the model tests and nothing else.
    """

    transport = "in-process"

    def __init__(self, root: Path):
        self.root = Path(root).resolve()
        package_dir = self.root / "transformer"
        init = package_dir / "__init__.py"
        if not init.is_file():
            raise ImplementationError(f"no transformer/__init__.py under {self.root}")
        existing = sys.modules.get("transformer")
        if existing is not None and Path(existing.__file__).resolve() != init.resolve():
            raise ImplementationError(
                f"another transformer package ({existing.__file__}) is already imported; "
                "run one implementation per pytest process"
            )
        if existing is None:
            spec = importlib.util.spec_from_file_location(
                "transformer", init, submodule_search_locations=[str(package_dir)]
            )
            package = importlib.util.module_from_spec(spec)
            sys.modules["transformer"] = package
            spec.loader.exec_module(package)
        self._modules: dict[str, ModuleType] = {}

    def __getattr__(self, name: str) -> ModuleType:
        if name not in MODULES:
            raise AttributeError(f"the API contract has no module {name!r} (modules: {', '.join(MODULES)})")
        if name not in self._modules:
            self._modules[name] = importlib.import_module(f"transformer.{name}")
        return self._modules[name]

    def gradients(self, fn, args, upstream=None):
        """See ``grader.runtime.gradients.gradients``."""
        return _gradients(fn, args, upstream)

    def __repr__(self) -> str:
        return f"<{self.transport} implementation at {self.root}>"
